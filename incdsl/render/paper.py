"""Block figures laid out as the papers draw them: one row per depth, branches left to right.

The Inception papers draw a module with every branch starting on the bottom row, the k-th
layers of all branches side by side on row k, and the branches in a fixed left-to-right
order. `depth_rows` turns a block scene into those rows (each a ``rank=same`` row in DOT,
chained left to right), which also keeps the arrows straight: no edge has to detour around a
box of another branch.
"""
from __future__ import annotations

import re

import networkx as nx

from ..ir.graph import kind
from .scene import Scene

BRANCH_ORDERS = ("spec", "pool-first", "pool-last")  # pool-first: Inception-v4's figures; GoogLeNet's: spec
_BRANCH = re.compile(r"^branch_(\d+)$")


def _starts_with_pool(graph: nx.DiGraph, prefix: str) -> bool:
    first = next((n for n in graph.nodes if n.startswith(prefix + "/")), None)
    return first is not None and kind(graph, first).group == "pool"


def branch_key(graph: nx.DiGraph, node_id: str, order: str) -> tuple:
    """Left-to-right sort key of a box: its branch indices along its scope path, a branch that
    starts with pooling moved first or last when `order` asks."""
    key = []
    parts = node_id.split("/")
    for i, part in enumerate(parts[:-1]):
        m = _BRANCH.match(part)
        if not m:
            continue
        pool = order != "spec" and _starts_with_pool(graph, "/".join(parts[:i + 1]))
        side = (0 if pool else 1) if order == "pool-first" else (1 if pool else 0)
        key.append((side, int(m.group(1))))
    return tuple(key)


def depth_rows(graph: nx.DiGraph, scene: Scene, order: str = "spec") -> list[tuple[str, ...]]:
    """Boxes grouped by depth (longest path from the block's input), each row sorted left to right."""
    g = nx.DiGraph()
    g.add_nodes_from(n.id for n in scene.nodes if not n.aux)
    g.add_edges_from((e.tail, e.head) for e in scene.edges if not e.aux and e.tail in g and e.head in g)
    depth: dict[str, int] = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    position = {n.id: i for i, n in enumerate(scene.nodes)}
    rows: dict[int, list[str]] = {}
    for n, d in depth.items():
        rows.setdefault(d, []).append(n)
    out = []
    for d in sorted(rows):
        row = sorted(rows[d], key=lambda n: (branch_key(graph, n, order), position[n]))
        if len(row) > 1:
            out.append(tuple(row))
    return out


def wrapped_rows(scene: Scene, per_row: int) -> list[tuple[str, ...]]:
    """The trunk's boxes in runs of `per_row`, for a left-to-right drawing that wraps like text
    (rows stacked top to bottom) instead of one row thousands of pixels long."""
    trunk = [n.id for n in scene.nodes if not n.aux]
    return [tuple(trunk[i:i + per_row]) for i in range(0, len(trunk), per_row) if len(trunk[i:i + per_row]) > 1]
