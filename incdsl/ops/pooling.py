"""Max and average pooling over a window: no parameters, no MACs (pooling is free by the
convention of `passes/cost.py`).

Attributes: kernel (kh, kw), stride (sh, sw), pad (as conv's), ceil (bool: round the output
size up); avgpool also count_pad (bool: padded zeros count in the divisor).
"""
from __future__ import annotations

from ..ir.names import literal
from ..lang.values import t_bool, t_pad, t_pair
from .base import Op, Signature, p_dims, p_int, p_padsym
from .marks import window_marks, with_marks
from .window import ShapeError, spatial, window_field, windowed, windows

_KEYWORDS = {"kernel": t_pair, "stride": t_pair, "pad": t_pad, "ceil": t_bool}
_DEFAULTS = {"stride": (1, 1), "pad": "V", "ceil": False}
_POSITIONAL = (("kernel", p_dims), ("kernel", p_int), ("pad", p_padsym))
_DESCRIBE = "a window such as `3x3`, a stride such as `/2` and a padding `V` or `S`"


def _shape(op: str):
    def rule(attrs, ins):
        spatial(op, ins[0])
        kh, kw = attrs["kernel"]
        pad = attrs["pad"]
        if isinstance(pad, tuple) and (max(pad[0], pad[1]) > kh // 2 or max(pad[2], pad[3]) > kw // 2):
            raise ShapeError(f"`{op}` padding {pad} is more than half the {kh}x{kw} window",
                             hint="pooling windows must not see only padding; use less padding")
        return windowed(op, attrs, ins[0], ins[0][0])
    return rule


def _label(name: str):
    def label(a) -> str:
        marks = window_marks(a)
        if a["ceil"]:
            marks.append("ceil")
        return with_marks(f"{a['kernel'][0]}x{a['kernel'][1]} {name}", marks)
    return label


def _torch(kind: str):
    def make(a, ins, out, lit) -> str:
        wh, ww = windows(a, ins[0])
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        count_pad = a.get("count_pad", True)
        if wh.before == wh.after and ww.before == ww.after:
            args = [lit.pair(a["kernel"]), lit.pair(a["stride"])]
            if wh.before or ww.before:
                args.append("padding=" + lit.pair((wh.before, ww.before)))
            if a["ceil"]:
                args.append("ceil_mode=True")
            if kind == "avg" and not count_pad:
                args.append("count_include_pad=False")
            return f"nn.{kind.capitalize()}Pool2d({', '.join(args)})"
        # asymmetric: pad explicitly, adding the trailing rows that ceil rounding reaches
        _, h, w = ins[0]
        extra_h = max(0, (out[1] - 1) * sh + kh - (h + wh.before + wh.after))
        extra_w = max(0, (out[2] - 1) * sw + kw - (w + ww.before + ww.after))
        pad = (ww.before, ww.after + extra_w, wh.before, wh.after + extra_h)
        args = [literal(kind, quote='"'), lit.pair(a["kernel"]), lit.pair(a["stride"]), "pad=" + lit.tuple(pad)]
        if kind == "avg":
            args += ["in_size=" + lit.tuple((h, w)), "counted=" + lit.tuple((ww.before, ww.after, wh.before, wh.after))]
            if not count_pad:
                args.append("count_pad=False")
        return f"PaddedPool({', '.join(args)})"
    return make


OPS = (
    Op("maxpool", "pool", Signature(dict(_KEYWORDS), dict(_DEFAULTS), _POSITIONAL, True, _DESCRIBE),
       _shape("maxpool"), _label("MaxPool"), _torch("max"), receptive=window_field, group="pool",
       words=("V", "S"), example=("maxpool 3x3 /2", "maxpool 3x3 /2 S ceil = yes")),
    Op("avgpool", "pool", Signature({**_KEYWORDS, "count_pad": t_bool}, {**_DEFAULTS, "count_pad": True},
                                    _POSITIONAL, True, _DESCRIBE),
       _shape("avgpool"), _label("Avg Pooling"), _torch("avg"), receptive=window_field, group="pool",
       channel_linear=lambda a: True,  # a weighted sum per channel, zero padding included
       words=("V", "S"), example=("avgpool 3x3 /2 S count_pad = no", "avgpool 5x5 pad = 1")),
)
