"""Defects found by looking at `incdsl draw`'s figures (a visual audit), each pinned on the DOT text.

* a nested block feeding two inputs of one join (FractalNet's flat mean) drew two arrows on top
  of each other; now one arrow that says ``2 inputs``;
* a probability such as stochastic depth's or swapout's 1 - 5/6 * p read ``0.833333``; box
  texts give floats three significant digits;
* repeated calls of a block, named `fractal_1`, `fractal_2` by the lowering, carried that
  made-up name as a subtitle (the first call, `fractal`, did not); names the spec gives
  (`as inception_3a`) still show.
"""
from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import incdsl
from incdsl.ops.marks import num
from incdsl.render.graphviz import DrawOptions, build_dot
from incdsl.render.scene import Edge, merge_parallel

ROOT = Path(__file__).resolve().parent.parent
EDGE = re.compile(r'^\s*("[^"]+"|\S+) -> ("[^"]+"|\S+)(?: \[(.*)\])?$', re.M)


def edges(dot: str) -> list[tuple[str, str, str]]:
    return [(a.strip('"'), b.strip('"'), attrs or "") for a, b, attrs in EDGE.findall(dot)]


def drawn_edges(dot: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b, attrs in edges(dot) if "invis" not in attrs]


FRACTAL = ROOT / "specs" / "zoo" / "cifar" / "fractalnet20.inc"


def test_a_flat_join_fed_twice_by_one_nested_block_gets_one_arrow_marked_2_inputs():
    dot = build_dot(incdsl.load(FRACTAL), DrawOptions(level="block", block="fractal"))
    into_mean = [(a, attrs) for a, b, attrs in edges(dot) if b == "fractal/mean_0"]
    tails = [a for a, _ in into_mean]
    assert sorted(tails) == ["fractal/branch_0/fractal_1", "fractal/branch_1/fractal"]
    (note,) = [attrs for a, attrs in into_mean if a == "fractal/branch_0/fractal_1"]
    assert "2 inputs" in note and "32x32x64" in note


def test_no_drawing_of_the_fractal_net_has_parallel_arrows():
    net = incdsl.load(FRACTAL)
    for options in (DrawOptions(), DrawOptions(level="block", block="fractal"),
                    DrawOptions(level="layer", block="fractal")):
        pairs = drawn_edges(build_dot(net, options))
        assert len(pairs) == len(set(pairs)), options


def test_merged_arrows_keep_order_notes_and_differing_shapes():
    merged = merge_parallel([Edge("a", "j", (8, 4, 4)), Edge("b", "j", (8, 4, 4), "scale 0.1"),
                             Edge("a", "j", (16, 4, 4), "scale 0.2"), Edge("j", "#output", (24, 4, 4))])
    assert [(e.tail, e.head) for e in merged] == [("a", "j"), ("b", "j"), ("j", "#output")]
    assert merged[0].shape is None and merged[0].note == "2 inputs: 4x4x8, 4x4x16, scale 0.2"
    assert merged[1:] == [Edge("b", "j", (8, 4, 4), "scale 0.1"), Edge("j", "#output", (24, 4, 4))]


def test_probabilities_in_box_texts_have_three_significant_digits():
    dot = build_dot(incdsl.load(ROOT / "specs" / "zoo" / "cifar" / "swapout_v2_32_w4.inc"),
                    DrawOptions(level="block", block="swapout_stage"))
    keeps = re.findall(r"keep ([0-9.e-]+)", dot)
    assert keeps and "0.833" in keeps and not any(len(k.lstrip("0.")) > 3 for k in keeps)


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_num_keeps_three_significant_digits(v):
    digits = re.sub(r"e.*$", "", num(v)).replace(".", "").lstrip("0")
    assert len(digits) <= 3
    assert abs(float(num(v)) - v) <= 0.005 * v


def test_made_up_instance_names_are_not_subtitles_but_given_ones_are():
    fractal = build_dot(incdsl.load(FRACTAL), DrawOptions())
    assert "fractal_1</FONT>" not in fractal and "fractal_4</FONT>" not in fractal
    googlenet = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions())
    assert "inception_3a</FONT>" in googlenet and "inception_4e</FONT>" in googlenet


def test_a_nested_block_box_drops_a_made_up_name_too():
    dot = build_dot(incdsl.load(FRACTAL), DrawOptions(level="block", block="fractal"))
    label = re.search(r'"fractal/branch_0/fractal_1" \[label=<(.*?)> fillcolor', dot).group(1)
    assert label.startswith("Fractal<BR/>") and "fractal_1" not in label


