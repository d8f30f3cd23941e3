"""Upsampling by a factor or to a size, nearest or bilinear: `upsample 2`,
`upsample to 32x32 mode = bilinear`; torch's `nn.Upsample` (align_corners=False).

`to` is a bare word like `V` or `relu` (so the grammar needs no keyword, which would slow
the lexer on every name): it fills its own slot, and only a size may follow it.

Attributes: factor (int, or None), size ((h, w), or None): exactly one is set; mode
"nearest" | "bilinear". No parameters. MACs: none, also for bilinear: interpolation counts as free, as pooling does
(`passes/cost.py` counts convolutions and linear layers only; torch's flop counter agrees).

Receptive field, in input pixels: one output pixel reads one input pixel (nearest) or two
neighbours per axis (bilinear, when the size changes); the jump between output pixels
shrinks by the scale, so it becomes a fraction.
"""
from __future__ import annotations

from ..lang.values import Sym, show, t_count, t_pair
from .base import Op, Signature, p_dims, p_int
from .window import spatial

MODES = ("nearest", "bilinear")
TO = "to"


def t_mode(v):
    if isinstance(v, Sym) and v in MODES:
        return str(v)
    raise TypeError(f"expected {' or '.join(MODES)}, found `{show(v)}`")


def t_to(v):
    if isinstance(v, Sym) and v == TO:
        return True
    raise TypeError(f"expected the word `to` before a size, found `{show(v)}`")


def p_to(v):
    return isinstance(v, Sym) and v == TO


def finish(attrs: dict) -> dict:
    if attrs.pop("to") and attrs["size"] is None:
        raise TypeError("`upsample to` needs a size such as `32x32`")
    if attrs["factor"] is None and attrs["size"] is None:
        raise TypeError("`upsample` needs a factor (`upsample 2`) or a size (`upsample to 32x32`)")
    if attrs["factor"] is not None and attrs["size"] is not None:
        raise TypeError("`upsample` takes a factor or a size, not both")
    return attrs


def shape(attrs, ins):
    c, h, w = spatial("upsample", ins[0])
    if attrs["size"] is not None:
        return (c, *attrs["size"]), []
    return (c, h * attrs["factor"], w * attrs["factor"]), []


def field(attrs, fields, ins, out) -> tuple:
    from fractions import Fraction  # only here: importing it costs `check` a few milliseconds
    rf_h, rf_w, j_h, j_w = fields[0]
    (_, h, w), (_, oh, ow) = ins[0], out
    two = attrs["mode"] == "bilinear"
    return (rf_h + (j_h if two and oh != h else 0), rf_w + (j_w if two and ow != w else 0),
            j_h * Fraction(h, oh), j_w * Fraction(w, ow))


def label(a) -> str:
    head = "Bilinear Upsample" if a["mode"] == "bilinear" else "Upsample"
    return f"{head} to {a['size'][0]}x{a['size'][1]}" if a["size"] is not None else f"{head} x{a['factor']}"


def torch(a, ins, out, lit) -> str:
    how = f"size={lit.pair(a['size'])}" if a["size"] is not None else f"scale_factor={lit(a['factor'])}"
    corners = ", align_corners=False" if a["mode"] == "bilinear" else ""
    return f'nn.Upsample({how}, mode="{a["mode"]}"{corners})'


OPS = (
    Op("upsample", "pool", Signature({"factor": t_count, "size": t_pair, "mode": t_mode, "to": t_to},
                                     {"factor": None, "size": None, "mode": "nearest", "to": False},
                                     (("factor", p_int), ("to", p_to), ("size", p_dims)), False,
                                     "a factor such as `2` or a size such as `to 32x32`"),
       shape, label, torch, receptive=field, finish=finish, words=(*MODES, TO),
       attributes=("factor", "size", "mode"),
       example=("upsample 2", "upsample to 20x24 mode = bilinear")),
)
