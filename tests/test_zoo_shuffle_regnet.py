"""ShuffleNet V2 and RegNetX/Y-400MF (specs/zoo/) against torchvision's models, and the
`shuffle` layer kind ShuffleNet needs.

Totals are asserted without torch. With torchvision: the reference's parameter count and its
multiply-adds (torch's flop counter, halved) equal ours at 224x224; its state dict, loaded
into the compiled spec, gives the same logits in eval mode. No weights are downloaded: both
sides start from random initialisations. torchvision registers RegNet's projection shortcut
(`proj`) before the branch whose first 1x1 conv has the same shape, so RegNet's weights are
paired by data flow (`load_weights` given the module), ShuffleNet's by registration order.
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
from modellib import assert_same_logits, one_torch_thread  # noqa: F401 (autouse fixture)
from speclib import failure, one_layer
from zoolib import SHUFFLE_REGNET as MODELS, SHUFFLE_REGNET_DEFAULT as DEFAULT, check_fails

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"

SIZE = 64  # every one ends in a global pool: the logits check runs at this input
AGAINST_TORCHVISION = sorted(MODELS)  # about a second each


def load(name: str, size: int = 224) -> incdsl.Network:
    spec, sets, _, _ = MODELS[name]
    return incdsl.load(str(ZOO / spec), params=sets or None, input=(3, size, size))


def reference(name: str):
    """torchvision's model, randomly initialised (RegNet's builder cannot run on the meta device)."""
    pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    return getattr(models, name)()


# --- counts -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_totals_are_exact(name):
    costs = incdsl.count_costs(load(name))
    assert (costs.total.params, costs.total.macs) == MODELS[name][2:]


def test_the_specs_state_their_totals_and_sources():
    for name in DEFAULT:
        spec, _, params, macs = MODELS[name]
        text = (ZOO / spec).read_text(encoding="utf-8")
        assert f"Totals: {params:,} parameters, {macs:,} multiply-adds at 224x224" in text, spec
        assert "models/" in text and "arXiv" in text, spec  # the torchvision file and the paper


@pytest.mark.parametrize("name", AGAINST_TORCHVISION)
def test_torchvision_counts_the_same(name):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    ref = reference(name).to("meta")
    _, _, params, macs = MODELS[name]
    assert sum(p.numel() for p in ref.parameters()) == params
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        ref(torch.empty(1, 3, 224, 224))
    assert counter.get_total_flops() == 2 * macs


@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf"])
def test_regnet_widths_and_depths_are_the_quantised_rule(name):
    """The spec's stage widths, depths and group width are what torchvision's `BlockParams`
    computes from the paper's (depth, w_0, w_a, w_m, group width), read from the IR."""
    pytest.importorskip("torch")
    from torchvision.models.regnet import BlockParams

    rule = {"regnet_x_400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
            "regnet_y_400mf": dict(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25)}[name]
    want = [(w, d, g) for w, _, d, g, _ in BlockParams.from_init_params(**rule)._get_expanded_params()]
    stages = [inst["args"] for inst in load(name).graph.graph["instances"].values() if inst["block"] == "regnet_stage"]
    assert [(a["w"], a["d"], a["g"]) for a in stages] == want
    assert all(a["se"] == rule.get("se_ratio", 0) for a in stages)


# --- outputs ------------------------------------------------------------------------------

def same_weights(name: str):
    """(ours, torchvision's) with the same weights and randomised batch-norm statistics."""
    return modellib.same_weights(lambda: reference(name), load(name, SIZE), by_data_flow=name.startswith("regnet"))


@pytest.mark.parametrize("name", AGAINST_TORCHVISION)
def test_loaded_weights_give_torchvisions_logits(name):
    pytest.importorskip("torch")
    ours, ref = same_weights(name)
    assert_same_logits(ours, ref, SIZE)


