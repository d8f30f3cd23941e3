"""Dropout: identity at inference. Attribute: p, the probability of dropping."""
from __future__ import annotations

from ..lang.values import t_prob
from .base import Op, Signature, p_num, same_shape

OPS = (
    Op("dropout", "dropout", Signature({"p": t_prob}, {}, (("p", p_num),), False, "a drop probability"),
       same_shape, lambda a: f"Dropout (keep {1 - a['p']:.4g})", lambda a, ins, out, lit: f"nn.Dropout({lit(a['p'])})",
       head=True, passthrough=True, example=("dropout 0.5",)),
)
