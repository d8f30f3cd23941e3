"""ConvNeXt (specs/zoo/convnext.inc) against torchvision's models, and the `layer_norm` and
`layer_scale` layer kinds it needs.

Totals are asserted without torch. With torchvision: the reference's parameter count and its
multiply-adds (torch's flop counter, halved) equal ours at 224x224; its state dict, loaded
into the compiled spec, gives the same logits in eval mode, and in training mode the same
output under the same seed (both draw stochastic depth's per-sample masks in block order).
No weights are downloaded: both sides start from random initialisations, and the layer scales
(1e-6 at the start, which would hide every block) and layer norms' affine parts are randomised.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import incdsl
import modellib
from modellib import assert_close_to_scale, assert_same_logits, one_torch_thread  # noqa: F401 (autouse fixture)
from speclib import failure, one_layer
from zoolib import CONVNEXT as MODELS, CONVNEXT_DEFAULT as DEFAULT, CONVNEXT_SIZES as SIZES, check_fails

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"

SIZE = 64  # the logits check runs at this input


def load(name: str, size: int = 224) -> incdsl.Network:
    spec, sets, _, _ = MODELS[name]
    return incdsl.load(str(ZOO / spec), params=sets or None, input=(3, size, size))


def reference(name: str, **kwargs):
    pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    return getattr(models, name)(**kwargs)


# --- counts -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_totals_are_exact(name):
    costs = incdsl.count_costs(load(name))
    assert (costs.total.params, costs.total.macs) == MODELS[name][2:]


def test_the_spec_states_its_totals_and_sources():
    text = (ZOO / "convnext.inc").read_text(encoding="utf-8")
    for name in DEFAULT:
        _, _, params, macs = MODELS[name]
        assert f"Totals: {params:,} parameters, {macs:,} multiply-adds at 224x224" in text
    for name in set(MODELS) - set(DEFAULT):
        _, _, params, macs = MODELS[name]
        assert f"{params:,}" in text and f"{macs:,}" in text, name
    assert "models/convnext.py" in text and "arXiv 2201.03545" in text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_counts_the_same(name):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        ref = reference(name)
    _, _, params, macs = MODELS[name]
    assert sum(p.numel() for p in ref.parameters()) == params
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        ref(torch.empty(1, 3, 224, 224))
    assert counter.get_total_flops() == 2 * macs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stochastic_depth_rates_are_torchvisions(name):
    """Each block's drop rate, read from the IR in block order, is torchvision's: linear in the
    block's index over the whole network, from 0 to the last block's `stochastic_depth_prob`."""
    torch = pytest.importorskip("torch")
    from torchvision.ops import StochasticDepth

    with torch.device("meta"):
        want = [m.p for m in reference(name).modules() if isinstance(m, StochasticDepth)]
    g = load(name).graph
    blocks = [inst["args"]["p"] for inst in g.graph["instances"].values() if inst["block"] == "convnext_block"]
    assert blocks == pytest.approx(want, abs=1e-12)
    assert blocks[0] == 0 and blocks[-1] == pytest.approx(SIZES[name].get("drop_path", 0.1))


# --- outputs ------------------------------------------------------------------------------

def randomise(ref):
    """Layer scales and layer norms' affine parts away from their starting values (1e-6 would
    make every block nearly the identity, so a wrong branch would still pass)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in ref.modules():
            if hasattr(m, "layer_scale"):
                m.layer_scale.copy_(torch.rand(m.layer_scale.shape, generator=g) + 0.5)
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return ref


def same_weights(name: str):
    """(ours, torchvision's) with the same weights."""
    return modellib.same_weights(lambda: reference(name), load(name, SIZE), randomise=randomise)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in DEFAULT else pytest.mark.slow) for n in MODELS])
def test_loaded_weights_give_torchvisions_logits(name):
    pytest.importorskip("torch")
    ours, ref = same_weights(name)
    assert_same_logits(ours, ref, SIZE)


def test_training_mode_matches_under_the_same_seed():
    """Stochastic depth drawn alike: both draw one Bernoulli mask per sample per block, in
    block order, so the same seed drops the same samples' branches (and another seed not)."""
    torch = pytest.importorskip("torch")
    ours, ref = same_weights("convnext_tiny")
    ours.train(), ref.train()
    x = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.manual_seed(5)
        got = ours(x)
        torch.manual_seed(5)
        expected = ref(x)
        torch.manual_seed(6)
        other = ref(x)
    assert_close_to_scale(got, expected)
    assert not torch.allclose(other, expected, atol=1e-3)  # the draws matter


