"""Lowering writes to a sink: the IR graph by default, a running cost in search (ir/lower.py, search/fastcost.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import incdsl
from incdsl.io import Includes
from incdsl.ir.lower import GraphSink, Lowerer, load_program
from incdsl.passes.cost import count_costs
from incdsl.search.fastcost import CostSink

SPECS = Path(__file__).resolve().parent.parent / "specs"


def lower_into(path: Path, sink):
    text = path.read_text()
    program = load_program(text, str(path), Includes.for_spec(str(path), None))
    return Lowerer(program, sink=sink).lower_network(program.network, {}, None)


class Recording(GraphSink):
    def __init__(self):
        super().__init__()
        self.added = []

    def add(self, name, data, ins, cost=None):
        self.added.append(name)
        super().add(name, data, ins, cost)


@pytest.mark.parametrize("spec", ["inception_v3.inc", "inception_resnet_v2.inc"])
def test_every_node_reaches_the_sink_once_and_the_graph_is_the_default(spec):
    sink = Recording()
    graph = lower_into(SPECS / spec, sink)
    assert graph is sink.g
    assert sorted(sink.added) == sorted(graph.nodes) and len(set(sink.added)) == len(sink.added)
    assert set(graph.nodes) == set(incdsl.load(SPECS / spec).graph.nodes)


@pytest.mark.parametrize("spec", ["inception_v3.inc", "inception_resnet_v2.inc", "googlenet.inc"])
def test_cost_sink_adds_up_the_trunk_as_the_cost_pass_does(spec):
    sink = lower_into(SPECS / spec, CostSink())
    total = count_costs(incdsl.load(SPECS / spec)).total
    assert (sink.params, sink.macs) == (total.params, total.macs)
    assert len(sink) == len(incdsl.load(SPECS / spec).graph)