def test_shufflenet_pairs_by_data_flow_too():
    """Given torchvision's module, `load_weights` follows the data through the splits, the
    concatenations and the view/transpose of each shuffle, and pairs as registration order does."""
    torch = pytest.importorskip("torch")
    ours, ref = same_weights("shufflenet_v2_x1_0")
    by_order = {k: v.clone() for k, v in ours.state_dict().items()}
    report = incdsl.load_weights(ours, ref)
    assert len(report) == len(ref.state_dict()) and not report.skipped
    assert all(torch.equal(v, by_order[k]) for k, v in ours.state_dict().items())


def test_regnet_state_dict_order_alone_does_not_fit():
    """Why RegNet's weights go by data flow: in registration order torchvision's `proj` comes
    before the branch, so pairing by order puts the branch's 3x3 conv against a 1x1, and the
    load fails naming both."""
    pytest.importorskip("torch")
    from incdsl.torch.weights import WeightsError

    ours = incdsl.to_torch(load("regnet_x_400mf", SIZE), seed=0)
    with pytest.raises(WeightsError, match=r"regnet_body\.conv_1\.conv\.weight` has shape \[32, 16, 3, 3\]"):
        incdsl.load_weights(ours, reference("regnet_x_400mf").state_dict())


def test_shufflenet_units_split_and_shuffle_as_torchvision():
    """One stride-1 unit and one stride-2 unit of torchvision's `InvertedResidual`, weights
    loaded in order, against ours written as a block of the spec's library."""
    torch = pytest.importorskip("torch")
    from torchvision.models.shufflenetv2 import InvertedResidual
    from modellib import randomise_norms

    spec = ('include "lib/shufflenet.inc"\nnetwork t:\n    input 8x9x9\n    with conv(bn = 1e-5, act = relu):\n'
            "        shuffle_down(16)\n        shuffle_unit\n")
    net = incdsl.load(spec, include_path=[str(ZOO)])
    assert net.output_shape == (16, 5, 5)
    torch.manual_seed(0)
    ref = randomise_norms(torch.nn.Sequential(InvertedResidual(8, 16, 2), InvertedResidual(16, 16, 1))).eval()
    ours = incdsl.to_torch(net, seed=0).eval()
    incdsl.load_weights(ours, ref.state_dict())
    x = torch.randn(2, 8, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


# --- the `shuffle` kind -------------------------------------------------------------------

def shuffled_channels(c: int, groups: int) -> list[int]:
    """Which input channel each output channel reads: ShuffleNet's definition (the channels as
    `groups` rows of c / groups, transposed), written without torch."""
    return [(i % groups) * (c // groups) + i // groups for i in range(c)]


def test_shuffled_channels_by_hand():
    assert shuffled_channels(6, 2) == [0, 3, 1, 4, 2, 5]
    assert shuffled_channels(6, 3) == [0, 2, 4, 1, 3, 5]
    assert shuffled_channels(4, 1) == [0, 1, 2, 3]


@settings(deadline=None, max_examples=25)
@given(groups=st.integers(1, 6), per=st.integers(1, 5), h=st.integers(1, 4), w=st.integers(1, 4))
def test_shuffle_keeps_the_shape_and_costs_nothing(groups, per, h, w):
    c = groups * per
    net = incdsl.load(one_layer(f"shuffle {groups}", f"{c}x{h}x{w}"))
    assert net.output_shape == (c, h, w)
    costs = incdsl.count_costs(net)
    assert (costs.total.params, costs.total.macs) == (0, 0)
    assert costs.by_name()[net.output].rf[:2] == (1, 1)  # one output position reads one input position


@settings(deadline=None, max_examples=10)
@given(groups=st.integers(1, 4), per=st.integers(1, 4))
def test_shuffle_computes_the_permutation_and_torchs_channel_shuffle(groups, per):
    torch = pytest.importorskip("torch")
    c = groups * per
    model = incdsl.to_torch(incdsl.load(one_layer(f"shuffle {groups}", f"{c}x2x3"))).eval()
    x = torch.randn(2, c, 2, 3, generator=torch.Generator().manual_seed(c))
    y = model(x)
    assert torch.equal(y, x[:, shuffled_channels(c, groups)])
    assert torch.equal(y, torch.nn.ChannelShuffle(groups)(x))
    assert torch.equal(model(x.to(memory_format=torch.channels_last)), y)


@pytest.mark.parametrize("layer,shape,message", [
    ("shuffle 4", "6x3x3", "`shuffle 4` needs a depth divisible by 4, found the 6x3x3 input's 6 channels"),
    ("shuffle 2", "7x3x3", "`shuffle 2` needs a depth divisible by 2, found the 7x3x3 input's 7 channels"),
    ("shuffle 0", "6x3x3", "expected a positive integer, found `0`"),
    ("shuffle 1.5", "6x3x3", "`shuffle` does not take `1.5` here"),
    ("flatten -> shuffle 2", "6x3x3", "`shuffle` needs a CxHxW input"),
])
def test_shuffle_errors(layer, shape, message):
    assert message in failure(one_layer(layer, shape)).render()


def test_shuffle_error_points_at_the_layer_with_a_hint(tmp_path):
    spec, stderr = check_fails(tmp_path, one_layer("conv 1x1 10 -> shuffle 4"))
    assert f"{spec}:3:20: error: `shuffle 4` needs a depth divisible by 4" in stderr
    assert "hint: groups that divide 10: 2, 5" in stderr


def test_shuffle_draws_and_compiles_to_standalone_source():
    from incdsl.render.graphviz import build_dot
    from incdsl.render.style import DrawOptions
    from incdsl.torch.source import generate_source

    net = incdsl.load(one_layer("shuffle 3"))
    assert "Channel shuffle (3 groups)" in build_dot(net, DrawOptions(level="network"))
    source = generate_source(net)[0]
    assert "class ChannelShuffle(nn.Module)" in source and "ChannelShuffle(3)" in source


def test_check_and_cost_of_shufflenet_do_not_import_torch():
    code = ("import sys, incdsl; n = incdsl.load(sys.argv[1]); incdsl.count_costs(n); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(ZOO / "shufflenet_v2.inc")], check=True, cwd=ROOT)


@pytest.mark.parametrize("tool", ["fvcore", "ptflops", "ptflops-aten", "thop", "torchinfo", "flop_counter"])
def test_counters_count_shufflenet_as_the_conventions_say(tool, tmp_path):
    """Each counter's total on the compiled ShuffleNet V2 0.5x at 64x64 is what `cost
    --convention` says: no counter counts the shuffles (nor the channel splits)."""
    from counterlib import check_tool as _check_tool

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shufflenet.inc").write_text((ZOO / "lib" / "shufflenet.inc").read_text(encoding="utf-8"),
                                                     encoding="utf-8")
    text = (ZOO / "shufflenet_v2.inc").read_text(encoding="utf-8")
    text = text.replace("input 3x224x224", "input 3x64x64").replace("c2 = 116, c3 = 232, c4 = 464",
                                                                  "c2 = 48, c3 = 96, c4 = 192")
    (tmp_path / "small.inc").write_text(text, encoding="utf-8")
    _check_tool(tool, str(tmp_path / "small.inc"))


def test_differential_oracles_agree_on_a_shuffle_between_joins():
    """The differential suite's checks (shapes, costs, every counter, each node's value against
    its own evaluator, the optimize levels) on a shuffle after a concatenation and before a 1x1
    conv: the place where concat elision and horizontal fusion could misplace channels."""
    td = pytest.importorskip("oraclelib")
    net = incdsl.load("network t:\n    input 4x8x8\n    concat:\n        branch: conv 1x1 6\n"
                      "        branch: conv 3x3 6 pad = 1\n    shuffle 3\n    conv 1x1 4 bn = on\n")
    td.check_all(net)
    for level in ("train", "infer"):
        td.check_levels_eval(net, level)
        td.check_state_dicts(net, level)
