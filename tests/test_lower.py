"""Lowering: every construct of the language becomes the IR nodes, names, attributes and shapes it should."""
import pytest

import incdsl
from incdsl.ir.graph import inputs, lint

SMALL = """\
network small(classes = 10, width = 16):
    input 3x32x32
    conv 3x3 width /2 S as stem
    repeat 2 as i: mixed(n = 8 * (i + 1))
    residual(scale = 0.5):
        conv 1x1 8 -> conv 1x1 in.c act = off
    aux side(weight = 0.3) from stem: gap -> flatten -> linear classes
    gap -> flatten -> linear classes
block mixed(n):
    concat:
        branch: conv 1x1 n
        branch: conv 1x1 n -> conv 3x3 n S
        branch as pool: maxpool 3x3 S -> conv 1x1 n
"""


def net_of(body: str, header: str = "network t:\n    input 3x32x32\n", blocks: str = "", **kwargs):
    lines = "".join(f"    {line}\n" for line in body.splitlines())
    net = incdsl.load(header + lines + blocks, **kwargs)
    lint(net.graph)
    return net


def node(net, name):
    return net.graph.nodes[name]


def ops(net):
    return [node(net, n)["op"] for n in net.layers]


# --- names, scopes, spans --------------------------------------------------------------------

def test_scope_names_of_a_small_spec_are_exact():
    net = incdsl.load(SMALL)
    assert list(net.graph.nodes) == [
        "input", "stem",
        "mixed.0/branch_0/conv_0", "mixed.0/branch_1/conv_0", "mixed.0/branch_1/conv_1",
        "mixed.0/pool/maxpool_0", "mixed.0/pool/conv_0", "mixed.0/concat_0",
        "mixed.1/branch_0/conv_0", "mixed.1/branch_1/conv_0", "mixed.1/branch_1/conv_1",
        "mixed.1/pool/maxpool_0", "mixed.1/pool/conv_0", "mixed.1/concat_0",
        "conv_0", "conv_1", "add_0",
        "side/gap_0", "side/flatten_0", "side/linear_0",
        "gap_0", "flatten_0", "linear_0"]
    lint(net.graph)


def test_names_are_stable_across_loads_and_scopes_match():
    a, b = incdsl.load(SMALL), incdsl.load(SMALL)
    assert a.format() == b.format()
    for name, data in a.graph.nodes(data=True):
        assert data["scope"] == name.rpartition("/")[0]
    assert node(a, "mixed.1/pool/conv_0")["block"] == "mixed" and node(a, "stem")["block"] is None
    assert a.graph.graph["instances"]["mixed.1"]["block"] == "mixed"
    assert a.graph.graph["instances"]["mixed.1"]["args"] == {"n": 16}


def test_every_node_keeps_its_source_span():
    net = incdsl.load(SMALL, file="small.inc")
    where = {name: (d["span"].file, d["span"].line, d["span"].col) for name, d in net.graph.nodes(data=True)}
    assert where["input"] == ("small.inc", 2, 5)
    assert where["stem"] == ("small.inc", 3, 5)
    assert where["mixed.1/branch_1/conv_1"] == ("small.inc", 12, 31)  # inside the block definition
    assert where["mixed.0/pool/maxpool_0"] == ("small.inc", 13, 25)
    assert where["mixed.0/concat_0"] == ("small.inc", 10, 5)
    assert where["conv_1"] == ("small.inc", 6, 23)
    assert where["add_0"] == ("small.inc", 5, 5)
    assert where["side/linear_0"] == ("small.inc", 7, 57)
    assert where["linear_0"] == ("small.inc", 8, 23)
    assert all(d["span"] is not None for _, d in net.graph.nodes(data=True))


def test_unlabelled_numbering_continues_within_a_scope():
    net = net_of("conv 1x1 4 -> conv 1x1 4 as named -> conv 1x1 4\nmaxpool 2x2 -> conv 1x1 4")
    assert net.layers == ["conv_0", "named", "conv_1", "maxpool_0", "conv_2"]


