"""PReLU: a ReLU whose negative slope is learned, one per channel (He et al. 2015, "Delving
Deep into Rectifiers"); torch's `nn.PReLU(num_parameters=C)`.

Parameters: C slopes (weights for `--against`). MACs: none, as for every activation.
No attributes: C is the input's depth.
"""
from __future__ import annotations

from .base import NO_ARGS, Op, same_shape


def cost(attrs, ins, out):
    return ins[0][0], 0


def torch(a, ins, out, lit) -> str:
    return f"nn.PReLU(num_parameters={lit(ins[0][0])})"


OPS = (
    Op("prelu", "act", NO_ARGS, same_shape, lambda a: "PReLU activation", torch, cost=cost,
       example=("prelu",)),
)
