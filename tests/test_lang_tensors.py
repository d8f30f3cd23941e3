"""Named tensors: `take NAME`, `branch from NAME:`, `in`, channel ranges (`channels A:B`),
spatial zero-padding (`zeropad`) and `concat(pad = yes):`."""
import pytest

import incdsl
from incdsl.ir.graph import inputs

from speclib import failure, load




def shape(net, name):
    return net.graph.nodes[name]["shape"]


HEAD = "network t:\n    input 3x16x16\n"

RIR = """\
block rir_unit(c):
    take in -> channels 0:c as r
    take in -> channels c:(2 * c) as t
    concat:
        branch:
            add(act = relu):
                branch from r: conv 3x3 c S act = off
                branch from t: conv 3x3 c S act = off
                branch from r: identity
        branch:
            add(act = relu):
                branch from t: conv 3x3 c S act = off
                branch from r: conv 3x3 c S act = off
network rir(c = 4):
    input 3x16x16
    conv 3x3 (2 * c) S
    repeat 2: rir_unit(c)
"""


# --- take, branch from, in -----------------------------------------------------------------

def test_take_makes_an_earlier_tensor_current():
    net = load(HEAD + "    conv 1x1 8 as a\n    conv 1x1 4 as b\n    concat:\n        branch: identity\n"
               "        branch:\n            take a -> conv 1x1 2\n")
    concat = net.graph.graph["output"]
    assert [shape(net, n) for n in inputs(net.graph, concat)] == [(4, 16, 16), (2, 16, 16)]
    conv = inputs(net.graph, concat)[1]
    assert inputs(net.graph, conv) == ["a"]


def test_branch_from_reads_a_labelled_tensor_and_in_reads_the_block_input():
    net = load("block b:\n    conv 1x1 8 as x\n    conv 3x3 8 S\n    concat:\n        branch: identity\n"
               "        branch from x: identity\n        branch from in: identity\n" + HEAD + "    b\n")
    concat = net.graph.graph["output"]
    sources = [inputs(net.graph, i)[0] for i in inputs(net.graph, concat)]
    assert sources == ["b/conv_0", "b/x", "input"]
    assert net.output_shape == (19, 16, 16)


def test_resnet_in_resnet_carries_two_streams_in_one_block():
    net = load(RIR)
    assert net.output_shape == (8, 16, 16)
    unit = "rir_unit.0"
    assert shape(net, f"{unit}/r") == (4, 16, 16) and shape(net, f"{unit}/t") == (4, 16, 16)
    convs = [n for n in net.layers if n.startswith(unit) and net.graph.nodes[n]["op"] == "conv"]
    assert len(convs) == 4
    # the residual stream's sum reads r (conv), t (conv) and r itself (the identity shortcut)
    add_r = f"{unit}/branch_0/add_0"
    assert [inputs(net.graph, i)[0] for i in inputs(net.graph, add_r)] == [f"{unit}/r", f"{unit}/t", f"{unit}/r"]


def test_rir_compiles_and_agrees_with_its_streams_written_by_hand():
    torch = pytest.importorskip("torch")
    net = load(RIR)
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(2, 3, 16, 16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    stem, units = convs[0], [convs[1:5], convs[5:9]]
    with torch.no_grad():
        y = model(x)
        h = stem(x)  # the stem's activation (relu by default) is in the compiled module: recompute it
        h = [m for m in model.modules() if m.__class__.__name__ == "ConvBnAct"][0](x)
        for rr, tr, rt, tt in units:
            r, t = h[:, :4], h[:, 4:]
            r2 = torch.relu(rr(r) + tr(t) + r)
            t2 = torch.relu(rt(t) + tt(r))
            h = torch.cat([r2, t2], 1)
    assert torch.allclose(y, h, atol=1e-5)


def test_labels_are_seen_from_enclosing_scopes_only():
    err = failure(HEAD + "    concat:\n        branch: conv 1x1 4 as inner\n        branch: identity\n    take inner\n")
    d = err.diagnostics[0]
    assert d.message == "no tensor labelled `inner` is visible here" and (d.span.line, d.span.col) == (6, 10)
    assert "whose scope ends before this point" in d.notes[0]


def test_labels_do_not_cross_block_boundaries():
    err = failure("block b:\n    take stem -> conv 1x1 4\n" + HEAD + "    conv 1x1 4 as stem\n    b\n")
    assert err.diagnostics[0].message == "no tensor labelled `stem` is visible here"


def test_an_unknown_label_suggests_a_close_one():
    err = failure(HEAD + "    conv 1x1 4 as stem\n    conv 1x1 4\n    take stme\n")
    assert "did you mean `stem`" in err.diagnostics[0].hint


def test_a_tensor_left_behind_is_an_error():
    err = failure(HEAD + "    conv 1x1 4 as a\n    conv 1x1 8\n    take a -> conv 1x1 2\n")
    d = err.diagnostics[0]
    assert d.message == "the tensor of `conv_0` is computed but never used" and d.span.line == 4


def test_take_needs_one_label():
    assert "`take` reads one labelled tensor" in str(failure(HEAD + "    take 3\n"))
    assert "`take` reads one labelled tensor" in str(failure(HEAD + "    conv 1x1 4 as a\n    take a a\n"))


def test_a_join_given_a_tensor_in_parentheses_suggests_branch_from():
    err = failure(HEAD + "    conv 1x1 4 as x\n    concat(x):\n        branch: conv 1x1 4\n")
    d = err.diagnostics[0]
    assert d.message == "`concat` takes its tensors from its branches, not in parentheses"
    assert "`branch from x:`" in d.hint


def test_take_cannot_name_a_block():
    assert "built-in name" in str(failure("block take: conv 1x1 4\n" + HEAD + "    take\n"))


# --- channel ranges ------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("channels 0:1", (1, 16, 16)), ("channels 1:3", (2, 16, 16)), ("conv 1x1 8 -> channels 2:(in.c + 5)", (6, 16, 16)),
])
def test_channels_keep_a_range(line, expected):
    assert load(HEAD + f"    {line}\n").output_shape == expected


