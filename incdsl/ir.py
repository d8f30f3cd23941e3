"""The graph IR: a `networkx.DiGraph`, one node per layer.

Node names are scope paths, unique and stable: ``inception_a.2/branch_3/conv_1``. A
``/`` separates scopes; ``.N`` is the N-th instance of a repeat. Every consumer (cost rows,
diagrams, module names, state_dict keys) groups by these paths.

Every node carries:

    op      the node kind (table below)
    attrs   plain data, normalised (tuples, ints, floats, strings)
    shape   the inferred output shape, (c, h, w) or (n,)
    span    the `Span` of the source it came from
    scope   the parent scope path ("" at top level)
    block   name of the innermost block definition it was instantiated from, or None
    aux     name of the auxiliary head it belongs to, or None

Edges carry ``index``: the position of the source among the target's inputs (concat order).

Graph attributes: ``name``, ``input`` and ``output`` (node names), ``aux`` (list of
``{"name", "weight", "tap", "output"}``), ``params`` (the network's parameters after
overrides), ``instances`` (block instance scope path -> ``{"block", "args", "span"}``).

====== ======================================================================================
op     attrs
====== ======================================================================================
input  shape: (c, h, w)
conv   filters, kernel (kh, kw), stride (sh, sw), pad "V" | "S" | (top, bottom, left, right),
       dilation (dh, dw), groups, bias (bool), bn (eps, or None for no batch norm),
       act (activation name, or None); conv -> batch norm -> activation, one node
maxpool kernel, stride, pad, ceil (bool)
avgpool kernel, stride, pad, ceil, count_pad (bool: padded zeros count in the divisor)
gap    (none) global average pool to c x 1 x 1
lrn    size, alpha, beta, k (local response normalisation across channels)
bn     eps (batch norm on its own)
act    fn: relu | relu6 | gelu | silu | sigmoid | tanh | elu | leaky_relu
dropout p
flatten (none)
linear units, bias (bool), act (or None)
softmax (none)
identity (none)
concat (none) inputs joined along channels, in edge-index order
add    scales (one float per input), act (or None): act(sum(scale_i * input_i))
====== ======================================================================================
"""
from __future__ import annotations

import networkx as nx

from .ops.table import OPS

NODE_KINDS = tuple(OPS)  # the closed set of kinds: the op table's


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


def lint(graph: nx.DiGraph) -> list[str]:
    """Check the IR's invariants; returns a list of problems (empty when sound)."""
    problems = []
    if not nx.is_directed_acyclic_graph(graph):
        problems.append("graph has a cycle")
    order = {n: i for i, n in enumerate(graph.nodes)}
    for name, node in graph.nodes(data=True):
        if node.get("op") not in NODE_KINDS:
            problems.append(f"{name}: unknown op {node.get('op')!r}")
            continue
        for key in ("attrs", "shape", "span", "scope", "aux"):
            if key not in node:
                problems.append(f"{name}: missing {key}")
        idx = sorted(i for _, _, i in graph.in_edges(name, data="index"))
        if idx != list(range(len(idx))):
            problems.append(f"{name}: input indices {idx} are not 0..n-1")
        arity = len(idx)
        expected = OPS[node["op"]].arity
        if expected is not None and arity != expected:
            problems.append(f"{name}: {node['op']} has {arity} inputs, not {expected}")
        if expected is None and arity < 1:
            problems.append(f"{name}: {node['op']} has no inputs")
        if any(order[u] > order[name] for u in graph.predecessors(name)):
            problems.append(f"{name}: created before one of its inputs")
        if name.split("/")[:-1] != (node["scope"].split("/") if node["scope"] else []):
            problems.append(f"{name}: name does not start with its scope {node['scope']!r}")
    return problems


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
