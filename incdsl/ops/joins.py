"""Kinds with several inputs, written as statements with branches: `concat:` joins along
channels in branch order; `add:` and `residual:` sum, ``act(sum(scale_i * input_i))``;
`add(weights = (0.5, 0.25, 0.25)):` gives the scales, one number per branch (a weighted sum).

Attributes: concat none (its inputs are joined in edge-index order); add scales (one float
per input) and act (activation name, or None).
"""
from __future__ import annotations

from ..lang.values import show, t_bool, t_weight
from .activation import fused_act, p_act, t_act
from .base import Op, Signature
from .marks import num
from .window import ShapeError, fmt


def concat_shape(attrs, ins):
    ranks = {len(s) for s in ins}
    if ranks != {len(ins[0])}:
        raise ShapeError("concat branches mix flat vectors and feature maps")
    if len(ins[0]) == 3:
        sizes = {s[1:] for s in ins}
        if len(sizes) > 1:
            raise ShapeError("concat branches disagree in spatial size",
                             notes=tuple(f"branch {i} gives {fmt(s)}" for i, s in enumerate(ins)))
        return (sum(s[0] for s in ins),) + ins[0][1:], []
    return (sum(s[0] for s in ins),), []


def t_weights(v):
    if not isinstance(v, tuple) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise TypeError(f"expected one number per branch, such as `(0.5, 0.25, 0.25)`, found `{show(v)}`")
    return tuple(t_weight(x) for x in v)


def add_shape(attrs, ins):
    if len(attrs["scales"]) != len(ins):
        raise ShapeError(f"`add` has {len(ins)} branches but {len(attrs['scales'])} weights",
                         hint="give one weight per branch, in branch order")
    if len(set(ins)) > 1:
        raise ShapeError("the tensors summed have different shapes",
                         notes=tuple(f"input {i} is {fmt(s)}" for i, s in enumerate(ins)))
    return ins[0], []


def widest_field(attrs, fields, ins, out) -> tuple:
    """The widest of the inputs' fields; none when an input sees the whole image (a residual
    around squeeze-and-excitation, whose channel scales come from a global pool)."""
    if any(not f for f in fields):
        return ()
    return tuple(max(v[i] for v in fields) for i in range(4))


def add_torch(a, ins, out, lit) -> str:
    act = ", act=" + fused_act(a["act"]) if a["act"] is not None else ""
    return f"Add({lit.tuple(a['scales'])}{act})"


def scale_note(attrs, index: int) -> str | None:
    """The mark on a summed input's arrow: the scale of a residual branch."""
    scale = attrs["scales"][index]
    return f"scale {num(scale)}" if scale != 1.0 else None


# `residual(...)`, a statement that makes an `add` node of (shortcut, scale * branch), is in `residual.py`

OPS = (
    # `concat(pad = yes)`: lowering zero-pads smaller branches to the largest (`ops/slicing.py`)
    Op("concat", "concat", Signature({"pad": t_bool}, {"pad": False}, (), False, "`pad = yes`"), concat_shape,
       lambda a: "Filter concat", lambda a, ins, out, lit: "Concat()", attributes=(),
       arity=None, receptive=widest_field, join=lambda attrs, n: {}, aligned=True,
       concat_into=True, defers=lambda a: True,  # a nested concat: its parts, into the outer slice
       example=("concat:", "    branch: conv 1x1 3", "    branch: conv 3x3 2 S -> conv 3x3 2 S", "    branch: maxpool 3x3 S")),
    Op("add", "add", Signature({"act": t_act, "weights": t_weights}, {"act": None, "weights": None}, (("act", p_act),),
                               False, "an activation"),
       add_shape, lambda a: "+", add_torch, arity=None, receptive=widest_field,
       join=lambda attrs, n: {"scales": attrs["weights"] or tuple(1.0 for _ in range(n)), "act": attrs["act"]},
       min_branches=2,
       post_act=lambda a: a["act"], edge_note=scale_note, attributes=("scales", "act"),
       example=("add(relu):", "    branch: conv 3x3 4 S", "    branch: conv 1x1 4", "residual(0.2):", "    conv 3x3 4 S",
                "add(weights = (0.5, 0.25, 0.25)):", "    branch: identity", "    branch: conv 1x1 4",
                "    branch: conv 3x3 4 S")),
)
