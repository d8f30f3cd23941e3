"""A compiled network takes batches of the (C, H, W) images its spec was compiled for, nothing
else: any other input raises `InputShapeError` (a ValueError) naming the network, both shapes,
how to build the network at the other size and whether trained weights load into it there.
The check is invisible to the deployment paths (export with a dynamic batch, torch.compile).
"""
from __future__ import annotations

import importlib.util
import pickle
import re
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.torch.layers import InputShapeError  # noqa: E402
from incdsl.torch.plan import input_bound_nodes  # noqa: E402
from incdsl.torch.source import generate_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "data" / "torch_tiny.inc")  # 3x32x32, an aux head
NIN = str(ROOT / "specs" / "zoo" / "cifar" / "nin.inc")  # 3x32x32, a fixed 8x8 average pool as its head
LEVELS = ("none", "train", "infer")


@pytest.fixture(scope="module")
def tiny():
    return incdsl.load(TINY)


@pytest.fixture(scope="module")
def models(tiny):
    return {level: incdsl.to_torch(tiny, seed=0, optimize=level) for level in LEVELS}


def problem(model, x) -> str:
    with pytest.raises(InputShapeError) as info, torch.no_grad():
        model(x)
    return str(info.value)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_another_height_and_width_is_refused_with_a_way_out(models, level, mode):
    model = models[level].train(mode == "train")
    text = problem(model, torch.randn(2, 3, 64, 64))
    assert text.startswith("network `tiny` was compiled for 3x32x32 images, a tensor of shape (N, 3, 32, 32); "
                           "got shape (2, 3, 64, 64): for 3x64x64 images build it from its spec at that size, "
                           "incdsl.to_torch(incdsl.load('torch_tiny.inc', input=(3, 64, 64))) or "
                           "`incdsl compile torch_tiny.inc --input 3x64x64`; ")
    # the aux head flattens a 2x2 pool's output: its classifier's width follows the input size
    assert text.endswith("the weights of `aux1.linear_0` depend on the input's height and width: weights trained "
                         "at 3x32x32 load into it only where their shapes stay the same")
    assert isinstance(InputShapeError(text), ValueError)


@pytest.mark.parametrize("level", LEVELS)
def test_another_channel_count_is_refused(models, level):
    text = problem(models[level].eval(), torch.randn(2, 1, 32, 32))
    assert "got shape (2, 1, 32, 32): for 1x32x32 images" in text
    assert "incdsl.load('torch_tiny.inc', input=(1, 32, 32))" in text
    assert "the weights of `conv_0` depend on the input's channels" in text


@pytest.mark.parametrize("level", LEVELS)
def test_one_image_without_its_batch_dimension_is_refused(models, level):
    text = problem(models[level].eval(), torch.randn(3, 32, 32))
    assert text.endswith("got one image of shape (3, 32, 32): add the batch dimension (x.unsqueeze(0))")


@pytest.mark.parametrize("x, says", [
    (torch.randn(2, 32, 32, 3), "got shape (2, 32, 32, 3), channels last: put them second (x.permute(0, 3, 1, 2))"),
    (torch.randn(1, 2, 3, 32, 32), "got a 5-D tensor of shape (1, 2, 3, 32, 32)"),
    (torch.randn(96, 32), "got a 2-D tensor of shape (96, 32)"),
    ([[0.0] * 32] * 32, "got list: pass a tensor"),
], ids=["channels-last", "5-D", "2-D", "list"])
def test_other_inputs_are_refused(models, x, says):
    assert problem(models["none"].eval(), x).endswith(says)


@pytest.mark.parametrize("level", LEVELS)
def test_every_entry_that_takes_images_checks_them(models, level):
    model = models[level].eval()
    x = torch.randn(2, 3, 48, 48)
    for entry in (model.forward_features, model.forward_trunk):
        with pytest.raises(InputShapeError, match=r"got shape \(2, 3, 48, 48\)"), torch.no_grad():
            entry(x)
    with torch.no_grad():  # the head takes features, whatever their batch
        assert model.forward_head(model.forward_features(torch.randn(3, 3, 32, 32))).shape == (3, 10)


@pytest.mark.parametrize("level", LEVELS)
def test_the_standalone_file_refuses_another_size(tiny, tmp_path, level):
    """The file of `incdsl compile -o` carries the check and its error class."""
    path = tmp_path / f"tiny_{level}.py"
    path.write_text(generate_source(tiny, optimize=level)[0], encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"tiny_{level}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Tiny(seed=0).eval()
    assert issubclass(module.InputShapeError, ValueError)
    with pytest.raises(module.InputShapeError, match=re.escape("got shape (2, 3, 64, 64): for 3x64x64 images")):
        model(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(model(torch.ones(1, 3, 32, 32)),
                                   incdsl.to_torch(tiny, seed=0, optimize=level).eval()(torch.ones(1, 3, 32, 32)))


def test_nin_at_twice_its_size_no_longer_runs_silently():
    """NIN's 8x8 average pool is global at 32x32 only: at 64x64 it gave (2, 810) logits."""
    net = incdsl.load(NIN)
    model = incdsl.to_torch(net, seed=0).eval()
    text = problem(model, torch.randn(2, 3, 64, 64))
    assert "incdsl.to_torch(incdsl.load('nin.inc', input=(3, 64, 64)))" in text
    assert text.endswith("weights trained at 3x32x32 load into it (no layer's weights depend on the input size)")
    with torch.no_grad():
        for n in (1, 3):
            assert model(torch.randn(n, 3, 32, 32)).shape == (n, 10)
    # the hint holds: built at 64x64, NIN takes the weights trained at 32x32
    bigger = incdsl.to_torch(incdsl.load(NIN, input=(3, 64, 64)), seed=1)
    bigger.load_state_dict(model.state_dict())


@pytest.mark.parametrize("level", LEVELS)
def test_the_right_size_runs_at_any_batch(models, level):
    """Batch 0 included; at each batch one pixel more is refused."""
    model = models[level].eval()
    with torch.no_grad():
        for n in (0, 1, 3):
            assert model(torch.randn(n, 3, 32, 32)).shape == (n, 10)
            assert f"got shape ({n}, 3, 33, 33)" in problem(model, torch.randn(n, 3, 33, 33))
    logits, aux = models[level].train()(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 10) and aux[0].shape == (3, 10)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.sampled_from([0, 1, 2, 3, 31, 32, 33]), min_size=1, max_size=5))
