"""The mobile ImageNet models of specs/zoo/ (MobileNetV2, MobileNetV3-Large/Small, EfficientNet
B0..B7) against torchvision's models of the same name.

Totals are asserted without torch. With torchvision: the reference's parameter count and its
multiply-adds (torch's flop counter on the meta device, halved) equal ours at the spec's input;
its state dict, loaded into the compiled spec, gives the same logits in eval mode and, drawn
from the same seed, in training mode (so `residual(drop_path = p)` draws as torchvision's
`StochasticDepth(p, "row")` does, block for block). No weights are downloaded: both sides start
from random initialisations.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import incdsl
import modellib
from modellib import assert_close_to_scale, assert_same_logits, one_torch_thread  # noqa: F401 (autouse fixture)
from zoolib import MOBILE as MODELS, MOBILE_DEFAULT as DEFAULT, MOBILE_PAPER

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"

SIZE = 64  # every one ends in a global pool: the logits check runs at this input
# torchvision comparisons: the four defaults and one width of MobileNetV3 in the default run, the
# other --set configurations slow
FAST = (*DEFAULT, "mobilenet_v3_small_0.75")
AGAINST_TORCHVISION = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in sorted(MODELS)]


def load(name: str, size: int | None = None) -> incdsl.Network:
    spec, sets, _, _, _, full = MODELS[name]
    side = size or full
    return incdsl.load(str(ZOO / spec), params=sets or None, input=(3, side, side))


def reference(name: str, device: str | None = None):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    builder, kwargs = MODELS[name][2]
    with torch.device(device or "cpu"):
        return getattr(models, builder)(**kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_totals_are_exact(name):
    costs = incdsl.count_costs(load(name))
    assert (costs.total.params, costs.total.macs) == MODELS[name][3:5]


def test_the_specs_state_their_totals():
    """Each spec's header states the count this file asserts (as `Totals: N parameters, M multiply-adds`)."""
    for name in DEFAULT:
        spec, _, _, params, macs, _ = MODELS[name]
        text = (ZOO / spec).read_text(encoding="utf-8")
        assert f"Totals: {params:,} parameters, {macs:,} multiply-adds at 224x224" in text, spec
    for name in MOBILE_PAPER:  # the configurations zoo.csv compares with the paper
        spec, _, _, params, macs, _ = MODELS[name]
        text = " ".join((ZOO / spec).read_text(encoding="utf-8").replace("#", " ").split())
        assert f"At 0.75: {params:,} parameters, {macs:,} multiply-adds" in text, name


@pytest.mark.parametrize("name", AGAINST_TORCHVISION)
def test_torchvision_counts_the_same(name):
    """Parameters, and multiply-adds by torch's flop counter, on the meta device (no weights made)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    ref = reference(name, "meta")
    _, _, _, params, macs, side = MODELS[name]
    assert sum(p.numel() for p in ref.parameters()) == params
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        ref(torch.empty(1, 3, side, side))
    assert counter.get_total_flops() == 2 * macs


@settings(deadline=None, max_examples=10)
@given(size=st.sampled_from(["large", "small"]), width=st.integers(5, 300).map(lambda n: n / 100))
def test_any_width_rounds_as_torchvisions_width_mult(size, width):
    """At any multiplier (0.05 to 3), each conv's input and output depth, group count and kernel,
    in order, and the parameter count are what torchvision's `width_mult` makes: the same
    rounding, applied to the same layers (the 1280 or 1024 units too)."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        ref = getattr(models, f"mobilenet_v3_{size}")(width_mult=width)
    want = [(m.in_channels, m.out_channels, m.groups, m.kernel_size) for m in ref.modules()
            if isinstance(m, torch.nn.Conv2d)]
    net = incdsl.load(str(ZOO / f"mobilenet_v3_{size}.inc"), params={"width": width})
    nodes = net.graph.nodes
    convs = [n for n in nodes if nodes[n].get("op") == "conv"]
    got = [(nodes[next(iter(net.graph.predecessors(n)))]["shape"][0], nodes[n]["attrs"]["filters"],
            nodes[n]["attrs"]["groups"], nodes[n]["attrs"]["kernel"]) for n in convs]
    assert got == want
    assert incdsl.count_costs(net).total.params == sum(p.numel() for p in ref.parameters())


def same_weights(name: str):
    """(ours, torchvision's) with the same weights and randomised batch-norm statistics."""
    return modellib.same_weights(lambda: reference(name), load(name, SIZE))