def test_block_instances_get_suffixes_and_labels():
    net = net_of("b -> b -> b as third", blocks="block b:\n    identity\n")
    assert net.layers == ["b/identity_0", "b_1/identity_0", "third/identity_0"]


# --- header, input, overrides ----------------------------------------------------------------

def test_header_params_defaults_and_overrides():
    text = "network t(classes = 10, hidden = classes * 2):\n    input 3x8x8\n    gap -> flatten -> linear hidden -> linear classes\n"
    net = incdsl.load(text)
    assert net.params == {"classes": 10, "hidden": 20}
    assert [node(net, n)["attrs"]["units"] for n in ("linear_0", "linear_1")] == [20, 10]
    net = incdsl.load(text, params={"classes": 5})
    assert net.params == {"classes": 5, "hidden": 10} and net.output_shape == (5,)


def test_input_shape_and_input_override():
    net = net_of("conv 3x3 8 /2 S")
    assert net.input_shape == (3, 32, 32) and net.output_shape == (8, 16, 16)
    assert node(net, "input")["attrs"] == {"shape": (3, 32, 32)}
    net = net_of("conv 3x3 8 /2 S", input=(1, 64, 48))
    assert net.input_shape == (1, 64, 48) and net.output_shape == (8, 32, 24)


def test_in_refers_to_the_network_input_at_top_level():
    net = net_of("conv 1x1 8 -> conv 1x1 (in.c + in.h + in.w)")
    assert net.output_shape == (3 + 32 + 32, 32, 32)


# --- layers ----------------------------------------------------------------------------------

def test_conv_attributes_and_defaults():
    net = net_of("conv 3x3 8\nconv 1x7 16 /2 S bn = 0.001 act = relu6 groups = 2 dilation = 2 as c2\n"
                 "conv 3x3 16 pad = (0, 1, 2, 3) bn = on act = off bias = yes\nconv 3x1 4 pad = (1, 0) bn = off")
    assert node(net, "conv_0")["attrs"] == {
        "filters": 8, "kernel": (3, 3), "stride": (1, 1), "pad": "V", "dilation": (1, 1), "groups": 1,
        "bias": True, "bn": None, "bn_momentum": 0.1, "act": "relu"}
    c2 = node(net, "c2")["attrs"]
    assert (c2["kernel"], c2["stride"], c2["pad"], c2["groups"], c2["dilation"]) == ((1, 7), (2, 2), "S", 2, (2, 2))
    assert (c2["bn"], c2["act"], c2["bias"]) == (0.001, "relu6", False)  # bias off under batch norm
    c1 = node(net, "conv_1")["attrs"]
    assert (c1["pad"], c1["bn"], c1["act"], c1["bias"]) == ((0, 1, 2, 3), 1e-5, None, True)
    assert node(net, "conv_2")["attrs"]["pad"] == (1, 1, 0, 0) and node(net, "conv_2")["attrs"]["bias"] is True
    # 30x30 -> 1x7 /2 S: 15x15 -> 3x3 pad (0,1,2,3): 14x18 -> 3x1 pad (1,0): 14x18
    assert [node(net, n)["shape"] for n in net.layers] == [(8, 30, 30), (16, 15, 15), (16, 14, 18), (4, 14, 18)]


@pytest.mark.parametrize("arg, act", [("act = on", "relu"), ("act = off", None), ("act = no", None),
                                      ("act = silu", "silu"), ("act = leaky_relu", "leaky_relu"), ("", "relu")])
def test_conv_activation_on_off_and_which(arg, act):
    net = net_of(f"conv 1x1 4 {arg}")
    assert node(net, "conv_0")["attrs"]["act"] == act