def test_an_input_runs_exactly_when_it_is_a_batch_of_the_compiled_images(models, shape):
    model = models["infer"].eval()
    right = len(shape) == 4 and tuple(shape[1:]) == (3, 32, 32)
    x = torch.randn(*shape)
    with torch.no_grad():
        if right:
            assert model(x).shape == (shape[0], 10)
        else:
            with pytest.raises(InputShapeError, match=re.escape(f"{tuple(shape)}")):
                model(x)


@pytest.mark.parametrize("level", ["none", "infer"])
def test_export_keeps_a_dynamic_batch(tiny, models, level):
    """The check compares static sizes: the exported program holds nothing of it and still takes
    any batch (its own guards refuse other sizes), while the eager model refuses them itself."""
    model = models[level].eval()
    with torch.no_grad():
        program = torch.export.export(model, (torch.randn(2, 3, 32, 32),),
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    run = program.module()
    for n in (1, 5):
        x = torch.randn(n, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(run(x), model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception):
        run(torch.randn(2, 3, 64, 64))
    problem(model, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("level", LEVELS)
def test_jit_trace_with_its_check_gives_no_tracer_warning(models, level):
    """Traced sizes are tensors, which the check would compare: under tracing it steps aside,
    and the eager model it was traced from still refuses another size."""
    model = models[level].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (torch.randn(2, 3, 32, 32),))  # check_trace on, as by default
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=1e-4, atol=1e-4)
    problem(model, torch.randn(2, 3, 64, 64))


@pytest.mark.slow
def test_torch_compile_traces_the_check_as_one_graph():
    """fullgraph=True: the check is no graph break. A wrong size under it is Dynamo's error,
    which quotes ours."""
    model = incdsl.to_torch(incdsl.load(NIN), seed=0).eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        with pytest.raises(Exception, match="InputShapeError.*network `nin` was compiled for 3x32x32"):
            compiled(torch.randn(2, 3, 64, 64))
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_pickled_model_still_checks(models):
    loaded = pickle.loads(pickle.dumps(models["infer"].eval()))
    assert "network `tiny` was compiled for 3x32x32" in problem(loaded, torch.randn(1, 3, 16, 16))


def test_a_layer_named_like_the_check_does_not_hide_it():
    net = incdsl.load("network t:\n    input 3x8x8\n    conv 3x3 4 S as check_input\n    gap -> flatten -> linear 2\n")
    model = incdsl.to_torch(net, seed=0)
    assert "network `t` was compiled for 3x8x8" in problem(model, torch.randn(1, 3, 9, 9))
    assert "incdsl.load(SPEC, input=(3, 9, 9))" in problem(model, torch.randn(1, 3, 9, 9))  # no file to name


# --- which weights the input size binds (decided at compile time) ---------------------------------

@pytest.mark.parametrize("spec, size_bound, channel_bound", [
    ("specs/zoo/cifar/nin.inc", [], ["mlpconv/conv_0"]),
    ("specs/zoo/vgg.inc", [], ["stage/repeat.0/conv_0"]),  # adaptive 7x7 pool before the classifier
    ("specs/zoo/cifar/vgg_a.inc", ["linear_0"], ["vgg_stage/repeat.0/conv_0"]),  # flattens a 2x2 map
])
def test_weights_bound_to_the_input_size(spec, size_bound, channel_bound):
    net = incdsl.load(str(ROOT / spec))
    c, h, w = net.input_shape
    assert input_bound_nodes(net.graph, (c, 2 * h, 2 * w)) == size_bound
    assert input_bound_nodes(net.graph, (c + 1, h, w)) == channel_bound


def test_a_network_that_does_not_fit_twice_its_size_does_not_promise_its_weights():
    """Both branches give 2x2 at 4x4 but not at 8x8: whether weights load cannot be told."""
    net = incdsl.load("network t:\n    input 3x4x4\n    concat:\n        branch: maxpool 2x2 /2\n"
                      "        branch: conv 3x3 8 /3 S\n    gap -> flatten -> linear 3\n")
    assert input_bound_nodes(net.graph, (3, 8, 8)) is None
    text = problem(incdsl.to_torch(net, seed=0), torch.randn(1, 3, 8, 8))
    assert text.endswith("weights trained at 3x4x4 load into it if no layer's weights depend on the input size")


def test_the_deploy_page_quotes_the_error_as_it_is():
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    quoted = re.search(r"```text\nInputShapeError: (.*)\n```", page).group(1)
    model = incdsl.to_torch(incdsl.load(NIN), seed=0)
    assert problem(model, torch.randn(2, 3, 64, 64)) == quoted
