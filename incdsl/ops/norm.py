"""Batch normalisation on its own: gamma and beta per channel are parameters (running
statistics are buffers); they are not weights for `--against`. Attribute: eps."""
from __future__ import annotations

from ..lang.values import t_posfloat
from .base import Op, Signature, p_num, same_shape


def cost(attrs, ins, out):
    return 2 * ins[0][0], 0


def torch(a, ins, out, lit) -> str:
    return f"nn.BatchNorm{2 if len(ins[0]) == 3 else 1}d({lit(ins[0][0])}, eps={lit(a['eps'])})"


OPS = (
    Op("bn", "norm", Signature({"eps": t_posfloat}, {"eps": 1e-5}, (("eps", p_num),), False, "an epsilon"),
       same_shape, lambda a: "BatchNorm", torch, cost=cost, weights=lambda a, params: 0,
       example=("bn",)),
)
