"""Compiled networks on a CUDA device: same outputs as on the CPU, mixed precision, channels last.

Skipped without a GPU.
"""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DATA = Path(__file__).resolve().parent / "data"
SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def layers():
    net = incdsl.load(str(DATA / "torch_layers.inc"))
    return net, incdsl.to_torch(net, seed=0).eval()


def test_cuda_matches_cpu(layers):
    net, model = layers
    x = torch.randn(4, *net.input_shape)
    expect = model(x)
    gpu = model.to("cuda")
    try:
        got = gpu(x.cuda()).cpu()
    finally:
        model.to("cpu")
    torch.testing.assert_close(got, expect, rtol=1e-3, atol=1e-4)


def test_cuda_autocast_channels_last_and_training(layers):
    net, _ = layers
    model = incdsl.to_torch(net, seed=0).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, *net.input_shape, device="cuda").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, aux = model(x)
        loss = logits.float().logsumexp(1).mean() + sum(a.float().logsumexp(1).mean() for a in aux)
    loss.backward()
    opt.step()
    # the network ends in softmax, which autocast runs in float32; the layers before it run in bfloat16
    assert logits.dtype == torch.float32 and len(aux) == 2
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert model.forward_head(model.forward_features(x), pre_logits=True).dtype == torch.bfloat16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_cuda_weights_stay_deterministic():
    net = incdsl.load(str(DATA / "torch_tiny.inc"))
    cpu = incdsl.to_torch(net, seed=4).state_dict()
    gpu = incdsl.to_torch(net, seed=4).cuda()
    from incdsl.torch.layers import init_weights
    init_weights(gpu, 4)  # drawing on the CPU and copying gives the same values on any device
    assert all(torch.equal(gpu.state_dict()[k].cpu(), cpu[k]) for k in cpu)


@pytest.mark.slow
def test_cuda_inception_v4_compiled_equals_eager():
    net = incdsl.load(str(SPECS / "inception_v4.inc"))
    model = incdsl.to_torch(net, seed=0).cuda().eval()
    x = torch.randn(8, *net.input_shape, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("level", ["train", "infer"])
def test_cuda_optimised_levels_match_level_none(level):
    """Fused and folded models on the GPU, bf16 autocast and channels_last: same outputs as the
    unoptimised model within bf16 rounding, and a training step runs."""
    net = incdsl.load(str(DATA / "torch_fusion.inc"))
    plain = incdsl.to_torch(net, seed=0).cuda().to(memory_format=torch.channels_last).eval()
    fast = incdsl.to_torch(net, seed=0, optimize=level).cuda().to(memory_format=torch.channels_last).eval()
    assert fast.fusion_plan
    x = torch.randn(16, *net.input_shape, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad():
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 as on the CPU
            torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.testing.assert_close(fast(x).float(), plain(x).float(), rtol=0.05, atol=0.02)
    fast.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, aux = fast(x)
    (logits.float().sum() + aux[0].float().sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters())
