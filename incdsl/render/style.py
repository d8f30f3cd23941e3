"""How each kind of box looks: one table keyed by `Node.kind`, in colour or monochrome.

Kinds are the ops' style families (`Op.family` in `ops/`) plus the network-level kinds ``block``,
``reduction``, ``stem``, ``aux`` and ``output``. Colours are pale enough for black text in
print; `--mono` drops every fill and draws in black.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .scene import DrawError

FILLS = {
    "input": "#e9e9e9",
    "conv": "#fff1bd",
    "pool": "#d3e6f8",
    "norm": "#e4d9f1",
    "act": "#f9d6cf",
    "dropout": "#ececec",
    "reshape": "#f4f4f4",
    "linear": "#fcdcc0",
    "concat": "#d4edcf",
    "add": "#d4edcf",
    "block": "#fbe5ae",
    "reduction": "#c9ddf3",
    "stem": "#e2d4ef",
    "aux": "#efefef",
}

SHAPES = {"add": "circle", "output": "plaintext"}

EXTRA_STYLE = {"aux": "dashed", "block": "bold", "reduction": "bold", "stem": "bold"}


@dataclass(frozen=True)
class DrawOptions:
    """Everything that changes a drawing besides the network itself.

    level: ``network`` | ``block`` | ``layer``; block: the block to draw at block level;
    call: which call of `block` to draw, 1 for the first (calls differ where an `if` picks
    layers: MobileNet's first inverted residual has no 1x1 expansion);
    rankdir: ``BT`` (input at the bottom, as the papers draw) | ``TB`` | ``LR``;
    aux: draw auxiliary heads; mono: black on white; font: a font name Graphviz knows (see
    `check_font`); shapes: tensor shapes on the arrows; max_nodes: refuse a drawing of more
    boxes (Graphviz's time and memory grow faster than the number of boxes).
    """
    level: str = "network"
    block: str | None = None
    call: int = 1
    rankdir: str = "BT"
    aux: bool = True
    mono: bool = False
    font: str = "Helvetica"
    shapes: bool = True
    max_nodes: int = 2000
    input_label: str = "Previous layer"  # the block figure's input box: GoogLeNet's name; Inception-v4's is "Filter concat"
    branch_order: str = "spec"  # block figures: spec | pool-first (Inception-v4's figures) | pool-last
    dpi: int = 300  # PNG resolution


# A font name reaches the SVG as an attribute that Graphviz does not escape: allow only the
# characters font names use (Unicode letters and digits, space, - _ , .), nothing markup needs.
_FONT = re.compile(r"[^\W_][\w ,.-]{0,99}")


def check_font(name: str) -> str:
    """`name` if it is a plausible font name (``DejaVu Sans``, ``Times-Roman``), else DrawError."""
    if not _FONT.fullmatch(name) or name != name.strip():
        raise DrawError(f"not a font name: {name!r} (a font name has letters, digits, spaces and - _ , . "
                        "and at most 100 characters)")
    return name


LEVELS = ("network", "block", "layer")
RANKDIRS = ("BT", "TB", "LR")
FORMATS = ("svg", "pdf", "png", "dot")  # what `draw` writes; all but dot need Graphviz


def node_style(kind: str, mono: bool, aux: bool = False) -> dict[str, str]:
    """DOT attributes of a box of this kind (`aux`: it belongs to an auxiliary head: dashed)."""
    shape = SHAPES.get(kind, "box")
    if shape == "plaintext":
        return {"shape": shape}
    styles = [] if mono else ["filled"]
    if kind in EXTRA_STYLE:
        styles.append(EXTRA_STYLE[kind])
    if aux and "dashed" not in styles:
        styles.append("dashed")
    attrs = {"shape": shape}
    if styles:
        attrs["style"] = ",".join(styles)
    if not mono:
        attrs["fillcolor"] = FILLS.get(kind, "#ffffff")
    if shape == "circle":
        attrs.update(width="0.3", height="0.3", margin="0")
    return attrs


def graph_style(options: DrawOptions) -> dict[str, str]:
    check_font(options.font)
    return {"rankdir": options.rankdir, "newrank": "true", "nodesep": "0.25", "ranksep": "0.3",
            "fontname": options.font, "fontsize": "11"}


def default_node_style(options: DrawOptions) -> dict[str, str]:
    return {"fontname": options.font, "fontsize": "11", "height": "0.3", "margin": "0.1,0.04",
            "color": "black", "penwidth": "0.8"}


def default_edge_style(options: DrawOptions) -> dict[str, str]:
    return {"fontname": options.font, "fontsize": "9", "arrowsize": "0.6", "penwidth": "0.8",
            "color": "black" if options.mono else "#444444"}


NOTE_COLOUR = "#555555"  # the smaller lines under a title, and cluster labels, in colour mode


def cluster_style(options: DrawOptions) -> dict[str, str]:
    return {"style": "rounded,dashed", "color": "black" if options.mono else "#8a8a8a", "fontsize": "10",
            "fontcolor": "black" if options.mono else NOTE_COLOUR, "labeljust": "l", "margin": "6"}
