"""The graph IR: a `networkx.DiGraph`, one node per layer.

Node names are scope paths, unique and stable: ``inception_a.2/branch_3/conv_1``. A
``/`` separates scopes; ``.N`` is the N-th instance of a repeat. Every consumer (cost rows,
diagrams, module names, state_dict keys) groups by these paths.

Every node carries (read them through `node(graph, name)`, a typed `Node`):

    op      the node kind: a key of the op table (`incdsl/ops/`), the closed set of kinds
    attrs   the op's attributes (`Op.attribute_names`; their meaning is documented with the
            op's signature in its `ops/` module), plain data, normalised (tuples, ints,
            floats, strings)
    shape   the inferred output shape, (c, h, w) or (n,)
    span    the `Span` of the source it came from
    scope   the parent scope path ("" at top level)
    block   name of the innermost block definition it was instantiated from, or None
    aux     name of the auxiliary head it belongs to, or None

Edges carry ``index``: the position of the source among the target's inputs (concat order).

Graph attributes: ``name``, ``input`` and ``output`` (node names), ``aux`` (list of
``{"name", "weight", "tap", "output"}``), ``params`` (the network's parameters after
overrides), ``instances`` (block instance scope path -> ``{"block", "args", "span"}``).

`lint(graph)` checks the invariants and raises `IRError`; `problems(graph)` lists them.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import networkx as nx

from ..diagnostics import Span
from ..ops.base import Op
from ..ops.table import OPS

NODE_KINDS = tuple(OPS)  # the closed set of kinds: the op table's


class IRError(AssertionError):
    """The IR breaks an invariant: a bug in whatever built it, never the user's fault."""


class Node(NamedTuple):
    """One node of the IR, typed: what consumers read instead of the raw networkx dict.
    (A named tuple: consumers make one per node per pass, so it must be cheap.)"""
    name: str
    op: str
    attrs: Mapping[str, Any]
    shape: tuple
    span: Span | None
    scope: str
    block: str | None
    aux: str | None

    @property
    def kind(self) -> Op:
        """The op record of this node's kind."""
        return OPS[self.op]


def node(graph: nx.DiGraph, name: str) -> Node:
    """The typed view of one node."""
    d = graph.nodes[name]
    return Node(name, d["op"], d["attrs"], d["shape"], d["span"], d["scope"], d["block"], d["aux"])


def kind(graph: nx.DiGraph, name: str) -> Op:
    """The op record of a node's kind."""
    return OPS[graph.nodes[name]["op"]]


def format_shape(shape) -> str:
    """``(384, 35, 35)`` -> ``"384x35x35"``."""
    return "x".join(str(v) for v in shape)


def inputs(graph: nx.DiGraph, name: str) -> list[str]:
    """The node's inputs in order (edge index)."""
    return [u for u, _, _ in sorted(graph.in_edges(name, data="index"), key=lambda e: e[2])]


def trunk_nodes(graph: nx.DiGraph) -> list[str]:
    """Nodes of the inference graph (auxiliary heads excluded), in topological order."""
    return [n for n in topo_order(graph) if graph.nodes[n]["aux"] is None]


def topo_order(graph: nx.DiGraph) -> list[str]:
    """A deterministic topological order: the order nodes were created (which is one)."""
    return list(graph.nodes)


def problems(graph: nx.DiGraph) -> list[str]:
    """The IR's broken invariants, one line each (empty when sound)."""
    found = []
    if not nx.is_directed_acyclic_graph(graph):
        found.append("graph has a cycle")
    order = {n: i for i, n in enumerate(graph.nodes)}
    heads = {h["name"] for h in graph.graph.get("aux", [])}
    for name, data in graph.nodes(data=True):
        missing = [k for k in ("op", "attrs", "shape", "span", "scope", "block", "aux") if k not in data]
        if missing:
            found.append(f"{name}: missing {', '.join(missing)}")
            continue
        if data["op"] not in OPS:
            found.append(f"{name}: unknown op {data['op']!r}")
            continue
        found += [f"{name}: {p}" for p in _node_problems(graph, node(graph, name), order, heads)]
    return found


def _node_problems(graph: nx.DiGraph, n: Node, order: dict, heads: set) -> list[str]:
    out = []
    if set(n.attrs) != set(n.kind.attribute_names):
        out.append(f"{n.op} attributes {sorted(n.attrs)}, expected {sorted(n.kind.attribute_names)}")
    if not (isinstance(n.shape, tuple) and n.shape and all(isinstance(v, int) and v > 0 for v in n.shape)):
        out.append(f"shape {n.shape!r} is not a tuple of positive integers")
    idx = sorted(i for _, _, i in graph.in_edges(n.name, data="index"))
    if idx != list(range(len(idx))):
        out.append(f"input indices {idx} are not 0..n-1")
    expected = n.kind.arity
    if expected is not None and len(idx) != expected:
        out.append(f"{n.op} has {len(idx)} inputs, not {expected}")
    if expected is None and not idx:
        out.append(f"{n.op} has no inputs")
    if any(order[u] > order[n.name] for u in graph.predecessors(n.name)):
        out.append("created before one of its inputs")
    if n.name.split("/")[:-1] != (n.scope.split("/") if n.scope else []):
        out.append(f"name does not start with its scope {n.scope!r}")
    if n.aux is not None and n.aux not in heads:
        out.append(f"belongs to an unknown auxiliary head {n.aux!r}")
    return out


def lint(graph: nx.DiGraph) -> None:
    """Check the IR's invariants.

    Raises:
        IRError: listing every broken invariant.
    """
    found = problems(graph)
    if found:
        raise IRError("the IR is unsound:\n  " + "\n  ".join(found))


def _format_attr(value) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_format_attr(v) for v in value) + ")"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_graph(graph: nx.DiGraph) -> str:
    """A stable text form of the IR for tests and bug reports, one node a line."""
    lines = [f"network {graph.graph['name']}"]
    for name, node in graph.nodes(data=True):
        args = " ".join(f"{k}={_format_attr(v)}" for k, v in sorted(node["attrs"].items()))
        ins = ", ".join(inputs(graph, name))
        aux = f" [aux {node['aux']}]" if node["aux"] else ""
        lines.append(f"{name} = {node['op']}({ins}) {args} -> {format_shape(node['shape'])}{aux}".replace("  ", " "))
    return "\n".join(lines)