def test_training_mode_without_stochastic_depth_is_eval_mode():
    """`drop_path=0`: no random draw, no batch statistics: training mode computes torchvision's
    eval-mode logits, and gradients flow into every layer scale."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = randomise(reference("convnext_tiny", stochastic_depth_prob=0.0))
    net = incdsl.load(str(ZOO / "convnext.inc"), params={"drop_path": 0}, input=(3, SIZE, SIZE))
    ours = incdsl.to_torch(net, seed=0)
    incdsl.load_weights(ours, ref.state_dict())
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    got = ours.train()(x)
    with torch.no_grad():
        assert_close_to_scale(got, ref.eval()(x))
    got.sum().backward()
    scales = [p for n, p in ours.named_parameters() if n.endswith("layer_scale")]
    assert len(scales) == 18 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in scales)


def small_convnext(tmp_path) -> str:
    """ConvNeXt-T's layers at 64x64 with narrow stages: a copy of the spec and its library."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "convnext.inc").write_text((ZOO / "lib" / "convnext.inc").read_text(encoding="utf-8"),
                                                   encoding="utf-8")
    text = (ZOO / "convnext.inc").read_text(encoding="utf-8")
    text = text.replace("input 3x224x224", "input 3x64x64").replace(
        "c1 = 96, c2 = 192, c3 = 384, c4 = 768", "c1 = 16, c2 = 24, c3 = 32, c4 = 40").replace("n3 = 9", "n3 = 2")
    (tmp_path / "small.inc").write_text(text, encoding="utf-8")
    return str(tmp_path / "small.inc")


@pytest.mark.parametrize("tool", ["fvcore", "ptflops", "ptflops-aten", "thop", "torchinfo", "flop_counter"])
def test_counters_count_convnext_as_the_conventions_say(tool, tmp_path):
    """Each counter's total on a compiled ConvNeXt is what `cost --convention` says: fvcore 5
    per layer-norm element, ptflops 2 per GELU element and nothing for LayerNorm2d, thop
    nothing for either, torchinfo 2 per layer-norm channel; nobody counts the layer scales."""
    from counterlib import check_tool as _check_tool

    _check_tool(tool, small_convnext(tmp_path))


@pytest.mark.parametrize("level", ["train", "infer"])
def test_optimize_levels_keep_convnext_exact(level, tmp_path):
    """Batch-norm folding must leave layer norms alone (they normalise by each position's own
    statistics): at every level the compiled ConvNeXt computes what level none does."""
    td = pytest.importorskip("oraclelib")
    net = incdsl.load(small_convnext(tmp_path))
    td.check_levels_eval(net, level)
    td.check_state_dicts(net, level)
    fast = incdsl.to_torch(net, seed=0, optimize=level)
    kinds = {type(m).__name__ for m in fast.modules()}
    assert {"LayerNorm2d", "LayerScale", "GELU"} <= kinds


def test_check_and_cost_of_convnext_do_not_import_torch():
    code = ("import sys, incdsl; n = incdsl.load(sys.argv[1]); incdsl.count_costs(n); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(ZOO / "convnext.inc")], check=True, cwd=ROOT)


# --- the `layer_norm` and `layer_scale` kinds ---------------------------------------------

@settings(deadline=None, max_examples=25)
@given(c=st.integers(1, 12), h=st.integers(1, 5), w=st.integers(1, 5), flat=st.booleans())
def test_new_kinds_keep_the_shape_and_count_2c_and_c(c, h, w, flat):
    pre = "flatten -> " if flat else ""
    n = c * h * w if flat else c
    for layer, params in ((f"{pre}layer_norm", 2 * n), (f"{pre}layer_scale", n)):
        net = incdsl.load(one_layer(layer, f"{c}x{h}x{w}"))
        assert net.output_shape == ((n,) if flat else (c, h, w))
        costs = incdsl.count_costs(net)
        assert (costs.total.params, costs.total.macs) == (params, 0)
        if not flat:
            assert costs.by_name()[net.output].rf[:2] == (1, 1)  # each position reads only itself


def test_layer_norm_is_no_weight_for_against_and_layer_scale_is():
    from incdsl.ops.table import OPS

    assert OPS["layer_norm"].weights({}, 16) == 0 and OPS["layer_scale"].weights({}, 8) == 8


@settings(deadline=None, max_examples=10)
@given(c=st.integers(1, 6), eps=st.sampled_from([1e-6, 1e-5, 0.1]))
def test_layer_norm_computes_torchvisions_layernorm2d(c, eps):
    torch = pytest.importorskip("torch")
    from torchvision.models.convnext import LayerNorm2d

    model = incdsl.to_torch(incdsl.load(one_layer(f"layer_norm {eps}", f"{c}x3x4"))).eval()
    ref = LayerNorm2d(c, eps=eps)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    incdsl.load_weights(model, ref.state_dict())
    x = torch.randn(2, c, 3, 4, generator=torch.Generator().manual_seed(c)) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.train()(x), ref(x), atol=1e-5, rtol=1e-5)  # no batch statistics
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), ref(x), atol=1e-5, rtol=1e-5)


