"""Every op of the table, end to end: its example is checked, costed, drawn and compiled, and
the compiled module agrees with the cost pass (parameters, MACs by torch's flop counter),
with the IR (output shape) and with the receptive field (a gradient probe).

An op whose record lacks a piece (no example, no torch constructor, a cost that torch
disagrees with) fails here rather than in a user's command.
"""
from __future__ import annotations

import pytest

import incdsl
from incdsl.cli import main
from incdsl.ir.graph import lint
from incdsl.ops.activation import ACTIVATIONS
from incdsl.ops.table import ALIASES, LAYER_OPS, OPS
from incdsl.render.graphviz import build_dot
from incdsl.render.labels import layer_label
from incdsl.render.style import DrawOptions

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

INPUT = (4, 15, 15)
KINDS = sorted(name for name, op in OPS.items() if op.arity != 0)  # `input` is in every spec


def spec_of(name: str) -> str:
    body = "\n".join("    " + line for line in OPS[name].example)
    return f"network one_{name}:\n    input {'x'.join(map(str, INPUT))}\n{body}\n"


@pytest.fixture(scope="module", params=KINDS)
def built(request):
    """(op name, network, costs, compiled module) of one op's example."""
    name = request.param
    assert OPS[name].example, f"`{name}` has no example statement"
    assert OPS[name].torch is not None, f"`{name}` compiles to no module"
    net = incdsl.load(spec_of(name))
    lint(net.graph)
    assert any(net.graph.nodes[n]["op"] == name for n in net.graph), f"the example of `{name}` does not use it"
    model = incdsl.to_torch(net, seed=0).eval()
    return name, net, incdsl.count_costs(net), model


def test_parameters_match_torch(built):
    _, _, costs, model = built
    assert sum(p.numel() for p in model.parameters()) == costs.total.params


def test_macs_match_torch_flop_counter(built):
    _, net, costs, model = built
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, *net.input_shape))
    assert counter.get_total_flops() == 2 * costs.total.macs


def test_output_shape_matches_ir(built):
    _, net, _, model = built
    with torch.no_grad():
        out = model(torch.randn(2, *net.input_shape))
    assert tuple(out.shape[1:]) == net.output_shape


def test_receptive_field_matches_gradient_probe(built):
    """The input window that moves one output pixel: the union, over a batch of random inputs,
    of where the gradient is nonzero (max pooling and ReLU pass gradient to part of it per input)."""
    _, net, costs, model = built
    rf = costs.by_name()[net.output].rf
    if not rf:
        pytest.skip("a flat or global output has no receptive field")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, *net.input_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = model.double()(x)
    i, j = y.shape[2] // 2, y.shape[3] // 2
    weights = torch.randn(y.shape[1], generator=gen, dtype=torch.float64)  # softmax sums to 1 over channels
    (y[:, :, i, j] * weights).sum().backward()
    touched = (x.grad != 0).any(dim=0).any(dim=0)
    rows = touched.any(dim=1).nonzero().flatten()
    cols = touched.any(dim=0).nonzero().flatten()
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == rf


def test_drawn_at_every_level(built):
    name, net, _, _ = built
    layer = build_dot(net, DrawOptions(level="layer"))
    for n, data in net.graph.nodes(data=True):
        if data["op"] == name:
            assert layer_label(name, data["attrs"]) in layer
    assert build_dot(net, DrawOptions(level="network")).startswith("digraph")


def test_commands_accept_it(built, write_spec, capsys):
    name = built[0]
    path = str(write_spec(f"{name}.inc", spec_of(name)))
    for argv in (["check", path], ["cost", path, "--by", "layer"], ["draw", path, "--format", "dot"], ["compile", path]):
        assert main(argv) == 0, argv
    assert name in capsys.readouterr().out


def test_every_layer_name_is_an_op_or_alias_of_one():
    for name in LAYER_OPS:
        assert name in OPS or ALIASES[name][0] in OPS


def test_upsample_by_factor_and_to_size():
    net = incdsl.load("network u:\n    input 3x8x8\n    upsample 2\n    upsample to 5x7 mode = bilinear\n")
    assert [net.graph.nodes[n]["shape"] for n in net.layers] == [(3, 16, 16), (3, 5, 7)]


@pytest.mark.parametrize("line, message", [
    ("upsample", "`upsample` needs a factor"),
    ("upsample 2 to 4x4", "not both"),
    ("upsample to 2", "`upsample to` needs a size"),
    ("upsample 2 mode = cubic", "unknown name `cubic`"),
    ("flatten -> upsample 2", "needs a CxHxW input"),
])
def test_upsample_errors(load_error, line, message):
    assert message in load_error(f"network u:\n    input 3x8x8\n    {line}\n").render()


def test_prelu_has_one_slope_per_channel():
    net = incdsl.load("network p:\n    input 3x8x8\n    conv 1x1 6 act = off -> prelu\n")
    costs = incdsl.count_costs(net).by_name()
    assert costs["prelu_0"].params == 6


@pytest.mark.parametrize("fn", sorted(ACTIVATIONS))
def test_compiled_layers_receive_every_activation_as_its_module(fn):
    """The op table is the only activation table: conv, add and linear compile with the
    module's constructor (in place where torch's module takes `inplace`, as their input is
    their own fresh output), the `act` layer without, and `reset_classifier` copies the
    classifier's activation into the new classifier."""
    import inspect

    record = ACTIVATIONS[fn]
    cls = getattr(torch.nn, record.module.removeprefix("nn."))
    assert record.takes_inplace == ("inplace" in inspect.signature(cls).parameters)
    net = incdsl.load(f"network a:\n    input 4x6x6\n    conv 3x3 4 S act = {fn} as c\n"
                      f"    add({fn}) as s:\n        branch: identity\n        branch: conv 1x1 4 act = off\n"
                      f"    act {fn} as alone\n    gap -> flatten -> linear 3 act = {fn} as fc\n")
    model = incdsl.to_torch(net, seed=0)
    fused = [model.get_submodule(p).act for p in ("c", "s.add_0", "fc")]
    assert all(type(m) is cls and getattr(m, "inplace", False) == record.takes_inplace for m in fused), fused
    alone = model.get_submodule("alone")
    assert type(alone) is cls and not getattr(alone, "inplace", False)
    model(torch.randn(2, 4, 6, 6)).sum().backward()  # an unsafe in-place activation fails autograd here
    model.reset_classifier(0)
    model.reset_classifier(5)
    new = model.get_submodule("fc")
    assert type(new.act) is cls and new.act is not model.classifiers[0][3] and new.out_features == 5
