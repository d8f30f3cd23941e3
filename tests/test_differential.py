"""Differential tests: incdsl's claims about generated networks, each against an oracle that
does not share incdsl's code.

    claim                                             oracle
    `check` accepts -> the compiled model runs,        torch runs it; forward hooks read every
      every node's shape is the IR's                   node's output
    `cost` parameters (all, and the trunk's)           numel of the model's parameters
    `cost` MACs                                        torch.utils.flop_counter (2 per MAC)
    `cost --convention NAME`                           the tool NAME itself (fvcore, thop, ...)
    activations per node, and `cost --batch --dtype`   numel and bytes of the node's output tensor
      activation memory
    every node's values (the language's meaning)       an evaluator written here from the README,
                                                       torch.nn.functional and the IR's attributes
    `--optimize train/infer` = level none              outputs, gradients, running statistics
    state dicts and `load_weights` across levels       outputs after the round trip
    a single window is accepted iff torch runs it      torch's own layer on that input

The oracles live in tests/oraclelib.py. The networks come from tests/specgen.py (many layer
kinds and join forms, odd sizes). The fast tests draw a few with Hypothesis; `-m slow` draws
many more.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.ir.graph import lint  # noqa: E402
from incdsl.report.conventions import per_node  # noqa: E402

from specgen import HypothesisPick, network  # noqa: E402
from oraclelib import (CHECKS, check_all, check_convention, check_levels_eval, check_levels_train,  # noqa: E402
                       check_state_dicts, same_pads)

FAST = settings(deadline=None, max_examples=6, suppress_health_check=list(HealthCheck))
FEW = settings(deadline=None, max_examples=3, suppress_health_check=list(HealthCheck))
SLOW = settings(deadline=None, max_examples=200, suppress_health_check=list(HealthCheck))


def generated(data, max_statements: int = 4) -> incdsl.Network:
    text = network(HypothesisPick(data), max_statements)
    net = incdsl.load(text)  # the generator writes only specs that should check
    lint(net.graph)
    return net


# --- the tests ------------------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_generated_networks_agree_with_torch(data):
    """Shapes, parameters, MACs, activation memory and every node's values."""
    net = generated(data)
    model = incdsl.to_torch(net, seed=0)
    for check in CHECKS.values():
        check(net, model)


@FEW
@given(data=st.data(), level=st.sampled_from(["train", "infer"]))
def test_generated_networks_at_each_optimize_level(data, level):
    net = generated(data)
    check_levels_eval(net, level)
    check_levels_train(net, level)


@FEW
@given(data=st.data(), level=st.sampled_from(["train", "infer"]))
def test_generated_networks_state_dicts_round_trip(data, level):
    check_state_dicts(generated(data), level)


@FEW
@given(data=st.data())
def test_generated_networks_conventions_agree_with_the_tools(data):
    net = generated(data)
    for name in ("thop", "ptflops", "torchinfo"):
        pytest.importorskip(name)
        check_convention(net, name)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_many_generated_networks(data):
    check_all(generated(data, max_statements=8), conventions=("fvcore", "thop", "ptflops", "ptflops-aten", "torchinfo"))


# --- a single window: accepted iff torch's own layer runs -------------------------------------------

def torch_window(op: str, x, k, s, d, pads, ceil: bool, count_pad: bool):
    """Torch's layer on x: pads (top, bottom, left, right) within the layer where they are
    symmetric (torch's own rule for pools: at most half the window), else with F.pad first."""
    t, b, l, r = pads
    if t == b and l == r:
        inner, x_padded = (t, l), x
    else:
        value = float("-inf") if op == "maxpool" else 0.0
        inner, x_padded = (0, 0), torch.nn.functional.pad(x, (l, r, t, b), value=value)
    if op == "conv":
        layer = torch.nn.Conv2d(x.shape[1], 3, k, s, inner, d)
    elif op == "maxpool":
        layer = torch.nn.MaxPool2d(k, s, inner, ceil_mode=ceil)
    else:
        layer = torch.nn.AvgPool2d(k, s, inner, ceil_mode=ceil, count_include_pad=count_pad)
    return layer(x_padded)


