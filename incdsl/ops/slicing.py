"""Kinds that take part of a tensor or frame it with zeros, for networks that route named
tensors (`take`, `branch from`): a channel slice and a spatial zero-padding.

`channels 0:64` keeps channels 0..63 (start included, stop excluded, as Python's slices): one
stream of several carried in one tensor (ResNet in ResNet's residual and transient streams).
`zeropad(top, bottom, left, right)` (or `zeropad bottom = 1`) adds zero rows and columns; `concat(pad = yes):` makes them
to bring smaller branches to the largest branch's size (the CIFAR network of "Neural
Architecture Search with Reinforcement Learning": "we pad the smaller layers with zeros").

Attributes: channels start, stop; zeropad pad (top, bottom, left, right). Both are free (no
parameters, no multiply-adds) and keep the receptive field (zeros read no input). They
compile to `nn.ConstantPad3d` (a negative pad crops channels) and `nn.ZeroPad2d`.
"""
from __future__ import annotations

from ..lang.values import ChannelRange, show, t_nonneg
from .base import Op, Signature, keep_field, p_int
from .window import ShapeError, fmt, spatial


def t_range(v):
    if not isinstance(v, ChannelRange):
        raise TypeError(f"expected a channel range such as `0:64`, found `{show(v)}`")
    start, stop = t_nonneg(v[0]), t_nonneg(v[1])
    if start >= stop:
        raise TypeError(f"expected a range whose start is below its stop, found `{start}:{stop}`")
    return (start, stop)


def p_range(v):
    return isinstance(v, ChannelRange)


def channels_finish(attrs: dict) -> dict:
    start, stop = attrs.pop("range")
    return {"start": start, "stop": stop}


def channels_shape(attrs, ins):
    c, h, w = spatial("channels", ins[0])
    if attrs["stop"] > c:
        raise ShapeError(f"`channels {attrs['start']}:{attrs['stop']}` reaches past the {fmt(ins[0])} input's "
                         f"{c} channels", hint=f"channel ranges of this input end at {c} or before")
    return (attrs["stop"] - attrs["start"], h, w), []


def channels_torch(a, ins, out, lit) -> str:
    return f"nn.ConstantPad3d((0, 0, 0, 0, {lit(-a['start'])}, {lit(a['stop'] - ins[0][0])}), 0.0)"


SIDES = ("top", "bottom", "left", "right")


def zeropad_finish(attrs: dict) -> dict:
    return {"pad": tuple(attrs[side] for side in SIDES)}


def zeropad_shape(attrs, ins):
    c, h, w = spatial("zeropad", ins[0])
    top, bottom, left, right = attrs["pad"]
    return (c, h + top + bottom, w + left + right), []


def zeropad_torch(a, ins, out, lit) -> str:
    top, bottom, left, right = a["pad"]
    return f"nn.ZeroPad2d(({lit(left)}, {lit(right)}, {lit(top)}, {lit(bottom)}))"


def centred(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that bring `size` to `target`, the odd row or column after."""
    dh, dw = target[0] - size[0], target[1] - size[1]
    return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2


OPS = (
    Op("channels", "reshape", Signature({"range": t_range}, {}, (("range", p_range),), False,
                                        "a channel range such as `0:64`"),
       channels_shape, lambda a: f"Channels {a['start']}:{a['stop']}", channels_torch, receptive=keep_field,
       finish=channels_finish, attributes=("start", "stop"), example=("channels 1:3",)),
    Op("zeropad", "reshape", Signature({side: t_nonneg for side in SIDES}, {side: 0 for side in SIDES},
                                       tuple((side, p_int) for side in SIDES), False,
                                       "the zero rows and columns: top, bottom, left, right"),
       zeropad_shape, lambda a: "Zero-pad " + show(a["pad"]), zeropad_torch, receptive=keep_field,
       finish=zeropad_finish, attributes=("pad",), example=("zeropad(1, 0, 2, 1)", "zeropad bottom = 1")),
)