def test_pools_gap_and_the_simple_layers():
    net = net_of("maxpool 3x3 /2 ceil = yes\navgpool 3x3 /1 pad = 1 count_pad = no\nmaxpool 2 /2 S\n"
                 "lrn 5 alpha = 0.001 beta = 0.5 k = 2 -> bn eps = 0.01 -> act tanh -> relu -> dropout 0.4\n"
                 "gap -> flatten -> linear 10 bias = no act = relu -> softmax -> identity")
    assert ops(net) == ["maxpool", "avgpool", "maxpool", "lrn", "bn", "act", "act", "dropout", "gap", "flatten",
                        "linear", "softmax", "identity"]
    a = {n: node(net, n)["attrs"] for n in net.layers}
    assert a["maxpool_0"] == {"kernel": (3, 3), "stride": (2, 2), "pad": "V", "ceil": True}
    assert a["avgpool_0"] == {"kernel": (3, 3), "stride": (1, 1), "pad": (1, 1, 1, 1), "ceil": False, "count_pad": False}
    assert a["maxpool_1"]["kernel"] == (2, 2) and a["maxpool_1"]["pad"] == "S"
    assert a["lrn_0"] == {"size": 5, "alpha": 0.001, "beta": 0.5, "k": 2.0}
    assert a["bn_0"] == {"eps": 0.01, "momentum": 0.1}
    assert a["act_0"] == {"fn": "tanh"} and a["act_1"] == {"fn": "relu"}
    assert a["dropout_0"] == {"p": 0.4}
    assert a["linear_0"] == {"units": 10, "bias": False, "act": "relu"}
    shapes = [node(net, n)["shape"] for n in net.layers]
    # ceil: (32-3)/2 -> 15 (floor 14 + 1, rounded up); pad 1 keeps 16; S /2: 8
    assert shapes[:3] == [(3, 16, 16), (3, 16, 16), (3, 8, 8)]
    assert shapes[8:] == [(3, 1, 1), (3,), (10,), (10,), (10,)]


def test_avgpool_counts_padding_by_default():
    net = net_of("avgpool 3x3 S")
    assert node(net, "avgpool_0")["attrs"]["count_pad"] is True


# --- composites ------------------------------------------------------------------------------

def test_concat_keeps_branch_order_in_edge_indices():
    net = net_of("concat:\n    branch: conv 1x1 5\n    branch as b: conv 1x1 7\n    branch: maxpool 3x3 S\n"
                 "    branch: conv 1x1 1")
    cat = "concat_0"
    assert inputs(net.graph, cat) == ["branch_0/conv_0", "b/conv_0", "branch_1/maxpool_0", "branch_2/conv_0"]
    assert [net.graph.edges[u, cat]["index"] for u in inputs(net.graph, cat)] == [0, 1, 2, 3]
    assert node(net, cat)["shape"] == (5 + 7 + 3 + 1, 32, 32)


def test_residual_identity_shortcut_scale_and_act():
    net = net_of("conv 1x1 8\nresidual(scale = 0.17):\n    conv 1x1 4 -> conv 3x3 in.c S act = off")
    add = node(net, "add_0")
    assert inputs(net.graph, "add_0") == ["conv_0", "conv_2"]  # shortcut first, then the branch
    assert add["attrs"] == {"scales": (1.0, 0.17), "act": "relu"} and add["shape"] == (8, 32, 32)
    net = net_of("residual(act = off):\n    conv 1x1 3")
    assert node(net, "add_0")["attrs"] == {"scales": (1.0, 1.0), "act": None}


def test_residual_with_projection_shortcut():
    net = net_of("residual as r:\n    shortcut: conv 1x1 16 /2 act = off\n    conv 3x3 16 /2 S")
    assert inputs(net.graph, "r/add_0") == ["r/shortcut/conv_0", "r/conv_0"]
    assert node(net, "r/add_0")["shape"] == (16, 16, 16)
    assert inputs(net.graph, "r/shortcut/conv_0") == ["input"] and inputs(net.graph, "r/conv_0") == ["input"]


def test_add_of_several_branches():
    net = net_of("add(act = relu):\n    branch: identity\n    branch: conv 1x1 3\n    branch: bn")
    assert inputs(net.graph, "add_0") == ["branch_0/identity_0", "branch_1/conv_0", "branch_2/bn_0"]
    assert node(net, "add_0")["attrs"] == {"scales": (1.0, 1.0, 1.0), "act": "relu"}
    assert node(net, "add_0")["shape"] == (3, 32, 32)


