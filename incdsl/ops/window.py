"""Window arithmetic shared by convolution and pooling, and the error shape rules raise.

Padding, stated once for the whole project:

* ``"V"`` (valid): no padding; ``out = floor((in - k_eff) / s) + 1``.
* ``"S"`` (TensorFlow SAME): ``out = ceil(in / s)``; total padding
  ``max((out - 1) * s + k_eff - in, 0)`` split ``floor(total / 2)`` before (top/left) and the
  rest after. At stride 1 with an odd kernel this is symmetric ``(k - 1) / 2``.
* explicit ``(top, bottom, left, right)``: ``out = floor((in + before + after - k_eff) / s) + 1``,
  or with ``ceil`` rounding up, dropping a last window that would start in the trailing
  padding (PyTorch's rule; so a window larger than the padded input still gives one output
  where the stride is larger than the overhang, as `nn.MaxPool2d(ceil_mode=True)` does).

``k_eff = dilation * (k - 1) + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Shape


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
    if ceil:  # PyTorch's (and Caffe's) rounding: a window may overhang the end, even past a small input
        out = -(-span // s) + 1
        if (out - 1) * s >= size + before:
            out -= 1
        if out <= 0:
            return Window(0, before, after, 0)
    elif span < 0:
        return Window(0, before, after, 0)
    else:
        out = span // s + 1
    # A window smaller than its stride skips rows by design (a 1x1 /2 shortcut), so only
    # windows that tile the input contiguously report rows left over at the end.
    dropped = span - (out - 1) * s if (pad == "V" and not ceil and k_eff >= s) else 0
    return Window(out, before, after, max(dropped, 0))


def fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


def spatial(op: str, shape: Shape) -> Shape:
    """The shape, which must be a feature map (CxHxW) for `op`."""
    if len(shape) != 3:
        raise ShapeError(f"`{op}` needs a CxHxW input, found the flat vector {fmt(shape)}",
                         hint=f"move `{op}` before `flatten`")
    return shape


def windowed(op: str, attrs: dict, shape: Shape, out_c: int) -> tuple[Shape, list[str]]:
    """Output shape of a sliding window (conv or pool) with `out_c` channels, and warnings."""
    c, h, w = spatial(op, shape)
    kh, kw = attrs["kernel"]
    sh, sw = attrs["stride"]
    dh, dw = attrs.get("dilation", (1, 1))
    ceil = attrs.get("ceil", False)
    pad = attrs["pad"]
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


def windows(attrs: dict, in_shape: Shape) -> tuple[Window, Window]:
    """Both axes' windows (padding as resolved for this input), for the torch constructors."""
    _, h, w = in_shape
    d = attrs.get("dilation", (1, 1))
    ceil = attrs.get("ceil", False)
    return (window(h, attrs["kernel"][0], attrs["stride"][0], d[0], attrs["pad"], 0, ceil),
            window(w, attrs["kernel"][1], attrs["stride"][1], d[1], attrs["pad"], 1, ceil))


def window_field(attrs: dict, fields: list, ins: list, out: Shape) -> tuple:
    """Receptive field through a window: ``rf_out = rf_in + (k_eff - 1) * jump``, ``jump *= stride``."""
    rf_h, rf_w, j_h, j_w = fields[0]
    kh, kw = attrs["kernel"]
    dh, dw = attrs.get("dilation", (1, 1))
    sh, sw = attrs["stride"]
    return (rf_h + dh * (kh - 1) * j_h, rf_w + dw * (kw - 1) * j_w, j_h * sh, j_w * sw)
