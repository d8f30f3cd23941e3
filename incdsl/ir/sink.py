"""Where lowering puts the layers it makes: a sink (the IR graph by default).

`search/fastcost.py` passes a sink that only adds up the cost, and a memo that lets
lowering skip layers and block instances it has seen before; naming and every check stay
in `lower.py`.
"""
from __future__ import annotations

import networkx as nx

from ..diagnostics import Span


def node_data(op: str, attrs: dict, shape: tuple, span: Span, scope: str, block, aux) -> dict:
    """The attributes of one IR node (STYLE.md, "IR")."""
    return {"op": op, "attrs": attrs, "shape": shape, "span": span, "scope": scope, "block": block, "aux": aux}


class GraphSink:
    """Where lowering puts the layers it makes, by default: the IR graph, edges and all.

    A sink has `add(name, data, ins, cost=None)` (a node, its attributes from `node_data`, the
    nodes it reads in order; `cost`, where known, is for sinks that count), `node(name)` (the
    attributes), `remove(name)` (a node that nothing reads, and that costs nothing: a join
    merged into a flat one), `len()` (nodes so far), `graph` (graph-level attributes) and `result()` (what
    `lower_network` returns); a sink that keeps edges also has `names()` and `used(name)`.
    `search/fastcost.py` has one that only adds up the cost.
    """

    def __init__(self):
        self.g = nx.DiGraph()
        self.graph = self.g.graph

    def add(self, name: str, data: dict, ins, cost=None) -> None:
        self.g.add_node(name, **data)
        for i, src in enumerate(ins):
            self.g.add_edge(src, name, index=i)

    def node(self, name: str) -> dict:
        return self.g.nodes[name]

    def names(self):
        """Every node, in the order made."""
        return iter(self.g)

    def used(self, name: str) -> bool:
        """Whether a node is read by another."""
        return self.g.out_degree(name) > 0

    def remove(self, name: str) -> None:
        """Forget a node that nothing reads (a join merged into a flat one, `lower.merge_flat`)."""
        self.g.remove_node(name)

    def __len__(self) -> int:
        return len(self.g)

    def result(self) -> nx.DiGraph:
        return self.g



class Memo:
    """What lowering may skip: layers and block instances already lowered (and checked) once.

    Lowering asks `layer_key(el, in_shape, ctx)` (and `block_key(d, in_shape, ctx)` for a block
    instance); None means "lower it in full, remember nothing". With a key, `layer(key)` gives
    a remembered layer as (element, op, attrs, shape, cost) or None, `block(key)` a remembered
    instance as (definition, output shape, cost) or None; the first item is the AST object the
    entry was made for (a key holds ids, valid only while the object lives). `cost` is passed
    to the sink as given. What was lowered in full is handed back with `keep_layer(key, el,
    data, since)` / `keep_block(key, d, shape, since)`, `since` being what `tally()` said before.
    This default remembers nothing; `search/fastcost.py` has one that does.
    """

    def layer_key(self, el, in_shape: tuple, ctx):
        return None

    def block_key(self, d, in_shape: tuple, ctx):
        return None