def test_nested_composites():
    net = net_of("concat:\n    branch:\n        concat:\n            branch: conv 1x1 2\n            branch: conv 1x1 3\n"
                 "    branch: conv 1x1 4")
    assert node(net, "concat_0")["shape"] == (9, 32, 32)
    assert inputs(net.graph, "concat_0") == ["branch_0/concat_0", "branch_1/conv_0"]


# --- blocks ----------------------------------------------------------------------------------

BLOCK = "block b(m, n = 2 * m, k = in.c):\n    conv 1x1 m -> conv 1x1 n -> conv 1x1 k\n"


def filters(net, scope):
    return [node(net, n)["attrs"]["filters"] for n in net.layers if n.startswith(scope + "/")]


def test_block_arguments_positional_keyword_and_defaults():
    net = net_of("b(3) as p\nb(3, 5) as q\nb(m = 1, k = 7) as r\nb(4, k = 9) as s", blocks=BLOCK)
    assert filters(net, "p") == [3, 6, 3]       # k defaults to the block input's depth
    assert filters(net, "q") == [3, 5, 3]
    assert filters(net, "r") == [1, 2, 7]
    assert filters(net, "s") == [4, 8, 9]
    assert net.graph.graph["instances"]["q"]["args"] == {"m": 3, "n": 5, "k": 3}


def test_in_inside_a_block_is_the_block_input():
    net = net_of("conv 3x3 8 /2 S\nb", blocks="block b:\n    conv 1x1 (in.c * 2) -> conv 1x1 (in.h + in.w)\n")
    assert filters(net, "b") == [16, 32]


def test_repeat_with_index_variable_and_group_names():
    net = net_of("repeat 3 as i: b(4 + i)\nrepeat 2 as j named tower:\n    conv 1x1 (j + 1)\n    b(1)\nrepeat 0: conv 1x1 99",
                 blocks="block b(n):\n    conv 1x1 n\n")
    assert net.layers == ["b.0/conv_0", "b.1/conv_0", "b.2/conv_0",
                          "tower.0/conv_0", "tower.0/b/conv_0", "tower.1/conv_0", "tower.1/b/conv_0"]
    assert [node(net, n)["attrs"]["filters"] for n in net.layers] == [4, 5, 6, 1, 1, 2, 1]
    assert [net.graph.graph["instances"][f"b.{i}"]["args"] for i in range(3)] == [{"n": 4}, {"n": 5}, {"n": 6}]


def test_nested_repeats_and_unlabelled_repeat_group():
    net = net_of("repeat 2 as i:\n    repeat 2 as j: conv 1x1 (1 + 10 * i + j)")
    assert net.layers == ["repeat.0/repeat.0/conv_0", "repeat.0/repeat.1/conv_0",
                          "repeat.1/repeat.0/conv_0", "repeat.1/repeat.1/conv_0"]
    assert [node(net, n)["attrs"]["filters"] for n in net.layers] == [1, 2, 11, 12]


# --- arithmetic ------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("7 // 2", 3), ("17 % 5", 2), ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("10 - 2 - 3", 5),
    ("int(9 / 2)", 4), ("int(7 / 2 * 2)", 7), ("max(3, 5)", 5), ("min(in.c, 2)", 2), ("abs(-4)", 4),
    ("round(2.6)", 3), ("ceil(2.1)", 3), ("floor(2.9)", 2), ("divisible(30, 8)", 32), ("divisible(20)", 24),
    ("int(float(5))", 5), ("in.h // 4 - in.w % 5", 6), ("-(-3)", 3), ("2 * -1 + 5", 3),
])
def test_arithmetic_in_layer_arguments(expr, value):
    net = net_of(f"conv 1x1 ({expr})")
    assert node(net, "conv_0")["attrs"]["filters"] == value