@pytest.mark.parametrize("line, message", [
    ("channels 0:4", "`channels 0:4` reaches past the 3x16x16 input's 3 channels"),
    ("channels 2:2", "expected a range whose start is below its stop, found `2:2`"),
    ("channels 2", "`channels` does not take `2` here"),
    ("gap -> flatten -> channels 0:1", "`channels` needs a CxHxW input"),
])
def test_channel_range_errors(line, message):
    assert message in str(failure(HEAD + f"    {line}\n"))


def test_channels_compile_to_a_crop():
    torch = pytest.importorskip("torch")
    net = load("network t:\n    input 6x4x4\n    channels 1:4\n")
    x = torch.randn(2, 6, 4, 4)
    assert torch.equal(incdsl.to_torch(net)(x), x[:, 1:4])


# --- zero-padding and concat(pad = yes) ------------------------------------------------------

NAS = """\
network nas:
    input 3x16x16
    conv 3x3 6 S as a
    conv 3x3 6 /2 V as b
    concat(pad = yes):
        branch from a: identity
        branch from b: identity
        branch: maxpool 2x2 /2 -> conv 1x1 2
"""


def test_concat_pad_brings_smaller_branches_to_the_largest():
    net = load(NAS)
    assert net.output_shape == (14, 16, 16)
    pads = {n: net.graph.nodes[n]["attrs"]["pad"] for n in net.layers if net.graph.nodes[n]["op"] == "zeropad"}
    assert pads == {"branch_1/zeropad_0": (4, 5, 4, 5), "branch_2/zeropad_0": (6, 7, 6, 7)}


def test_concat_pad_agrees_with_torch_written_by_hand():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    model = incdsl.to_torch(load(NAS), seed=0).eval()
    convs = [m for m in model.modules() if m.__class__.__name__ == "ConvBnAct"]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = convs[0](x)
        b = convs[1](a)
        c = convs[2](F.max_pool2d(b, 2, 2))
        ref = torch.cat([a, F.pad(b, (4, 5, 4, 5)), F.pad(c, (6, 7, 6, 7))], 1)
        assert torch.allclose(model(x), ref, atol=1e-6)


def test_without_pad_the_sizes_must_agree():
    assert "concat branches disagree in spatial size" in str(failure(NAS.replace("concat(pad = yes):", "concat:")))


@pytest.mark.parametrize("line, expected", [("zeropad(1, 0, 2, 1)", (3, 17, 19)), ("zeropad bottom = 2", (3, 18, 16))])
def test_zeropad(line, expected):
    assert load(HEAD + f"    {line}\n").output_shape == expected


# --- one tensor read twice (the IR keeps one edge per pair of nodes) ---------------------------

@pytest.mark.parametrize("kind", ["concat", "add", "mean", "max", "multiply"])
def test_a_join_given_one_tensor_twice_is_an_error_at_the_second_branch(kind):
    error = failure("network n:\n    input 3x8x8\n    conv 3x3 6 S as u\n"
                    f"    {kind}:\n        branch: take u\n        branch: conv 1x1 6\n        branch: take u\n")
    assert "the same tensor as branch 1" in str(error) and error.span.line == 7
    assert "identity" in error.diagnostics[0].hint


def test_one_tensor_twice_through_identity_is_read_twice():
    net = load("network n:\n    input 3x8x8\n    conv 3x3 6 S as u\n"
               "    concat:\n        branch: take u\n        branch: take u -> identity\n")
    assert net.output_shape == (12, 8, 8)
    join = [n for n in net.layers if net.graph.nodes[n]["op"] == "concat"][0]
    assert len(inputs(net.graph, join)) == 2


def test_a_residual_whose_branch_is_its_input_is_an_error():
    error = failure("network n:\n    input 3x8x8\n    conv 3x3 6 S\n    residual:\n        take in\n")
    assert "reads one tensor twice" in str(error) or "read one tensor twice" in str(error)


def test_a_flat_join_merging_one_tensor_twice_is_an_error():
    error = failure("network n:\n    input 3x8x8\n    conv 3x3 6 S as u\n    mean(flat = yes):\n"
                    "        branch: take u\n        branch:\n            mean:\n"
                    "                branch: take u\n                branch: conv 1x1 6\n")
    assert "same tensor" in str(error)
