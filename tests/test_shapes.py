"""Shape inference: the window arithmetic, each node kind's rule, and agreement with lowering."""
import glob
import math
import re
from pathlib import Path

import pytest

import incdsl
from incdsl.passes.shapes import MAX_SIZE, ShapeError, infer_node, infer_shapes, window

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(str(Path(p).relative_to(REPO)) for p in glob.glob(str(REPO / "specs" / "**" / "*.inc"), recursive=True)
                 + glob.glob(str(REPO / "examples" / "*.inc")))
# Specs that define a network (libraries hold only blocks); search spaces (specs/search/,
# examples/mini_space.inc) are families of networks with `choice(...)`, checked point by point
# by their own tests.
NETWORK_SPECS = [p for p in SHIPPED if re.search(r"^network ", (REPO / p).read_text(encoding="utf-8"), re.M)
                 and not p.startswith("specs/search") and not p.endswith("_space.inc")]


def conv(k=(3, 3), s=(1, 1), pad="V", filters=8, d=(1, 1), groups=1, ceil=False):
    return {"filters": filters, "kernel": k, "stride": s, "pad": pad, "dilation": d, "groups": groups,
            "bias": True, "bn": None, "act": "relu", "ceil": ceil}


def pool(k=(3, 3), s=(1, 1), pad="V", ceil=False):
    return {"kernel": k, "stride": s, "pad": pad, "ceil": ceil}


# --- window arithmetic -----------------------------------------------------------------------

@pytest.mark.parametrize("n, k, s, out, dropped", [
    (299, 3, 2, 149, 0), (35, 3, 2, 17, 0), (32, 3, 2, 15, 1), (8, 3, 1, 6, 0), (7, 7, 1, 1, 0), (10, 4, 3, 3, 0),
    (11, 4, 3, 3, 1),
])
def test_valid_padding_floor_formula(n, k, s, out, dropped):
    w = window(n, k, s, 1, "V", 0)
    assert w.out == out == (n - k) // s + 1
    assert (w.before, w.after, w.dropped) == (0, 0, dropped)


@pytest.mark.parametrize("n, k, s, before, after", [
    (35, 3, 1, 1, 1), (35, 3, 2, 1, 1), (32, 3, 2, 0, 1), (17, 7, 1, 3, 3), (8, 1, 2, 0, 0), (4, 5, 1, 2, 2),
    (16, 2, 2, 0, 0), (15, 2, 2, 0, 1),
])
def test_same_padding_is_tensorflow_same(n, k, s, before, after):
    w = window(n, k, s, 1, "S", 0)
    assert w.out == math.ceil(n / s)
    assert (w.before, w.after) == (before, after)  # the odd pixel goes after (bottom/right)
    assert w.before + w.after == max((w.out - 1) * s + k - n, 0)


def test_explicit_padding_per_side_and_axis():
    pad = (0, 3, 1, 2)  # top, bottom, left, right
    assert window(17, 7, 1, 1, pad, 0).out == 17 - 7 + 3 + 1
    assert window(17, 7, 1, 1, pad, 1).out == 17 - 7 + 3 + 1
    assert window(10, 3, 2, 1, (1, 1, 0, 0), 0).out == (10 + 2 - 3) // 2 + 1
    assert window(10, 3, 2, 1, (1, 1, 0, 0), 1).out == (10 - 3) // 2 + 1
    assert window(10, 3, 2, 1, (1, 1, 0, 0), 0).dropped == 0  # only V counts dropped rows


def test_dilation_widens_the_kernel():
    assert window(32, 3, 1, 2, "V", 0).out == 32 - 5 + 1
    assert window(32, 3, 1, 3, (3, 3, 3, 3), 0).out == 32
    w = window(32, 3, 1, 2, "S", 0)
    assert (w.out, w.before, w.after) == (32, 2, 2)


@pytest.mark.parametrize("n, k, s, p, out", [
    (112, 3, 2, 0, 56),   # GoogLeNet: 112 -> 56 only when rounding up
    (56, 3, 2, 0, 28), (28, 3, 2, 0, 14), (14, 3, 2, 0, 7),
    (32, 3, 2, 0, 16), (5, 2, 2, 1, 3),
    (6, 2, 2, 1, 4),      # ceil gives 4 windows; the 4th starts at 6 = n + p: inside the data? no: dropped
])
def test_ceil_mode_rounds_up_but_never_starts_in_the_trailing_padding(n, k, s, p, out):
    expected = math.ceil((n + 2 * p - k) / s) + 1
    if (expected - 1) * s >= n + p:
        expected -= 1
    assert window(n, k, s, 1, (p, p, p, p) if p else "V", 0, ceil=True).out == expected == out


def test_window_larger_than_the_input_gives_no_output():
    assert window(2, 3, 1, 1, "V", 0).out == 0
    assert window(2, 3, 1, 1, "S", 0).out == 2


# --- rules -----------------------------------------------------------------------------------

def test_conv_rule_and_its_warning():
    shape, warnings = infer_node("conv", conv(k=(1, 7), pad="S", filters=32), [(16, 17, 17)])
    assert shape == (32, 17, 17) and warnings == []
    shape, warnings = infer_node("conv", conv(s=(2, 2)), [(3, 32, 32)])
    assert shape == (8, 15, 15)
    assert warnings == ["valid padding drops 1 row(s) and 1 column(s) of the 32x32 input (output 15x15)"]