@st.composite
def windows(draw):
    op = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    k = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if op == "conv" else (1, 1)
    form = draw(st.sampled_from(["V", "S", "int", "pair"] + (["four"] if op == "conv" else [])))
    if form == "V":
        pads, text = (0, 0, 0, 0), " V"
    elif form == "S":
        pads = same_pads(h, k[0], s[0], d[0]) + same_pads(w, k[1], s[1], d[1])
        text = " S"
    elif form == "int":
        p = draw(st.integers(0, 4))
        pads, text = (p, p, p, p), f" pad = {p}"
    elif form == "pair":
        a, b = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        pads, text = (a, a, b, b), f" pad = ({a}, {b})"
    else:
        pads = tuple(draw(st.integers(0, 4)) for _ in range(4))
        text = " pad = ({}, {}, {}, {})".format(*pads)
    ceil = op != "conv" and form != "S" and draw(st.booleans())
    count_pad = draw(st.booleans())
    layer = f"{op} {k[0]}x{k[1]}" + (" 3" if op == "conv" else "") + text + f" stride = ({s[0]}, {s[1]})"
    if op == "conv":
        layer += f" dilation = ({d[0]}, {d[1]})"
    if ceil:
        layer += " ceil = yes"
    if op == "avgpool" and not count_pad:
        layer += " count_pad = no"
    return op, (2, h, w), k, s, d, pads, ceil, count_pad, layer


@settings(deadline=None, max_examples=150, suppress_health_check=list(HealthCheck))
@given(windows())
def test_a_window_checks_iff_torch_runs_it(case):
    op, shape, k, s, d, pads, ceil, count_pad, layer = case
    text = f"network w:\n    input {shape[0]}x{shape[1]}x{shape[2]}\n    {layer}\n"
    try:
        net = incdsl.load(text)
    except incdsl.IncdslError as exc:
        net, why = None, exc.diagnostics[0].message
    try:
        out = torch_window(op, torch.zeros(1, *shape), k, s, d, pads, ceil, count_pad)
        torch_shape = tuple(out.shape[1:]) if out.numel() else None
    except RuntimeError:
        torch_shape = None
    if net is None:
        assert torch_shape is None, (text, why, torch_shape)
    else:
        assert net.output_shape == torch_shape, text
        model = incdsl.to_torch(net, seed=0).eval()
        with torch.no_grad():
            assert tuple(model(torch.zeros(1, *shape)).shape[1:]) == torch_shape


# --- what the generated networks found (each once, as a plain regression test) ---------------------

def test_a_residual_around_squeeze_and_excitation_has_costs():
    """The residual's sum joins a path whose field is the whole image (the SE scales come from a
    global pool): `cost` crashed with an IndexError in the receptive-field pass."""
    net = incdsl.load("network se:\n    input 4x8x8\n    residual:\n        multiply:\n"
                      "            branch: identity\n"
                      "            branch: gap -> conv 1x1 2 -> conv 1x1 4 act = sigmoid\n"
                      "    conv 3x3 4 S\n")
    rows = incdsl.count_costs(net).by_name()
    assert rows["add_0"].rf == () and rows["conv_0"].rf == ()  # sees the whole image
    assert rows["branch_0/identity_0"].rf == (1, 1)


