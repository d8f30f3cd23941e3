"""What a diagram shows, as plain data: boxes, arrows, clusters and left-to-right orders.

A `Scene` says nothing about colours, fonts or Graphviz; `render/graphviz.py` styles it
from a table keyed by `Node.kind`. Node ids are IR names (or scope paths), so the DOT text
is stable; ids of boxes that are not IR nodes start with ``#``, which IR names never contain.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from ..ir.graph import inputs, kind, node as ir_node
from .labels import act_label, hwc, layer_label

OUTPUT = "#output"


class DrawError(ValueError):
    """A request the network cannot satisfy, e.g. a block name it does not use."""


@dataclass(frozen=True)
class Node:
    """One box. `lines` are smaller text under the title; when `flow` is set they are a
    sequence in data-flow order (drawn bottom-up in a bottom-up diagram)."""
    id: str
    kind: str
    title: str
    lines: tuple[str, ...] = ()
    flow: bool = False
    cluster: str = ""
    aux: bool = False


@dataclass(frozen=True)
class Edge:
    """One arrow, with the shape of the tensor it carries and an optional note (a scale)."""
    tail: str
    head: str
    shape: tuple | None = None
    note: str | None = None
    aux: bool = False


@dataclass
class Scene:
    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # scope path -> label; parent = path prefix
    orders: list[tuple[str, ...]] = field(default_factory=list)  # ids to place side by side, in order

def aux_drop(graph: nx.DiGraph, name: str, keep: str | None, aux: bool) -> bool:
    """Whether a node is hidden: it belongs to an auxiliary head other than `keep` and `aux` is off."""
    head = graph.nodes[name]["aux"]
    return not aux and head is not None and head != keep


def layer_nodes(graph: nx.DiGraph, name: str, cluster: str = "", note: str | None = None) -> list[Node]:
    """The boxes of one IR node: usually one; a residual sum with an activation gives two
    (``+`` then ``Relu activation``, as the papers draw it)."""
    node = ir_node(graph, name)
    lines = (note,) if note else ()
    aux = node.aux is not None
    boxes = [Node(name, node.kind.family, layer_label(node.op, node.attrs), lines, False, cluster, aux)]
    act = _post_act(graph, name)
    if act:
        boxes.append(Node(name + "#act", "act", act_label(act), (), False, cluster, aux))
    return boxes


def layer_kind(graph: nx.DiGraph, name: str) -> str:
    """The style kind of a layer's box: its op's family. Block-level kinds ("block",
    "reduction", "stem", "aux", "output") come on top of these."""
    return kind(graph, name).family


def _post_act(graph: nx.DiGraph, name: str) -> str | None:
    """The activation a node's op draws as a box of its own after it (a residual sum's)."""
    node = ir_node(graph, name)
    return node.kind.post_act(node.attrs) if node.kind.post_act else None


def exit_id(graph: nx.DiGraph, name: str) -> str:
    """The box an IR node's outgoing arrows leave from (see `layer_nodes`)."""
    return name + "#act" if _post_act(graph, name) else name


def layer_edges(graph: nx.DiGraph, name: str, box_of) -> list[Edge]:
    """Arrows into one IR node, in input order; `box_of(ir_name)` gives the drawn tail box
    (None: not drawn). The residual branch's arrow carries its scale."""
    node = graph.nodes[name]
    aux = node["aux"] is not None
    out = []
    for index, src in enumerate(inputs(graph, name)):
        tail = box_of(src)
        if tail is not None and tail != name:
            out.append(Edge(tail, name, graph.nodes[src]["shape"], input_note(graph, name, index), aux))
    if _post_act(graph, name):
        out.append(Edge(name, name + "#act", node["shape"], None, aux))
    return out


def input_note(graph: nx.DiGraph, name: str, index: int) -> str | None:
    """The note on a node's `index`-th input arrow: the scale of a residual branch."""
    node = ir_node(graph, name)
    return node.kind.edge_note(node.attrs, index) if node.kind.edge_note else None


def branch_heads(graph: nx.DiGraph, concat: str, members: list[str]) -> list[str]:
    """The first node of each branch of a concat (or add), in input order.

    A branch is the scope one level below the join's scope (`inception_a.0/branch_2`); its
    head is its first node in IR order. An input that is not inside such a scope is its own head.
    """
    scope = graph.nodes[concat]["scope"]
    prefix = scope + "/" if scope else ""
    heads = []
    for src in inputs(graph, concat):
        rest = src[len(prefix):] if src.startswith(prefix) else None
        if rest is None or "/" not in rest:
            heads.append(src)
            continue
        branch = prefix + rest.split("/", 1)[0] + "/"
        heads.append(next(n for n in members if n.startswith(branch)))
    return heads


def merge_parallel(edges: list[Edge]) -> list[Edge]:
    """One arrow per (tail, head): where a collapsed box feeds several inputs of one join
    (FractalNet's flat join takes two columns of a nested block), Graphviz would draw the
    arrows on top of each other; the one arrow left says how many inputs it stands for."""
    groups: dict[tuple, list[Edge]] = {}
    for e in edges:
        groups.setdefault((e.tail, e.head, e.aux), []).append(e)
    out = []
    for e in edges:
        group = groups.pop((e.tail, e.head, e.aux), None)
        if group is None:
            continue
        if len(group) == 1:
            out.append(e)
            continue
        shapes = list(dict.fromkeys(g.shape for g in group))
        count = f"{len(group)} inputs" if len(shapes) == 1 else \
            f"{len(group)} inputs: " + ", ".join(hwc(s) for s in shapes if s is not None)
        notes = [count] + list(dict.fromkeys(g.note for g in group if g.note))
        out.append(Edge(e.tail, e.head, shapes[0] if len(shapes) == 1 else None, ", ".join(notes), e.aux))
    return out


_INDEXED = re.compile(r"^(.*)\.(\d+)$")


def split_index(scope: str) -> tuple[str, int | None]:
    """``inception_a.3`` -> ``("inception_a", 3)``; ``stem`` -> ``("stem", None)``."""
    m = _INDEXED.match(scope)
    return (m.group(1), int(m.group(2))) if m else (scope, None)
