"""Convolution: conv -> optional batch norm -> optional activation, one node.

Attributes: filters, kernel (kh, kw), stride (sh, sw), pad "V" | "S" | (top, bottom, left,
right), dilation (dh, dw), groups, bias (bool), bn (eps, or None for no batch norm),
bn_momentum (its running averages' momentum, PyTorch's 0.1 by default; without batch norm it
means nothing, so a scoped default can cover convs with and without), act (activation name, or
None).

Parameters: weights ``k_h * k_w * (C_in / groups) * filters``, a bias only where the layer has
one (`bias = auto`: exactly when there is no batch norm), and batch-norm gamma and beta (2 per
filter). MACs ``H_out * W_out * filters * (C_in / groups) * k_h * k_w`` (torchvision's `_ops`).
"""
from __future__ import annotations

import math

from ..lang.values import INT_LIMIT, InDepth, Sym, divisible, t_bn, t_count, t_pad, t_pair, t_posfloat, show
from .activation import ACTIVATIONS, fused_act, t_act
from .base import Op, Signature, p_dims, p_int, p_padsym
from .norm import TORCH_MOMENTUM, momentum_arg, t_momentum
from .marks import pair, window_marks, with_marks
from .window import ShapeError, spatial, window_field, windowed, windows


def t_bias(v):
    if isinstance(v, Sym) and v == "auto":
        return "auto"
    if not isinstance(v, bool):
        raise TypeError(f"expected yes or no, found `{show(v)}`")
    return v


SIGNATURE = Signature(
    {"filters": t_count, "kernel": t_pair, "stride": t_pair, "pad": t_pad, "dilation": t_pair,
     "groups": t_count, "bias": t_bias, "bn": t_bn, "bn_momentum": t_momentum, "act": t_act, "width": t_posfloat},
    {"stride": (1, 1), "pad": "V", "dilation": (1, 1), "groups": 1, "bias": "auto", "bn": None,
     "bn_momentum": TORCH_MOMENTUM, "act": "relu", "width": 1.0},
    (("kernel", p_dims), ("filters", p_int), ("pad", p_padsym)), True,
    "a kernel such as `3x3`, a filter count, a stride such as `/2` and a padding `V` or `S`")


def finish(attrs: dict) -> dict:
    if attrs["bias"] == "auto":
        attrs["bias"] = attrs["bn"] is None
    # `with conv(width = 0.75)` scales filter counts to a multiple of 8; depths read
    # from `in.c` (residual projections) must keep matching the input, so they are exempt.
    width = attrs.pop("width")
    if width != 1.0 and not isinstance(attrs["filters"], InDepth):
        scaled = attrs["filters"] * width
        # a huge width overflows to inf, or to an integer of hundreds of digits
        if not math.isfinite(scaled) or scaled > INT_LIMIT:
            raise TypeError(f"`conv` width {width:g} scales {attrs['filters']:,} filters to a number too large")
        attrs["filters"] = divisible(scaled, 8)
    attrs["filters"] = int(attrs["filters"])
    return attrs


def shape(attrs, ins):
    c = spatial("conv", ins[0])[0]
    g = attrs["groups"]
    if c % g or attrs["filters"] % g:
        raise ShapeError(f"`groups = {g}` must divide both the input depth {c} and the filters {attrs['filters']}")
    return windowed("conv", attrs, ins[0], attrs["filters"])


def weights(attrs: dict, c_in: int) -> int:
    kh, kw = attrs["kernel"]
    return kh * kw * (c_in // attrs["groups"]) * attrs["filters"]


def cost(attrs, ins, out):
    c_in = ins[0][0]
    f = attrs["filters"]
    params = weights(attrs, c_in) + (f if attrs["bias"] else 0) + (2 * f if attrs["bn"] is not None else 0)
    kh, kw = attrs["kernel"]
    _, h, w = out
    return params, h * w * f * (c_in // attrs["groups"]) * kh * kw


def weights_only(attrs, params):
    f = attrs["filters"]
    return params - (f if attrs["bias"] else 0) - (2 * f if attrs["bn"] is not None else 0)


def label(a) -> str:
    marks = [str(a["filters"])] + window_marks(a)
    if a["dilation"] != (1, 1):
        marks.append(f"dilation {pair(a['dilation'])}")
    if a["groups"] != 1:
        marks.append(f"groups {a['groups']}")
    if a["act"] is None:
        marks.append("Linear")  # the papers' word for a convolution without activation
    elif a["act"] != "relu":
        marks.append(ACTIVATIONS[a["act"]].label)
    return with_marks(f"{a['kernel'][0]}x{a['kernel'][1]} Conv", marks)


def torch(a, ins, out, lit) -> str:
    wh, ww = windows(a, ins[0])
    args = [lit(ins[0][0]), lit(a["filters"]), lit.pair(a["kernel"])]
    if a["stride"] != (1, 1):
        args.append(lit.pair(a["stride"]))
    if wh.before == wh.after and ww.before == ww.after:
        if wh.before or ww.before:
            args.append("padding=" + lit.pair((wh.before, ww.before)))
    else:  # asymmetric (TF SAME at stride 2, or explicit): pad first, as timm's Conv2dSame
        args.append("pad=" + lit.tuple((ww.before, ww.after, wh.before, wh.after)))
    if a["dilation"] != (1, 1):
        args.append("dilation=" + lit.pair(a["dilation"]))
    if a["groups"] != 1:
        args.append("groups=" + lit(a["groups"]))
    if a["bias"]:
        args.append("bias=True")
    if a["bn"] is not None:
        args.append("bn_eps=" + lit(a["bn"]) + momentum_arg(a["bn_momentum"], lit, "bn_momentum"))
    if a["act"] is not None:
        args.append("act=" + fused_act(a["act"]))
    return f"ConvBnAct({', '.join(args)})"


def fuse_key(a: dict):
    """Convolutions that differ only in filter count fuse along output channels; grouped
    ones would mix their groups, so they do not."""
    if a["groups"] != 1:
        return None
    return tuple((k, v) for k, v in sorted(a.items()) if k != "filters")


def pointwise_linear(a: dict) -> bool:
    """A 1x1, stride 1, bias-free convolution is a per-position linear map over channels."""
    return (a["kernel"] == (1, 1) and a["stride"] == (1, 1) and a["dilation"] == (1, 1) and a["groups"] == 1
            and not a["bias"] and a["pad"] in ("V", "S", (0, 0, 0, 0)))


OPS = (
    Op("conv", "conv", SIGNATURE, shape, label, torch, cost=cost, weights=weights_only, receptive=window_field,
       finish=finish, words=("V", "S", "auto"), fuse_key=fuse_key,
       pointwise_linear=pointwise_linear, defers=lambda a: a["act"] is not None,  # the activation, into the slice
       attributes=("filters", "kernel", "stride", "pad", "dilation", "groups", "bias", "bn", "bn_momentum", "act"),
       example=("conv 3x3 8 /2 S bn = on", "conv 3x3 8 dilation = 2 groups = 2 act = gelu",
                "conv 1x1 8 bn = 0.001 bn_momentum = 0.01")),
)