def test_a_wrapped_left_to_right_drawing_goes_down_from_one_row_to_the_next():
    # without ports the arrow from Reduction-B (end of row 1) ran back across the figure and
    # met 3 x Inception-C from the right, its shape label on top of the next arrow
    dot = build_dot(incdsl.load(ROOT / "specs" / "inception_v4.inc"), DrawOptions(rankdir="LR"))
    ported = [(a, b) for a, b, attrs in edges(dot) if "tailport=s" in attrs and "headport=n" in attrs]
    assert ported == [("reduction_b", "inception_c.0")]


def test_an_unwrapped_drawing_has_no_ports():
    net = incdsl.load(ROOT / "specs" / "inception_v4.inc")
    for options in (DrawOptions(), DrawOptions(rankdir="LR", level="block", block="inception_a")):
        assert "port=" not in build_dot(net, options)


def test_a_nested_block_box_shows_its_arguments():
    # Xception's strided block drew `Separable` twice with no filter count; FractalNet's block
    # drew three `Fractal` boxes alike, though one is a single convolution (c 1)
    xception = build_dot(incdsl.load(ROOT / "specs" / "zoo" / "xception.inc"), DrawOptions(level="block", block="strided"))
    assert xception.count('Separable<BR/><FONT POINT-SIZE="9" COLOR="#555555">filters 256</FONT>') == 2
    fractal = build_dot(incdsl.load(FRACTAL), DrawOptions(level="block", block="fractal"))
    assert "c 1, filters 64, dropout 0" in fractal and fractal.count("c 2, filters 64, dropout 0") == 2


def test_a_long_or_structured_argument_list_is_left_out():
    from incdsl.render.collect import ARGS_CHARS, _call_args
    assert _call_args({}) is None
    assert _call_args({"kernel": (3, 3)}) is None
    assert _call_args({f"p{i}": 1000 for i in range(12)}) is None
    assert _call_args({"keep": 5 / 6, "mode": "fast"}) == "keep 0.833, mode fast"
    assert len(_call_args({"a": 1})) <= ARGS_CHARS


def test_a_named_residual_around_block_calls_is_opened_at_network_level():
    # RoR-3 drew one `Root` box for all three groups and their level-1 shortcut
    net = incdsl.load(ROOT / "specs" / "zoo" / "cifar" / "ror3_wrn58_4.inc", params={"depth": 10})
    dot = build_dot(net, DrawOptions())
    assert ">Root<" not in dot
    pairs = drawn_edges(dot)
    assert ("root/group3", "root/add_0") in pairs and ("root/shortcut/conv_0", "root/add_0") in pairs
    assert ("conv_0", "root/shortcut/conv_0") in pairs and ("conv_0", "root/group1") in pairs


def test_squeezenet_bypasses_show_at_network_level_named_by_their_scope():
    dot = build_dot(incdsl.load(ROOT / "specs" / "zoo" / "cifar" / "squeezenet_bn.inc"), DrawOptions())
    for fire in ("fire3", "fire5", "fire7"):
        assert (f"{fire}/fire", f"{fire}/add_0") in drawn_edges(dot)
        assert re.search(rf'"{fire}/fire" \[label=<Fire<BR/><FONT[^>]*>{fire}</FONT>', dot)
    assert "fire2</FONT>" in dot and ">Fire3<" not in dot


def test_scopes_without_block_calls_stay_one_box():
    dot = build_dot(incdsl.load(ROOT / "specs" / "inception_v4.inc"), DrawOptions())
    assert "/" not in "".join(a + b for a, b in drawn_edges(dot))


def test_a_tapped_box_writes_its_shape_once_not_beside_each_arrow():
    # GoogLeNet's inception_4d fed the trunk and aux2: `14x14x528 14x14x528` side by side
    dot = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions())
    assert re.search(r'inception_4d \[label=<Inception<BR/>.*14x14x528</FONT>', dot)
    out_of_4d = [attrs for a, _, attrs in edges(dot) if a == "inception_4d"]
    assert len(out_of_4d) == 2 and not any("14x14x528" in attrs for attrs in out_of_4d)


def test_without_aux_heads_the_shape_stays_on_the_arrow():
    dot = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions(aux=False))
    assert [attrs for a, _, attrs in edges(dot) if a == "inception_4d"] == ["label=<14x14x528>"]