def test_true_division_gives_a_float_that_a_filter_count_rejects(load_error):
    err = load_error("network t:\n    input 3x8x8\n    conv 1x1 (64 / 2)\n")
    assert "`32.0`" in err.diagnostics[0].message and "`//`" in err.diagnostics[0].hint


# --- with ------------------------------------------------------------------------------------

def test_with_sets_defaults_explicit_arguments_win_and_nesting_overrides():
    net = net_of("with conv(bn = 0.001, act = relu6), pool(pad = S):\n"
                 "    conv 3x3 8 as a\n"
                 "    conv 3x3 8 act = tanh as b\n"
                 "    with conv(act = off):\n"
                 "        conv 1x1 4 as c\n"
                 "        blk as d\n"
                 "    conv 1x1 4 as e\n"
                 "    maxpool 3x3 /2 as p\n"
                 "    avgpool 3x3 as q\n"
                 "conv 1x1 4 as f", blocks="block blk:\n    conv 1x1 2\n")
    a = {n: node(net, n)["attrs"] for n in net.layers}
    assert (a["a"]["bn"], a["a"]["act"], a["a"]["bias"]) == (0.001, "relu6", False)
    assert a["b"]["act"] == "tanh"                       # explicit wins
    assert a["c"]["act"] is None and a["c"]["bn"] == 0.001  # inner with overrides act, keeps bn
    assert a["d/conv_0"]["act"] is None                  # defaults reach into called blocks
    assert a["e"]["act"] == "relu6"                      # back to the outer defaults
    assert a["p"]["pad"] == "S" and a["q"]["pad"] == "S"  # pool(...) sets both pools
    assert (a["f"]["bn"], a["f"]["act"], a["f"]["pad"]) == (None, "relu", "V")  # out of scope


def test_with_defaults_for_residual_and_avgpool():
    net = net_of("with residual(scale = 0.2), avgpool(count_pad = no):\n"
                 "    residual:\n        conv 1x1 3\n    avgpool 3x3 S")
    assert node(net, "add_0")["attrs"]["scales"] == (1.0, 0.2)
    assert node(net, "avgpool_0")["attrs"]["count_pad"] is False


# --- aux heads -------------------------------------------------------------------------------

def test_aux_heads_from_label_and_current_tensor():
    net = incdsl.load(SMALL)
    assert net.aux_heads == [{"name": "side", "weight": 0.3, "tap": "stem", "output": "side/linear_0"}]
    assert inputs(net.graph, "side/gap_0") == ["stem"]
    assert node(net, "side/linear_0")["aux"] == "side" and node(net, "side/linear_0")["shape"] == (10,)
    assert "side/linear_0" not in net.layers and net.output == "linear_0"
    net = net_of("conv 1x1 8 as a\naux h: gap -> flatten -> linear 2\nconv 1x1 4")
    assert net.aux_heads == [{"name": "h", "weight": 1.0, "tap": "a", "output": "h/linear_0"}]
    assert net.output == "conv_0" and inputs(net.graph, "conv_0") == ["a"]


def test_aux_head_taps_a_block_call_label_and_a_composite_label():
    net = net_of("b as one\nconcat as cat:\n    branch: identity\n    branch: identity\n"
                 "aux x(0.5) from one: flatten\naux y from cat: flatten",
                 blocks="block b:\n    conv 1x1 4 -> conv 1x1 5\n")
    heads = {h["name"]: h for h in net.aux_heads}
    assert heads["x"]["tap"] == "one/conv_1" and heads["x"]["weight"] == 0.5
    assert heads["y"]["tap"] == "cat/concat_0"
    assert node(net, heads["y"]["output"])["shape"] == (10 * 32 * 32,)


# --- includes --------------------------------------------------------------------------------

