"""The IR's typed view and its invariants: `lint` raises on every kind of broken graph."""
from __future__ import annotations

import pytest

import incdsl
from incdsl.cli import main
from incdsl.ir.graph import IRError, NODE_KINDS, lint, node, problems
from incdsl.ops.table import OPS

SPEC = """network t:
    input 3x16x16
    conv 3x3 8 S as c
    concat:
        branch: conv 1x1 4
        branch: maxpool 3x3 S
    gap -> flatten -> linear 10
"""


@pytest.fixture
def graph():
    return incdsl.load(SPEC).graph.copy()


def test_node_kinds_are_the_tables():
    assert set(NODE_KINDS) == set(OPS)


def test_typed_view(graph):
    c = node(graph, "c")
    assert (c.op, c.kind.name, c.attrs["filters"], c.shape, c.scope) == ("conv", "conv", 8, (8, 16, 16), "")


def test_a_sound_graph_passes(graph):
    assert problems(graph) == []
    lint(graph)


@pytest.mark.parametrize("breakage, message", [
    (lambda g: g.nodes["c"].update(op="deconv"), "unknown op 'deconv'"),
    (lambda g: g.nodes["c"]["attrs"].pop("groups"), "conv attributes"),
    (lambda g: g.nodes["c"].update(shape=(8, 0, 16)), "not a tuple of positive integers"),
    (lambda g: g.add_edge("input", "c", index=1), "input indices"),
    (lambda g: g.nodes["c"].update(aux="nowhere"), "unknown auxiliary head"),
    (lambda g: g.add_edge("linear_0", "c", index=1), "cycle"),
])
def test_lint_raises_on_a_broken_invariant(graph, breakage, message):
    breakage(graph)
    with pytest.raises(IRError, match=message):
        lint(graph)


def test_debug_flag_lints_the_ir(write_spec, monkeypatch, capsys):
    import incdsl.ir.network as network
    path = str(write_spec("t.inc", SPEC))
    calls = []
    monkeypatch.setattr(network, "lint", lambda g: calls.append(g))
    assert main(["check", path]) == 0
    assert calls == []  # the conftest's own linting goes through load(debug=True), not the CLI
    assert main(["--debug", "check", path]) == 0
    assert len(calls) == 1