def test_calls_of_one_block_with_other_arguments_show_them_at_network_level():
    dot = build_dot(incdsl.load(ROOT / "specs" / "zoo" / "densenet.inc"), DrawOptions())
    lines = re.findall(r'label=<Dense-Block<BR/><FONT [^>]*>([^<]*)</FONT>', dot)
    assert lines == ["n 6, k 32", "n 12, k 32", "n 24, k 32", "n 16, k 32"]
    assert re.search(r"transition \[label=<Transition>", dot)  # its calls agree: no line


def test_named_calls_keep_their_names_alone():
    dot = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions())
    assert "inception_3a" in dot and "c1 64" not in dot and "64, " not in dot


def test_resnet_network_figure_shows_the_papers_four_stages():
    """The ImageNet ResNets were one `Basic-Stages` box between the stem and the pooling: the
    specs wrapped all stages in one block. They now call one block per stage of Table 1."""
    for spec, kind in (("resnet18", "Basic-Stage"), ("resnet50", "Bottleneck-Stage")):
        dot = build_dot(incdsl.load(ROOT / "specs" / "zoo" / f"{spec}.inc"), DrawOptions())
        stages = re.findall(rf"label=<{kind}<BR/>", dot)
        assert len(stages) == 4, spec
        assert ("stem", "basic_stage" if kind == "Basic-Stage" else "bottleneck_stage") in drawn_edges(dot)


def test_lr_aux_heads_hang_under_their_tap_between_rows():
    """With --rankdir LR, GoogLeNet's aux2 shared the next row's rank and sat at its far end,
    reached by a long dashed arrow across the figure. Now each aux head's last box holds the
    next row down (an invisible edge) and its dashed edges are weighted to stay vertical."""
    dot = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions(rankdir="LR"))
    hidden = [(a, b) for a, b, attrs in edges(dot) if "invis" in attrs]
    rows = re.findall(r"rank=same\n((?:\s+\S+ -> \S+ \[style=invis\]\n)+)", dot)
    firsts = [re.search(r"(\S+) ->", row).group(1) for row in rows]
    assert ("#aux/aux1/output", firsts[1]) in hidden and ("#aux/aux2/output", firsts[2]) in hidden
    taps = {(a, b): attrs for a, b, attrs in edges(dot) if b in ("#aux/aux1", "#aux/aux2")}
    assert taps and all("weight=10" in attrs and "dashed" in attrs for attrs in taps.values())
    # top to bottom there are no rows, and nothing is added
    plain = build_dot(incdsl.load(ROOT / "specs" / "googlenet.inc"), DrawOptions())
    assert "weight=10" not in plain and ("#aux/aux2/output", "inception_5b") not in [(a, b) for a, b, _ in edges(plain)]


def test_draw_call_picks_which_call_of_a_block_is_drawn(tmp_path, capsys):
    """Calls of one block differ where an `if` picks their layers: MobileNetV2's first inverted
    residual (t = 1) has no 1x1 expansion, so its figure, always drawn from the first call, could
    not show one. `--call N` (DrawOptions.call) draws the N-th."""
    from incdsl.cli import main

    mobile = incdsl.load(ROOT / "specs" / "zoo" / "mobilenet_v2.inc")
    first = build_dot(mobile, DrawOptions(level="block", block="inverted_body"))
    second = build_dot(mobile, DrawOptions(level="block", block="inverted_body", call=2))
    assert first.count("1x1 Conv") == 1 and second.count("1x1 Conv") == 2  # + the expansion
    layers = build_dot(mobile, DrawOptions(level="layer", block="inverted_body", call=2))
    calls = [s for s, i in mobile.graph.graph["instances"].items() if i["block"] == "inverted_body"]
    assert f'"{calls[1]}/' in layers and f'"{calls[0]}/' not in layers
    out = tmp_path / "b.dot"
    assert main(["draw", str(ROOT / "specs" / "zoo" / "mobilenet_v2.inc"), "--block", "inverted_body",
                 "--call", "2", "-o", str(out)]) == 0
    assert out.read_text().count("1x1 Conv") == 2
    code = main(["draw", str(ROOT / "specs" / "zoo" / "mobilenet_v2.inc"), "--block", "inverted_body",
                 "--call", str(len(calls) + 1), "-o", str(tmp_path / "c.dot")])
    err = capsys.readouterr().err
    assert code == 2 and f"is called {len(calls)} times: the call to draw is 1 to {len(calls)}" in err
    assert not (tmp_path / "c.dot").exists()
    assert main(["draw", str(ROOT / "specs" / "zoo" / "mobilenet_v2.inc"), "--call", "2"]) == 2  # no --block
    assert "--call picks which call of --block NAME" in capsys.readouterr().err
