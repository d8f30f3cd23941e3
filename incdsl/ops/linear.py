"""Fully connected layer, optionally followed by an activation.

Parameters ``in * units`` plus a bias of ``units``; MACs ``in * units``.
Attributes: units, bias (bool), act (activation name, or None).
"""
from __future__ import annotations

from ..lang.values import t_bool, t_count
from .activation import ACTIVATIONS, fused_act, t_act
from .base import Op, Signature, p_int
from .marks import with_marks
from .window import ShapeError, fmt


def shape(attrs, ins):
    if len(ins[0]) != 1:
        raise ShapeError(f"`linear` needs a flat input, found {fmt(ins[0])}", hint="insert `flatten` (after `gap`) before `linear`")
    return (attrs["units"],), []


def cost(attrs, ins, out):
    n_in, u = ins[0][0], attrs["units"]
    return n_in * u + (u if attrs["bias"] else 0), n_in * u


def label(a) -> str:
    marks = [str(a["units"])]
    if a["act"]:
        marks.append(ACTIVATIONS[a["act"]].label)
    return with_marks("Linear", marks)


def torch(a, ins, out, lit) -> str:
    args = [lit(ins[0][0]), lit(a["units"])]
    if not a["bias"]:
        args.append("bias=False")
    if a["act"] is not None:
        args.append("act=" + fused_act(a["act"]))
        return f"LinearAct({', '.join(args)})"
    return f"nn.Linear({', '.join(args)})"


OPS = (
    Op("linear", "linear", Signature({"units": t_count, "bias": t_bool, "act": t_act}, {"bias": True, "act": None},
                                     (("units", p_int),), False, "a number of units"),
       shape, label, torch, cost=cost, weights=lambda a, params: params - (a["units"] if a["bias"] else 0),
       head=True, classifier=True, example=("flatten -> linear 7 act = relu",)),
)