def test_layer_norm_on_a_flat_input_is_nn_layernorm():
    torch = pytest.importorskip("torch")
    model = incdsl.to_torch(incdsl.load(one_layer("flatten -> layer_norm 1e-6", "2x2x3"))).eval()
    ref = torch.nn.LayerNorm(12, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    incdsl.load_weights(model, ref.state_dict())
    x = torch.randn(3, 2, 2, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x.flatten(1)), atol=1e-5, rtol=1e-5)


def test_layer_scale_multiplies_each_channel_by_its_own_learned_value():
    torch = pytest.importorskip("torch")
    model = incdsl.to_torch(incdsl.load(one_layer("layer_scale 0.25", "3x2x2"))).eval()
    (name, param), = model.named_parameters()
    assert name.endswith("layer_scale") and tuple(param.shape) == (3, 1, 1)  # torchvision's name and shape
    assert torch.equal(param, torch.full((3, 1, 1), 0.25))
    with torch.no_grad():
        param.copy_(torch.tensor([1.0, -2.0, 3.0]).view(3, 1, 1))
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), x * torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1))


def test_layer_scale_starts_at_convnexts_1e_6():
    net = incdsl.load(one_layer("layer_scale"))
    assert net.graph.nodes[net.output]["attrs"]["init"] == 1e-6


def test_convnext_uses_the_exact_gelu():
    torch = pytest.importorskip("torch")
    model = incdsl.to_torch(load("convnext_tiny", 32))
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert len(gelus) == 18 and all(m.approximate == "none" for m in gelus)


@pytest.mark.parametrize("layer,message", [  # on one_layer's 6x3x3 input
    ("layer_norm 0", "expected a positive"),
    ("layer_norm eps = (-1)", "expected a positive"),
    ("layer_norm yes", "`layer_norm` does not take `yes` here"),
    ("layer_scale yes", "`layer_scale` does not take `yes` here"),
    ("layer_scale 1e39", "a float32 weight"),
    ("layer_norm groups = 2", "groups"),
])
def test_new_kind_errors(layer, message):
    assert message in failure(one_layer(layer)).render()


def test_layer_norm_error_points_at_the_argument(tmp_path):
    spec, stderr = check_fails(tmp_path, one_layer("conv 1x1 10 -> layer_norm 0"))
    assert f"{spec}:3:" in stderr and "error:" in stderr and "^" in stderr


def test_new_kinds_draw_and_compile_to_standalone_source():
    from incdsl.render.graphviz import build_dot
    from incdsl.render.style import DrawOptions
    from incdsl.torch.source import generate_source

    net = incdsl.load(one_layer("layer_norm 1e-6 -> layer_scale 0.5"))
    dot = build_dot(net, DrawOptions(level="network"))
    assert "LayerNorm" in dot and "Layer scale (init 0.5)" in dot
    source = generate_source(net)[0]
    assert "class LayerNorm2d(nn.LayerNorm)" in source and "class LayerScale(nn.Module)" in source
    assert "LayerNorm2d(6, eps=1e-06)" in source and "LayerScale(6, 0.5)" in source


def test_differential_oracles_agree_on_the_new_kinds():
    """The differential suite's checks (shapes, costs, every counter, each node's value against
    its own evaluator, the optimize levels) on layer norms and layer scales between convs
    with batch norm, where folding a layer norm as batch norm would show."""
    td = pytest.importorskip("oraclelib")
    net = incdsl.load("network t:\n    input 4x8x8\n    conv 3x3 6 pad = 1 bn = on act = off\n    layer_norm 1e-6\n"
                      "    conv 1x1 8 bn = on act = gelu -> layer_scale 0.5\n    residual(act = off):\n"
                      "        conv 1x1 8 bn = on -> layer_norm -> layer_scale 2\n"
                      "    gap -> layer_norm -> flatten -> layer_norm -> layer_scale 3 -> linear 3\n")
    td.check_all(net)
    for level in ("train", "infer"):
        td.check_levels_eval(net, level)
        td.check_state_dicts(net, level)


def test_weight_decay_leaves_layer_scales_and_layer_norms_alone():
    """Layer scales are [C, 1, 1] (torchvision's shape) but scales, not conv weights: the
    optimiser puts them with the biases and norm parameters, out of weight decay."""
    pytest.importorskip("torch")
    from incdsl.train.optim import build_optimizer
    from incdsl.train.recipes import Recipe

    model = incdsl.to_torch(incdsl.load(one_layer("conv 1x1 4 -> layer_norm -> layer_scale 0.5")))
    optimizer = build_optimizer(model, Recipe(weight_decay=0.05))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    named = dict(model.named_parameters())
    assert {n for n, p in named.items() if id(p) in decayed} == {n for n in named if n.endswith("conv.weight")}
