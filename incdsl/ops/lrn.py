"""Local response normalisation across channels (AlexNet, GoogLeNet): no parameters.

Attributes: size (channels in the window), alpha, beta, k (torch's `LocalResponseNorm`).
"""
from __future__ import annotations

from ..lang.values import t_count, t_posfloat
from .base import Op, Signature, p_int
from .window import spatial


def shape(attrs, ins):
    return spatial("lrn", ins[0]), []


def torch(a, ins, out, lit) -> str:
    return f"nn.LocalResponseNorm({lit(a['size'])}, alpha={lit(a['alpha'])}, beta={lit(a['beta'])}, k={lit(a['k'])})"


OPS = (
    Op("lrn", "norm", Signature({"size": t_count, "alpha": t_posfloat, "beta": t_posfloat, "k": t_posfloat},
                                {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}, (("size", p_int),), False,
                                "a window size"),
       shape, lambda a: "LocalRespNorm", torch, example=("lrn 3",)),
)
