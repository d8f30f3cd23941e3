"""Zero channels added to a tensor to reach a depth: the parameter-free shortcut of ResNet's
option A (He et al. 2015, section 4.2: "extra zero entries padded for increasing dimensions")
and of PyramidNet (Han et al. 2017, Figure 5b).

`pad_channels 64` appends zeros after the input's channels (PyramidNet); `pad_channels 64
place = both` puts half before and half after, the odd channel after, as the common CIFAR
ResNet option-A code does (`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`).
The spatial subsampling of option A is written before it: `maxpool 1x1 /2` (or `avgpool 1x1
/2`) keeps every second row and column, as `x[:, :, ::2, ::2]` does.

Attributes: depth (the output depth), place ("after" | "both"). Parameters and MACs: none.
"""
from __future__ import annotations

from ..lang.values import Sym, show, t_count
from .base import Op, Signature, keep_field, p_int
from .window import ShapeError, fmt

PLACES = ("after", "both")


def t_place(v):
    if isinstance(v, Sym) and v in PLACES:
        return str(v)
    raise TypeError(f"expected `after` or `both`, found `{show(v)}`")


def split(place: str, extra: int) -> tuple[int, int]:
    """(channels before, channels after) for `extra` added channels."""
    return (extra // 2, extra - extra // 2) if place == "both" else (0, extra)


def shape(attrs, ins):
    depth, c = attrs["depth"], ins[0][0]
    if depth < c:
        raise ShapeError(f"`pad_channels {depth}` cannot shrink the {fmt(ins[0])} input to {depth} channels",
                         hint=f"give a depth of at least {c}, or project with `conv 1x1 {depth}`")
    return (depth,) + tuple(ins[0][1:]), []


def label(a) -> str:
    return f"Zero-pad channels to {a['depth']}" + (" (both sides)" if a["place"] == "both" else "")


def torch(a, ins, out, lit) -> str:
    before, after = split(a["place"], a["depth"] - ins[0][0])
    return f"PadChannels({lit(before)}, {lit(after)})"


OPS = (
    Op("pad_channels", "reshape", Signature({"depth": t_count, "place": t_place}, {"place": "after"},
                                            (("depth", p_int),), False, "the depth to pad to, such as `64`"),
       shape, label, torch, receptive=keep_field, words=PLACES,
       example=("pad_channels 6", "pad_channels 9 place = both")),
)