@pytest.mark.parametrize("name", AGAINST_TORCHVISION)
def test_loaded_weights_give_torchvisions_logits(name):
    pytest.importorskip("torch")
    ours, ref = same_weights(name)
    assert_same_logits(ours, ref, SIZE)


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small"])
def test_training_mode_draws_as_torchvision_does(name):
    """Same seed, same output in training mode: stochastic depth drops the same samples of the same
    blocks with the same scaling, dropout the same units, batch norm uses batch statistics alike;
    another seed changes the output (so the randomness is exercised at all)."""
    torch = pytest.importorskip("torch")
    ours, ref = same_weights(name)
    ours.train(), ref.train()
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    outs = []
    for model, seed in ((ours, 7), (ref, 7), (ref, 8)):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(model(x))
    assert_close_to_scale(outs[0], outs[1])
    assert not torch.allclose(outs[1], outs[2], atol=1e-3 * float(outs[1].abs().max()))


def test_stochastic_depth_rises_linearly_as_torchvisions():
    """Every residual block's drop probability is torchvision's `stochastic_depth_prob * i / 16`
    for the block's index i among all 16 (blocks without a shortcut count but draw nothing)."""
    pytest.importorskip("torch")
    from torchvision.ops import StochasticDepth

    from incdsl.torch.layers import DropPath

    ref = reference("efficientnet_b0", "meta")
    blocks = [b for stage in ref.features[1:-1] for b in stage]
    want = [b.stochastic_depth.p for b in blocks if b.use_res_connect]
    assert len(blocks) == 16 and all(isinstance(b.stochastic_depth, StochasticDepth) for b in blocks)
    ours = incdsl.to_torch(load("efficientnet_b0", SIZE), seed=0)
    assert [m.p for m in ours.modules() if isinstance(m, DropPath)] == pytest.approx(want)
    assert want == pytest.approx([0.2 * i / 16 for i, b in enumerate(blocks) if b.use_res_connect])


@pytest.mark.parametrize("fn", ["hardswish", "hardsigmoid"])
def test_hard_activations_compute_torchs_functions(fn):
    torch = pytest.importorskip("torch")
    net = incdsl.load(f"network t:\n    input 2x3x3\n    act {fn}\n")
    model = incdsl.to_torch(net).eval()
    x = torch.linspace(-5, 5, 18).reshape(1, 2, 3, 3)
    torch.testing.assert_close(model(x), getattr(torch.nn.functional, fn)(x))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "efficientnet_b5"])
def test_batch_norm_eps_and_momentum_are_torchvisions(name):
    """Each batch norm, in order, has torchvision's eps and momentum (MobileNetV3 and B5..B7:
    eps 0.001, momentum 0.01; B0: PyTorch's defaults), in the IR and in the compiled module."""
    torch = pytest.importorskip("torch")
    ref = reference(name, "meta")
    want = [(m.eps, m.momentum) for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    net = load(name, SIZE)
    graph = net.graph
    in_ir = [(graph.nodes[n]["attrs"]["bn"], graph.nodes[n]["attrs"]["bn_momentum"]) for n in graph.nodes
             if graph.nodes[n].get("op") == "conv" and graph.nodes[n]["attrs"]["bn"] is not None]
    assert in_ir == pytest.approx(want)
    if name != "efficientnet_b5":  # 30M parameters to initialise: the IR check suffices
        compiled = [(m.eps, m.momentum) for m in incdsl.to_torch(net).modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert compiled == pytest.approx(want)


def test_bn_momentum_is_checked_and_compiled():
    torch = pytest.importorskip("torch")
    from incdsl import IncdslError
    from incdsl.torch.source import generate_source

    head = "network t:\n    input 3x8x8\n"
    net = incdsl.load(head + "    conv 3x3 4 bn = 0.001 bn_momentum = 0.01 as c\n    bn momentum = 0.3 as b\n")
    model = incdsl.to_torch(net)
    assert (model.get_submodule("c").bn.momentum, model.get_submodule("b").momentum) == (0.01, 0.3)
    source = generate_source(net)[0]
    assert "bn_eps=0.001, bn_momentum=0.01" in source and "eps=1e-05, momentum=0.3" in source
    plain = generate_source(incdsl.load(head + "    conv 3x3 4 bn = on\n"))[0]
    assert "momentum" not in plain.split("class T")[-1]  # PyTorch's default is left out
    for bad in ("0", "1.5", "relu"):
        with pytest.raises(IncdslError, match="momentum"):
            incdsl.load(head + f"    conv 3x3 4 bn = on bn_momentum = {bad}\n")
