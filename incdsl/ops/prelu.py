"""PReLU: a ReLU whose negative slope is learned (He et al. 2015, "Delving Deep into
Rectifiers", section 2.1): one slope per channel (`prelu`, the paper's channel-wise form) or
one for the whole layer (`prelu shared = yes`, its channel-shared form); torch's
`nn.PReLU(num_parameters=C or 1)`, slopes starting at 0.25 as in the paper.

Attribute: shared (bool). Parameters: C slopes, or 1 (weights for `--against`). MACs: none,
as for every activation.
"""
from __future__ import annotations

from ..lang.values import t_bool
from .base import Op, Signature, same_shape


def slopes(attrs, ins) -> int:
    return 1 if attrs["shared"] else ins[0][0]


def cost(attrs, ins, out):
    return slopes(attrs, ins), 0


def torch(a, ins, out, lit) -> str:
    return f"nn.PReLU(num_parameters={lit(slopes(a, ins))})"


def label(a) -> str:
    return "PReLU activation (shared)" if a["shared"] else "PReLU activation"


OPS = (
    Op("prelu", "act", Signature({"shared": t_bool}, {"shared": False}, (), False, "`shared = yes` for one slope"),
       same_shape, label, torch, cost=cost, example=("prelu", "prelu shared = yes")),
)
