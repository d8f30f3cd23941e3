"""`IncdslNet.capture`: one inference forward recorded as a CUDA graph for a fixed input. The
refusals run everywhere; replays run on a CUDA device (skipped without one)."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.torch.layers import CapturedGraph  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def net():
    return incdsl.load(str(DATA / "torch_concat.inc"))


# --- refusals --------------------------------------------------------------------------------

def test_capture_refuses_the_cpu(net):
    model = incdsl.to_torch(net, seed=0, optimize="infer").eval()
    with pytest.raises(ValueError, match="needs a CUDA device: the example input is on cpu"):
        model.capture(torch.randn(2, *net.input_shape))


def test_capture_refuses_training_mode(net):
    model = incdsl.to_torch(net, seed=0)
    with pytest.raises(RuntimeError, match=r"records inference: call model.eval\(\) first"):
        model.capture(torch.randn(2, *net.input_shape))


def test_capture_refuses_a_model_elsewhere_than_its_example(net):
    model = incdsl.to_torch(net, seed=0).eval()
    with pytest.raises(ValueError, match="the model is on cpu but the example input on meta"):
        model.capture(torch.empty(2, *net.input_shape, device="meta"))
    with pytest.raises(TypeError, match="needs an example input tensor, got list"):
        model.capture([1, 2])


def test_replay_refuses_another_shape_dtype_or_device_and_training(net):
    """The checks of a replay, on a graph recorded (as if) on a GPU: they come before any CUDA call."""
    model = incdsl.to_torch(net, seed=0).eval()
    run = CapturedGraph.__new__(CapturedGraph)
    run.model, run.example = model, ((2, *net.input_shape), torch.float32, torch.device("cuda", 0))
    for x in (torch.randn(3, *net.input_shape), torch.randn(2, *net.input_shape, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"captured for input 2x3x16x16 float32 on cuda:0, got .* on cpu: capture again"):
            run(x)
    with pytest.raises(ValueError, match="got ndarray"):
        run(torch.randn(2, *net.input_shape).numpy())


# --- replays (CUDA) --------------------------------------------------------------------------

def replay_case(net, level, channels_last=False, dtype=torch.float32):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = incdsl.to_torch(net, seed=0, optimize=level).to("cuda", dtype).eval().to(memory_format=layout)
    x = torch.randn(4, *net.input_shape, device="cuda", dtype=dtype).to(memory_format=layout)
    run = model.capture(x)
    with torch.no_grad():
        for _ in range(2):  # new data each time: the replay reads its input afresh
            x = torch.randn_like(x)
            torch.testing.assert_close(run(x).clone(), model(x), rtol=1e-4, atol=1e-5)
    return model, run


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("level", ["none", "infer"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_replay_equals_eager(net, level, channels_last):
    replay_case(net, level, channels_last)


@pytest.mark.cuda
@cuda_only
def test_replay_refuses_another_input_and_training_mode_on_the_gpu(net):
    model, run = replay_case(net, "infer")
    with pytest.raises(ValueError, match="captured for input 4x3x16x16 float32 on cuda:0, got 2x3x16x16"):
        run(torch.randn(2, *net.input_shape, device="cuda"))
    with pytest.raises(ValueError, match="got 4x3x16x16 float32 on cpu"):
        run(torch.randn(4, *net.input_shape))
    model.train()
    with pytest.raises(RuntimeError, match="training mode"):
        run(torch.randn(4, *net.input_shape, device="cuda"))


@pytest.mark.cuda
@cuda_only
def test_replay_under_autocast_records_bf16(net):
    model = incdsl.to_torch(net, seed=0, optimize="infer").cuda().eval()
    x = torch.randn(4, *net.input_shape, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        run = model.capture(x)
        out = run(x)
        with torch.no_grad():
            expect = model(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expect.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.cuda
@cuda_only
def test_replay_of_one_kept_fractal_column():
    """`keep_column` draws its fixed column inside the forward pass: that draw must be a kernel
    the graph records (a host-to-device copy is refused while a stream is capturing)."""
    from speclib import FRACTAL_BLOCK, load
    spec = ("network f:\n    input 3x8x8\n    with conv(pad = 1), mean(global_path = 0.5):\n"
            "        fractal(3, 4)\n    gap -> flatten -> linear 10\n" + FRACTAL_BLOCK)
    model = incdsl.to_torch(load(spec), seed=0).cuda().eval().keep_column(1)
    x = torch.randn(4, 3, 8, 8, device="cuda")
    run = model.capture(x)
    with torch.no_grad():
        torch.testing.assert_close(run(x).clone(), model(x), rtol=1e-4, atol=1e-5)
        full = model.keep_column(None)(x)
    assert not torch.allclose(full, run(x))  # the graph keeps the column it was captured with