def test_pool_rules_keep_depth():
    assert infer_node("maxpool", pool(s=(2, 2), ceil=True), [(64, 112, 112)])[0] == (64, 56, 56)
    attrs = dict(pool(pad=(1, 1, 1, 1)), count_pad=False)
    assert infer_node("avgpool", attrs, [(64, 17, 17)])[0] == (64, 17, 17)


@pytest.mark.parametrize("op, attrs, shape, out", [
    ("gap", {}, (2048, 8, 8), (2048, 1, 1)),
    ("flatten", {}, (2048, 1, 1), (2048,)),
    ("flatten", {}, (4, 3, 2), (24,)),
    ("linear", {"units": 1000, "bias": True, "act": None}, (2048,), (1000,)),
    ("lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}, (64, 56, 56), (64, 56, 56)),
    ("bn", {"eps": 1e-3}, (64, 56, 56), (64, 56, 56)),
    ("act", {"fn": "relu"}, (10,), (10,)),
    ("dropout", {"p": 0.2}, (10,), (10,)),
    ("softmax", {}, (10,), (10,)),
    ("identity", {}, (3, 4, 5), (3, 4, 5)),
])
def test_single_input_rules(op, attrs, shape, out):
    assert infer_node(op, attrs, [shape]) == (out, [])


def test_concat_and_add_rules():
    assert infer_node("concat", {}, [(96, 35, 35), (64, 35, 35), (96, 35, 35)])[0] == (256, 35, 35)
    assert infer_node("concat", {}, [(10,), (5,)])[0] == (15,)
    assert infer_node("add", {"scales": (1.0, 0.2), "act": "relu"}, [(8, 4, 4), (8, 4, 4)])[0] == (8, 4, 4)


@pytest.mark.parametrize("op, attrs, ins, message", [
    ("conv", conv(groups=2), [(3, 8, 8)], "`groups = 2` must divide both the input depth 3 and the filters 8"),
    ("conv", conv(), [(192,)], "`conv` needs a CxHxW input, found the flat vector 192"),
    ("maxpool", pool(), [(10,)], "`maxpool` needs a CxHxW input"),
    ("gap", {}, [(10,)], "`gap` needs a CxHxW input"),
    ("lrn", {"size": 5}, [(10,)], "`lrn` needs a CxHxW input"),
    ("linear", {"units": 10}, [(3, 4, 4)], "`linear` needs a flat input, found 3x4x4"),
    ("conv", conv(k=(5, 5)), [(3, 4, 4)], "`conv` 5x5 /1 on a 4x4 input leaves no output"),
    ("maxpool", pool(pad=(2, 2, 2, 2)), [(3, 8, 8)], "padding (2, 2, 2, 2) is more than half the 3x3 window"),
    ("concat", {}, [(3, 8, 8), (3, 4, 4)], "concat branches disagree in spatial size"),
    ("concat", {}, [(3, 8, 8), (3,)], "concat branches mix flat vectors and feature maps"),
    ("add", {"scales": (1.0, 1.0), "act": None}, [(3, 8, 8), (4, 8, 8)], "the tensors summed have different shapes"),
    ("conv", conv(k=(1, 1), filters=MAX_SIZE + 1), [(3, 8, 8)], "is larger than any backend can hold"),
])
def test_rules_reject_what_does_not_fit(op, attrs, ins, message):
    with pytest.raises(ShapeError) as info:
        infer_node(op, attrs, ins)
    assert message in info.value.message


# --- agreement with lowering -----------------------------------------------------------------

def test_the_shipped_specs_are_found():
    assert any(p.endswith("inception_v4.inc") for p in NETWORK_SPECS) or not (REPO / "specs" / "inception_v4.inc").exists()


@pytest.mark.parametrize("path", NETWORK_SPECS)
def test_infer_shapes_agrees_with_lowering_on_shipped_specs(path):
    net = incdsl.load(str(REPO / path))
    shapes = infer_shapes(net.graph)
    assert shapes == {n: d["shape"] for n, d in net.graph.nodes(data=True)}
    assert shapes[net.output] == net.output_shape


def test_infer_shapes_follows_another_input_size():
    text = ("network t:\n    input 3x64x64\n    conv 3x3 8 /2 S\n    concat:\n        branch: conv 1x1 4\n"
            "        branch: maxpool 3x3 S\n    residual:\n        conv 1x1 12 act = off\n    gap -> flatten -> linear 3\n")
    for size in [(3, 64, 64), (3, 17, 31), (1, 5, 5)]:
        net = incdsl.load(text, input=size)
        shapes = infer_shapes(net.graph)
        assert shapes == {n: d["shape"] for n, d in net.graph.nodes(data=True)}
        assert shapes["concat_0"] == (12, math.ceil(size[1] / 2), math.ceil(size[2] / 2))


def test_infer_shapes_does_not_change_the_graph():
    net = incdsl.load("network t:\n    input 3x16x16\n    conv 3x3 8 S -> gap\n")
    before = net.format()
    infer_shapes(net.graph)
    assert net.format() == before
