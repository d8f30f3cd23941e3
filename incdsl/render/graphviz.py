"""IR -> DOT text -> SVG, PDF or PNG through Graphviz's `dot`.

Three steps, each a function: `collect` picks what to draw at the chosen level (a `Scene`,
plain data, see `render/collect.py`), `to_dot` styles it from the table in `render/style.py`
and writes DOT text, `run_dot` hands the text to the `dot` program. Only `run_dot` needs
Graphviz installed; the DOT text is the same bytes for the same spec and options.

Example:
    >>> import incdsl
    >>> from incdsl.render.graphviz import DrawOptions, build_dot
    >>> net = incdsl.load("specs/inception_v4.inc")
    >>> text = build_dot(net, DrawOptions(level="block", block="inception_a"))
    >>> text.startswith("digraph")
    True
"""
from __future__ import annotations

import hashlib
import html
import re
import subprocess
import unicodedata

import graphviz

from .collect import collect_block, collect_layers, collect_network
from .labels import hwc
from .paper import wrapped_rows
from .scene import DrawError, Scene
from .style import (FORMATS, LEVELS, NOTE_COLOUR, RANKDIRS, DrawOptions, cluster_style, default_edge_style,
                    default_node_style, graph_style, node_style)

__all__ = ["DOT_TIMEOUT", "DotTimeout", "DrawError", "DrawOptions", "DrawTooLarge", "FORMATS", "GraphvizNotFound",
           "build_dot", "collect", "draw", "render_svg", "dot_digest", "run_dot", "source_hash", "to_dot"]

INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` (macOS), "
                "or see https://graphviz.org/download/")


WRAP = 6  # boxes per row of a left-to-right network drawing
DOT_TIMEOUT = 300  # seconds: `dot` takes about a second for the 2,000 boxes `max_nodes` allows


class GraphvizNotFound(RuntimeError):
    """The `dot` program is not on PATH."""


class DotTimeout(RuntimeError):
    """`dot` did not finish in time (it was stopped)."""


class DrawTooLarge(DrawError):
    """The drawing has more boxes than `DrawOptions.max_nodes`; `boxes` says how many."""

    def __init__(self, message: str, boxes: int):
        super().__init__(message)
        self.boxes = boxes


def collect(network, options: DrawOptions = DrawOptions()) -> Scene:
    """What to draw at `options.level`. `network` is a `Network` or its IR graph.

    Raises:
        DrawError: an unknown level, or a block the network does not use.
    """
    graph = getattr(network, "graph", network)
    if options.level == "network":
        return collect_network(graph, aux=options.aux)
    if options.level == "block":
        if options.block is None:
            raise DrawError("the block level needs a block name")
        return collect_block(graph, options.block, aux=options.aux, input_label=options.input_label,
                             branch_order=options.branch_order, call=options.call)
    if options.level == "layer":
        return collect_layers(graph, aux=options.aux, block=options.block, input_label=options.input_label,
                              call=options.call)
    raise DrawError(f"unknown level `{options.level}`; levels: {', '.join(LEVELS)}")


def build_dot(network, options: DrawOptions = DrawOptions()) -> str:
    """The DOT text of a network's diagram (see `collect` and `to_dot`).

    Raises:
        DrawTooLarge: the drawing would have more than `options.max_nodes` boxes.
    """
    scene = collect(network, options)
    if len(scene.nodes) > options.max_nodes:
        raise DrawTooLarge(f"the {options.level}-level drawing of `{scene.name}` has {len(scene.nodes):,} boxes, "
                           f"more than the limit of {options.max_nodes:,}", len(scene.nodes))
    return to_dot(scene, options)


# --- DOT text ------------------------------------------------------------------------------

def _escape(text: str) -> str:
    """Text for an HTML-like label: markup escaped; `]` too (Graphviz's lexer ends a label at
    `]>`); control characters, which XML cannot hold, shown as U+FFFD."""
    text = "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in text)
    return html.escape(text, quote=False).replace("]", "&#93;")


def _html(title: str, lines=(), mono: bool = False, size: int = 9) -> str:
    """An HTML-like Graphviz label: the title, then smaller lines. Every text goes through `_escape`."""
    parts = [_escape(title)]
    colour = "" if mono else f' COLOR="{NOTE_COLOUR}"'
    for line in lines:
        parts.append(f'<FONT POINT-SIZE="{size}"{colour}>{_escape(line)}</FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def _node_label(node, options: DrawOptions, shape: tuple | None = None) -> str:
    lines = node.lines
    if node.flow and options.rankdir == "BT":
        lines = tuple(reversed(lines))  # read bottom-up like the arrows
    if shape is not None:
        lines += (hwc(shape),)
    return _html(node.title, lines, options.mono)


def _fan_outs(scene: Scene) -> dict[str, tuple]:
    """Boxes whose output feeds several arrows (a block input feeding four branches): their
    shape is written once, in the box, rather than on each arrow."""
    kinds = {n.id: n.kind for n in scene.nodes}
    shapes: dict[str, set] = {}
    counts: dict[str, int] = {}
    for e in scene.edges:
        # an aux head's tap counts too: its dashed arrow and the trunk's wrote one shape side by side
        if e.shape is not None:
            shapes.setdefault(e.tail, set()).add(e.shape)
            counts[e.tail] = counts.get(e.tail, 0) + 1
    return {tail: next(iter(s)) for tail, s in shapes.items()
            if counts[tail] > 1 and len(s) == 1 and node_style(kinds[tail], True)["shape"] == "box"}


def _edge_label(edge, options: DrawOptions, fanned: bool = False) -> str | None:
    parts = []
    if options.shapes and edge.shape is not None and not fanned:
        parts.append(hwc(edge.shape))
    if edge.note:
        parts.append(edge.note)
    if not parts:
        return None
    return "<" + "<BR/>".join(_escape(p) for p in parts) + ">"


def _parent_cluster(path: str, clusters: dict) -> str:
    """The innermost cluster around `path` ("" for the graph itself)."""
    while "/" in path:
        path = path.rpartition("/")[0]
        if path in clusters:
            return path
    return ""


def to_dot(scene: Scene, options: DrawOptions = DrawOptions()) -> str:
    """Style a scene and write it as DOT text.

    Boxes sit in nested clusters by `Node.cluster` (scope paths, parent = path prefix); each
    `Scene.orders` entry becomes a ``rank=same`` row chained by invisible edges, which is
    what keeps concat branches left to right in input order.
    """
    if options.rankdir not in RANKDIRS:
        raise DrawError(f"unknown rankdir `{options.rankdir}`; use one of {', '.join(RANKDIRS)}")
    graph_attr = graph_style(options)
    orders, wraps = list(scene.orders), []
    if options.rankdir == "LR" and options.level == "network" and sum(not n.aux for n in scene.nodes) > WRAP:
        # wrap: rows of WRAP boxes, left to right, stacked top to bottom
        graph_attr["rankdir"] = "TB"
        wraps = wrapped_rows(scene, WRAP)
        orders += wraps
    dot = graphviz.Digraph(scene.name, graph_attr=graph_attr, node_attr=default_node_style(options),
                           edge_attr=default_edge_style(options))
    fanned = _fan_outs(scene) if options.shapes else {}
    by_cluster: dict[str, list] = {}
    for node in scene.nodes:
        by_cluster.setdefault(node.cluster, []).append(node)

    def add_nodes(g, nodes):
        for node in nodes:
            style = node_style(node.kind, options.mono, node.aux)
            g.node(node.id, _node_label(node, options, fanned.get(node.id)), **style)

    children: dict[str, list[str]] = {}
    for path in scene.clusters:
        children.setdefault(_parent_cluster(path, scene.clusters), []).append(path)

    def add_cluster(parent, path: str):
        sub = graphviz.Digraph("cluster_" + path, graph_attr=cluster_style(options))
        sub.attr(label=_html(scene.clusters[path]))
        add_nodes(sub, by_cluster.get(path, []))
        for child in children.get(path, []):
            add_cluster(sub, child)
        parent.subgraph(sub)

    add_nodes(dot, by_cluster.get("", []))
    for path in children.get("", []):
        add_cluster(dot, path)
    row_of = {box: i for i, row in enumerate(wraps) for box in row}
    for edge in scene.edges:
        attrs = {"style": "dashed"} if edge.aux else {}
        if row_of.get(edge.tail, -1) < row_of.get(edge.head, -1) and edge.tail in row_of:
            # from the end of one row down to the start of the next: leave from below and enter
            # from above, or the arrow runs back over the row and meets the box from the right
            attrs.update(tailport="s", headport="n")
        elif edge.aux and wraps:  # an aux head hangs straight under its tap, its output under it
            attrs["weight"] = "10"
        label = _edge_label(edge, options, edge.tail in fanned)
        if label:
            attrs["label"] = label
        dot.edge(edge.tail, edge.head, **attrs)
    for row, below in zip(wraps, wraps[1:]):  # each row starts under the one before
        dot.edge(row[0], below[0], style="invis", weight="100")
    for tail, head in _aux_hangers(scene, row_of, wraps):
        dot.edge(tail, head, style="invis")
    for row in orders:
        with dot.subgraph() as same:
            same.attr(rank="same")
            for a, b in zip(row, row[1:]):
                same.edge(a, b, style="invis")
    return dot.source


def _aux_hangers(scene: Scene, row_of: dict, wraps: list) -> list[tuple[str, str]]:
    """Invisible edges from the last box of each aux head tapped in a wrapped row to the start
    of the next row, so that row moves down and the head hangs under its tap in the gap; left
    to dot, the head shared the next row's rank and sat at its far end with a long arrow."""
    following: dict[str, list[str]] = {}
    for edge in scene.edges:
        if edge.aux:
            following.setdefault(edge.tail, []).append(edge.head)
    hangers = []
    for tap, row in row_of.items():
        if row + 1 >= len(wraps):
            continue
        todo, seen = list(following.get(tap, [])), set()
        while todo:  # the aux boxes below this tap: each ends above the next row
            box = todo.pop()
            if box in seen or box in row_of:
                continue
            seen.add(box)
            after = following.get(box, [])
            if not after:
                hangers.append((box, wraps[row + 1][0]))
            todo += after
    return hangers


# --- running dot ---------------------------------------------------------------------------

def run_dot(source: str, fmt: str, timeout: float | None = None, dpi: int | None = None) -> bytes:
    """Lay out DOT text with `dot` and return the output file's bytes; `dot` gets `timeout`
    seconds (default `DOT_TIMEOUT`); `dpi` sets a PNG's resolution (the DOT text stays the same).

    Raises:
        GraphvizNotFound: `dot` is not installed (the message says how to install it).
        DotTimeout: `dot` ran longer than `timeout` seconds (it is stopped).
        RuntimeError: `dot` failed on the input (a bug in the DOT we wrote).
    """
    if fmt not in FORMATS or fmt == "dot":
        raise ValueError(f"run_dot renders {', '.join(f for f in FORMATS if f != 'dot')}, not {fmt!r}")
    timeout = DOT_TIMEOUT if timeout is None else timeout
    try:
        resolution = [f"-Gdpi={int(dpi)}"] if dpi and fmt == "png" else []
        proc = subprocess.run(["dot", f"-T{fmt}", *resolution], input=source.encode("utf-8"), capture_output=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise GraphvizNotFound(f"the Graphviz program `dot` was not found on PATH; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise DotTimeout(f"Graphviz `dot` did not finish within {timeout:g} s and was stopped") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"dot failed: {detail or f'exit status {proc.returncode}'}")
    out = proc.stdout
    if fmt == "svg":
        out = _mark_svg(out, source)
    return out


_HASH_COMMENT = re.compile(rb"<!-- incdsl DOT sha256 ([0-9a-f]{64}) -->")


def _mark_svg(svg: bytes, source: str) -> bytes:
    """Record which DOT text an SVG was drawn from, so a committed figure can be checked for
    staleness without depending on the Graphviz version that laid it out."""
    return svg.replace(b"<svg", f"<!-- incdsl DOT sha256 {dot_digest(source)} -->\n<svg".encode(), 1)


def dot_digest(source: str) -> str:
    """The hash of DOT text that `run_dot` records in an SVG."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def source_hash(svg: bytes | str) -> str | None:
    """The DOT text hash recorded in an SVG written by `run_dot`, or None."""
    data = svg.encode("utf-8") if isinstance(svg, str) else svg
    m = _HASH_COMMENT.search(data)
    return m.group(1).decode() if m else None


def draw(network, options: DrawOptions = DrawOptions(), fmt: str = "svg") -> bytes:
    """A diagram file's bytes in `fmt` (svg, pdf, png, or dot for the DOT text itself)."""
    source = build_dot(network, options)
    if fmt == "dot":
        return source.encode("utf-8")
    return run_dot(source, fmt, dpi=options.dpi)


def render_svg(network, options: DrawOptions = DrawOptions()) -> str:
    """The network-level diagram as SVG text (what Jupyter shows for a `Network`).

    Raises:
        GraphvizNotFound: `dot` is not installed.
    """
    return draw(network, options, "svg").decode("utf-8")
