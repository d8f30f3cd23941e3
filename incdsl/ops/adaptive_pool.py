"""Adaptive pooling to a fixed output size: `adaptive_avgpool 6x6`, `adaptive_maxpool 7x7`;
torch's `nn.AdaptiveAvgPool2d` / `nn.AdaptiveMaxPool2d` exactly. Output cell i of an axis of
size `n` pooled to `o` reads rows ``floor(i * n / o)`` to ``ceil((i + 1) * n / o)``
(exclusive), so windows may differ by one and overlap when `o` does not divide `n`.

Heads written with it (AlexNet's 6x6, VGG's 7x7, GoogLeNet's 4x4 auxiliary pools) keep the
classifier's input size at every input size, as torchvision's models do.

Compiles to `nn.AdaptiveAvgPool2d` and `AdaptiveMaxPool` (`nn.AdaptiveMaxPool2d`, exported to
ONNX, which has no adaptive max pool, as a max over each window).

Attributes: size (oh, ow). Parameters and MACs: none (pooling is free by the convention of
`passes/cost.py`). Receptive field: the largest window of each axis.
"""
from __future__ import annotations

from ..lang.values import t_pair
from .base import Op, Signature, p_dims, p_int
from .window import spatial


def windows(n: int, o: int) -> list[tuple[int, int]]:
    """(start, end) of each of the `o` windows over an axis of `n` (torch's adaptive rule)."""
    return [((i * n) // o, -(-((i + 1) * n) // o)) for i in range(o)]


def largest(n: int, o: int) -> int:
    return max(end - start for start, end in windows(n, o))


def _shape(op: str):
    def rule(attrs, ins):
        c, _, _ = spatial(op, ins[0])
        return (c, *attrs["size"]), []
    return rule


def field(attrs, fields, ins, out) -> tuple:
    """``rf + (largest window - 1) * jump``; the jump grows by n / o, the mean window step."""
    from fractions import Fraction  # only here: importing it costs `check` a few milliseconds
    rf_h, rf_w, j_h, j_w = fields[0]
    (_, h, w), (oh, ow) = ins[0], attrs["size"]

    def step(n, o):
        return n // o if n % o == 0 else Fraction(n, o)

    return (rf_h + (largest(h, oh) - 1) * j_h, rf_w + (largest(w, ow) - 1) * j_w, j_h * step(h, oh), j_w * step(w, ow))


def _label(name: str):
    return lambda a: f"Adaptive {name} to {a['size'][0]}x{a['size'][1]}"


def _torch(cls: str):
    return lambda a, ins, out, lit: f"{cls}({lit.pair(a['size'])})"


_SIGNATURE = Signature({"size": t_pair}, {}, (("size", p_dims), ("size", p_int)), False,
                       "an output size such as `6x6`")

OPS = (
    Op("adaptive_avgpool", "pool", _SIGNATURE, _shape("adaptive_avgpool"), _label("Avg Pooling"),
       _torch("nn.AdaptiveAvgPool2d"), receptive=field, example=("adaptive_avgpool 4x4",)),
    Op("adaptive_maxpool", "pool", _SIGNATURE, _shape("adaptive_maxpool"), _label("MaxPool"),
       _torch("AdaptiveMaxPool"), receptive=field, example=("adaptive_maxpool 4x6",)),
)
