"""Shape inference: one small rule per node kind, and the window arithmetic they share.

Shapes are tuples: ``(c, h, w)`` for feature maps, ``(n,)`` after `flatten`.

Padding, stated once for the whole project:

* ``"V"`` (valid): no padding; ``out = floor((in - k_eff) / s) + 1``.
* ``"S"`` (TensorFlow SAME): ``out = ceil(in / s)``; total padding
  ``max((out - 1) * s + k_eff - in, 0)`` split ``floor(total / 2)`` before (top/left) and the
  rest after. At stride 1 with an odd kernel this is symmetric ``(k - 1) / 2``.
* explicit ``(top, bottom, left, right)``: ``out = floor((in + before + after - k_eff) / s) + 1``,
  or with ``ceil`` rounding up, dropping a last window that would start in the trailing
  padding (PyTorch's rule).

``k_eff = dilation * (k - 1) + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Shape = tuple  # (c, h, w) or (n,)

MAX_SIZE = 1 << 31  # larger sizes are certainly a mistake and overflow every backend


class ShapeError(Exception):
    """A rule's complaint; lowering attaches the source span and call chain."""

    def __init__(self, message: str, hint: str | None = None, notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.hint, self.notes = message, hint, notes


@dataclass(frozen=True)
class Window:
    """One spatial axis of a conv or pool: its output size and the padding actually used."""
    out: int
    before: int
    after: int
    dropped: int  # input rows/columns that no window reaches (VALID only)


def window(size: int, k: int, s: int, d: int, pad, axis: int, ceil: bool = False) -> Window:
    """Output size of one axis. `pad` is "V", "S" or (top, bottom, left, right); `axis` 0=h, 1=w."""
    k_eff = d * (k - 1) + 1
    if pad == "S":
        out = -(-size // s)
        total = max((out - 1) * s + k_eff - size, 0)
        return Window(out, total // 2, total - total // 2, 0)
    before, after = (0, 0) if pad == "V" else (pad[2 * axis], pad[2 * axis + 1])
    span = size + before + after - k_eff
    if span < 0:
        return Window(0, before, after, 0)
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + before:
            out -= 1
    else:
        out = span // s + 1
    # A window smaller than its stride skips rows by design (a 1x1 /2 shortcut), so only
    # windows that tile the input contiguously report rows left over at the end.
    dropped = span - (out - 1) * s if (pad == "V" and not ceil and k_eff >= s) else 0
    return Window(out, before, after, max(dropped, 0))


def _fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


def _spatial(op: str, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"`{op}` needs a CxHxW input, found the flat vector {_fmt(shape)}",
                         hint=f"move `{op}` before `flatten`")
    return shape


def _windowed(op: str, attrs: dict, shape: Shape, out_c: int) -> tuple[Shape, list[str]]:
    c, h, w = _spatial(op, shape)
    kh, kw = attrs["kernel"]
    sh, sw = attrs["stride"]
    dh, dw = attrs.get("dilation", (1, 1))
    ceil = attrs.get("ceil", False)
    pad = attrs["pad"]
    if isinstance(pad, tuple) and op.endswith("pool"):
        if max(pad[0], pad[1]) > kh // 2 or max(pad[2], pad[3]) > kw // 2:
            raise ShapeError(f"`{op}` padding {pad} is more than half the {kh}x{kw} window",
                             hint="pooling windows must not see only padding; use less padding")
    wh = window(h, kh, sh, dh, pad, 0, ceil)
    ww = window(w, kw, sw, dw, pad, 1, ceil)
    if wh.out <= 0 or ww.out <= 0:
        raise ShapeError(f"`{op}` {kh}x{kw} /{sh} on a {h}x{w} input leaves no output",
                         hint="the input is smaller than the window; use padding S or a smaller kernel")
    warnings = []
    if wh.dropped or ww.dropped:
        warnings.append(f"valid padding drops {wh.dropped} row(s) and {ww.dropped} column(s) of the {h}x{w} input"
                        f" (output {wh.out}x{ww.out})")
    return (out_c, wh.out, ww.out), warnings


def _conv(attrs, ins):
    c = _spatial("conv", ins[0])[0]
    g = attrs["groups"]
    if c % g or attrs["filters"] % g:
        raise ShapeError(f"`groups = {g}` must divide both the input depth {c} and the filters {attrs['filters']}")
    return _windowed("conv", attrs, ins[0], attrs["filters"])


def _pool(op):
    def rule(attrs, ins):
        return _windowed(op, attrs, ins[0], ins[0][0])
    return rule


def _same(attrs, ins):
    return ins[0], []


def _spatial_same(op):
    def rule(attrs, ins):
        return _spatial(op, ins[0]), []
    return rule


def _gap(attrs, ins):
    return (_spatial("gap", ins[0])[0], 1, 1), []


def _flatten(attrs, ins):
    n = 1
    for v in ins[0]:
        n *= v
    return (n,), []


def _linear(attrs, ins):
    if len(ins[0]) != 1:
        raise ShapeError(f"`linear` needs a flat input, found {_fmt(ins[0])}", hint="insert `flatten` (after `gap`) before `linear`")
    return (attrs["units"],), []


def _concat(attrs, ins):
    ranks = {len(s) for s in ins}
    if ranks != {len(ins[0])}:
        raise ShapeError("concat branches mix flat vectors and feature maps")
    if len(ins[0]) == 3:
        sizes = {s[1:] for s in ins}
        if len(sizes) > 1:
            raise ShapeError("concat branches disagree in spatial size",
                             notes=tuple(f"branch {i} gives {_fmt(s)}" for i, s in enumerate(ins)))
        return (sum(s[0] for s in ins),) + ins[0][1:], []
    return (sum(s[0] for s in ins),), []


def _add(attrs, ins):
    if len(set(ins)) > 1:
        raise ShapeError("the tensors summed have different shapes",
                         notes=tuple(f"input {i} is {_fmt(s)}" for i, s in enumerate(ins)))
    return ins[0], []


RULES: dict[str, Callable] = {
    "conv": _conv,
    "maxpool": _pool("maxpool"),
    "avgpool": _pool("avgpool"),
    "gap": _gap,
    "lrn": _spatial_same("lrn"),
    "bn": _same,
    "act": _same,
    "dropout": _same,
    "flatten": _flatten,
    "linear": _linear,
    "softmax": _same,
    "identity": _same,
    "concat": _concat,
    "add": _add,
}


def infer_node(op: str, attrs: dict, in_shapes: list[Shape]) -> tuple[Shape, list[str]]:
    """Output shape of one node from its inputs' shapes, and any warnings.

    Raises:
        ShapeError: when the inputs do not fit the node.
    """
    shape, warnings = RULES[op](attrs, in_shapes)
    if any(v > MAX_SIZE for v in shape):
        raise ShapeError(f"output {_fmt(shape)} is larger than any backend can hold", hint="check the filter counts")
    return shape, warnings


def infer_shapes(graph) -> dict[str, Shape]:
    """Recompute every node's output shape from the graph alone, in topological order.

    Parameters:
        graph: the IR (`networkx.DiGraph`), edges carrying their input `index`.
    Returns:
        node name -> shape.
    Raises:
        ShapeError: when a node does not fit its inputs.

    Example:
        >>> net = incdsl.load("specs/inception_v4.inc")
        >>> infer_shapes(net.graph)[net.output]
        (1000,)
    """
    import networkx as nx

    shapes: dict[str, Shape] = {}
    for name in nx.topological_sort(graph):
        node = graph.nodes[name]
        if node["op"] == "input":
            shapes[name] = tuple(node["attrs"]["shape"])
            continue
        preds = sorted(graph.in_edges(name, data="index"), key=lambda e: e[2])
        shapes[name] = infer_node(node["op"], node["attrs"], [shapes[u] for u, _, _ in preds])[0]
    return shapes