def test_include_is_relative_to_the_including_file(write_spec, tmp_path, monkeypatch):
    write_spec("lib/blocks.inc", 'include "more/deep.inc"\nblock a:\n    deep -> conv 1x1 4\n')
    write_spec("lib/more/deep.inc", "block deep:\n    conv 1x1 2\n")
    main = write_spec("nets/main.inc", 'include "../lib/blocks.inc"\nnetwork m:\n    input 3x8x8\n    a\n')
    monkeypatch.chdir(tmp_path / "lib")  # the working directory plays no part
    net = incdsl.load(main, include_path=[tmp_path / "lib"])  # `..` leaves nets/: lib/ must be on the include path
    assert net.layers == ["a/deep/conv_0", "a/conv_0"]
    assert node(net, "a/deep/conv_0")["span"].file.endswith("deep.inc")
    assert len(net.sources) == 3


def test_diamond_includes_are_read_once(write_spec):
    write_spec("common.inc", "block c:\n    conv 1x1 4\n")
    write_spec("left.inc", 'include "common.inc"\nblock l:\n    c\n')
    write_spec("right.inc", 'include "./common.inc"\nblock r:\n    c\n')
    main = write_spec("main.inc", 'include "left.inc"\ninclude "right.inc"\nnetwork m:\n    input 3x8x8\n    l -> r\n')
    net = incdsl.load(main)
    assert net.layers == ["l/c/conv_0", "r/c/conv_0"]
    assert sorted(p.rsplit("/", 1)[-1] for p in net.sources) == ["common.inc", "left.inc", "main.inc", "right.inc"]


def test_load_accepts_a_path_object_and_text_with_a_file_name(write_spec):
    path = write_spec("n.inc", "network n:\n    input 3x8x8\n    gap\n")
    assert incdsl.load(path).name == "n" and incdsl.load(str(path)).file == str(path)
    net = incdsl.load("network n:\n    input 3x8x8\n    gap\n", file="virtual.inc")
    assert node(net, "gap_0")["span"].file == "virtual.inc"


# --- warnings --------------------------------------------------------------------------------

def test_valid_padding_that_drops_rows_warns_at_the_layer():
    net = net_of("conv 3x3 8 /2\nconv 2x2 8 /2 S\nmaxpool 3x3 /2 ceil = yes")
    (w,) = net.warnings
    assert w.severity == "warning" and (w.span.line, w.span.col) == (3, 5)
    assert w.message == "valid padding drops 1 row(s) and 1 column(s) of the 32x32 input (output 15x15)"
    assert "S" in w.hint


def test_warning_inside_a_block_carries_the_chain_of_call_sites():
    net = net_of("conv 1x1 3\nb", header="network t:\n    input 3x33x32\n", blocks="block b:\n    conv 3x3 3 /2\n")
    (w,) = net.warnings
    assert (w.span.line, w.span.col) == (6, 5)
    assert w.notes == ("in block `b` instantiated at <spec>:4:5",)
    assert "0 row(s) and 1 column(s)" in w.message


def test_blocks_that_multiply_fail_fast_at_the_outer_call():
    """Each block calls the next twice: 2**30 layers. The bound read off the AST stops it at once."""
    import time
    lines = ["network x:", "    input 3x8x8", "    conv 1x1 4", "    b0"]
    for i in range(30):
        lines += [f"block b{i}:", f"    b{i + 1} -> b{i + 1}"]
    lines += ["block b30:", "    conv 1x1 4"]
    start = time.perf_counter()
    with pytest.raises(incdsl.IncdslError) as info:
        incdsl.load("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 5  # generous: it takes milliseconds; the old path took minutes
    diag = info.value.diagnostics[0]
    assert diag.message == "this network would have at least 1,073,741,826 layers; the limit is 100,000"
    assert diag.notes == ("block `b0` makes at least 1,073,741,824",)
    assert (diag.span.line, diag.span.col) == (4, 5)


def test_size_bound_counts_literal_repeats_but_not_parametric_ones():
    text = """network x(n = 3):
    input 3x8x8
    big
block big:
    repeat 2000: mid
block mid:
    repeat 600: conv 1x1 4
"""
    with pytest.raises(incdsl.IncdslError, match="at least 1,200,001 layers; the limit is 100,000"):
        incdsl.load(text)
    ok = text.replace("repeat 2000: mid", "repeat 3: mid")
    assert len(incdsl.load(ok).layers) == 1800