def test_a_pool_in_ceil_mode_overhanging_a_small_input_checks_as_torch_runs_it():
    """PyTorch's ceil rounding gives one output where the window overhangs the whole input
    by less than the stride; check refused it ('leaves no output')."""
    for layer, shape in (("maxpool 2x2 /2 ceil = yes", (3, 1, 1)), ("avgpool 3x3 /2 pad = 1 ceil = yes", (3, 1, 1)),
                         ("maxpool 3x2 /3 ceil = yes", (3, 1, 1))):
        net = incdsl.load(f"network p:\n    input 3x1x1\n    {layer}\n")
        assert net.output_shape == shape
        with torch.no_grad():
            assert tuple(incdsl.to_torch(net, seed=0).eval()(torch.randn(1, 3, 1, 1)).shape[1:]) == shape
    with pytest.raises(incdsl.IncdslError, match="leaves no output"):  # torch refuses these too
        incdsl.load("network p:\n    input 3x1x1\n    maxpool 2x2 ceil = yes\n")
    with pytest.raises(incdsl.IncdslError, match="leaves no output"):
        incdsl.load("network p:\n    input 3x1x2\n    maxpool 3x3 /2 ceil = yes\n")


UPSAMPLE = """network up(classes = 3):
    input 3x5x7
    conv 3x3 4 S
    upsample 2
    conv 1x1 4
    upsample to 9x11 mode = bilinear
    gap -> flatten -> linear classes
"""


def test_upsample_counts_in_each_convention():
    """fvcore, ptflops and thop count nn.Upsample (the convention tables left it out): per
    output element, fvcore 1 (nearest) or 4 (bilinear), ptflops 2 (its module hook and the
    patched F.interpolate), thop 1 or 11; the others nothing."""
    net = incdsl.load(UPSAMPLE)
    costs = incdsl.count_costs(net)
    nearest, bilinear = 4 * 10 * 14, 4 * 9 * 11  # the upsamples' output elements
    expect = {"fvcore": (nearest, 4 * bilinear), "ptflops": (2 * nearest, 2 * bilinear),
              "thop": (nearest, 11 * bilinear), "ptflops-aten": (0, 0), "torchinfo": (0, 0), "flop_counter": (0, 0),
              "incdsl": (0, 0)}
    for name, counts in expect.items():
        rows = per_node(net, costs, name)
        assert (rows["upsample_0"], rows["upsample_1"]) == counts, name


@pytest.mark.parametrize("name", ["fvcore", "ptflops", "thop", "torchinfo", "ptflops-aten", "flop_counter"])
def test_upsample_conventions_agree_with_the_tools(name):
    pytest.importorskip(name.split("-")[0] if name != "flop_counter" else "torch")
    check_convention(incdsl.load(UPSAMPLE), name)


def test_an_aux_head_made_twice_is_an_error():
    """A head's layers carry its name, and the compiled model's aux_paths, the drawing and the cost
    rows group by it: two heads of one name gave aux_paths ['unit', 'unit'] (the whole block), so
    `load_weights` of the network's own state dict failed ('ours has 2 auxiliary head(s), the
    reference 1'), the drawing showed one head and `cost --by block` one row."""
    head = "    aux inner(weight = 0.2): gap -> flatten -> linear 5\n"
    repeated = ("network a(classes = 5):\n    input 3x8x8\n    repeat 2: unit\n    gap -> flatten -> linear classes\n"
                "block unit:\n    conv 3x3 6 S\n" + head)
    with pytest.raises(incdsl.IncdslError, match="aux head `inner` is made more than once") as info:
        incdsl.load(repeated)
    assert "in block `unit` instantiated at" in info.value.render()
    twice = ("network a(classes = 5):\n    input 3x8x8\n    one\n    two\n    gap -> flatten -> linear classes\n"
             "block one:\n    conv 3x3 6 S\n" + head + "block two:\n    conv 3x3 6 S\n" + head)
    with pytest.raises(incdsl.IncdslError, match="aux head `inner` is defined twice") as info:
        incdsl.load(twice)
    assert "first defined here" in info.value.render()
    once = incdsl.load(repeated.replace("repeat 2: unit", "unit"))  # a block made once keeps its head
    model = incdsl.to_torch(once, seed=0)
    assert model.aux_paths == ["unit.inner"]
    check_state_dicts(once, "train")
