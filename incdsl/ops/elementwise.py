"""Joins that combine branches element by element: `mean:` (FractalNet's join), `max:`,
`multiply:` (squeeze-and-excitation, gating) and `gate:` (the highway layer).

    mean(drop_path = 0.15):      # FractalNet, Larsson et al. 2016: the mean of the branches;
        branch: ...              # while training each is dropped with probability 0.15 (for the
        branch: ...              # whole mini-batch, at least one kept: "local" drop-path) and
                                 # the mean is over the kept ones; at inference the plain mean
    mean(drop_path = 0.15, global_path = 0.5):
        branch: ...              # and FractalNet's "global" drop-path: for half the mini-batches
        branch: ...              # (one draw per forward pass) one column, the same input
                                 # position in every such join of the network, is kept alone
    mean(flat = yes):            # one mean of three inputs, (a + b + c) / 3: the second branch
        branch: conv 3x3 4 S     # ends in a mean of its own, whose inputs take its place here
        branch:                  # (nested, `mean:` would give (a + (b + c) / 2) / 2)
            mean:
                branch: conv 1x1 4
                branch: conv 3x3 4 S
    multiply:                    # element-wise product; a Cx1x1 branch is broadcast over HxW
        branch: identity
        branch: gap -> conv 1x1 4 -> conv 1x1 16 act = sigmoid
    gate:                        # three branches T, H, X: T * H + (1 - T) * X
        branch: conv 3x3 16 S act = sigmoid     # T, the transform gate (Srivastava et al. 2015)
        branch: conv 3x3 16 S                   # H
        branch: identity                        # X, carried where T is 0

`global_path = G` (mean only; FractalNet's global sampling, Larsson et al. 2016, section 3.1: "a
single path is selected for the entire network ... restricted to be a single column"): while
training, once per forward pass of the network, a column j is drawn uniformly from 0..K-1 (K the
most inputs of any such join) and a number u from [0, 1); every join with u < G keeps only its
input j, the same j in all joins (one mini-batch, one column: as the Keras port of the paper,
snf/keras-fractalnet, and the per-batch variant of khanrc/pt.fractalnet). A join with fewer than
j + 1 inputs lies off that column's path; it does local drop-path as usual (nothing on the path
reads it). Columns are input positions, so the deepest column must come first in every join:
FractalNet's rule written as below (`fractal(c - 1) -> fractal(c - 1)` before `conv`) with
`flat = yes` makes input j of every join the (j+1)-th deepest column, at every level. At
inference the join is the plain mean.

`flat = yes` (mean and max; as Mathematica's `Flat` attribute of associative functions): where
a branch's output is a join of the same kind that the branch's own statements made (its last
statement, or the last statement of the block it calls last; with or without `flat`), lowering
keeps no node for that join: its inputs, in order, take its place among this join's inputs.
Merging repeats up a recursion, so FractalNet's rule f_{C+1}(z) = join(f_C(f_C(z)), conv(z))
written once gives one join of every column that ends at a level: each weighted alike, each
dropped on its own by local drop-path (at least one of all kept). A merged join must have this
join's arguments (`drop_path`) and be read by nothing else (an auxiliary head): otherwise an
error at the branch. A branch that ends in anything else, or in a join made before the branch
began (`branch: take m`), is one input as usual. Parameters, MACs and shapes are those of
the plain join. `ir/lower.py` does it (`merge_flat`); no node keeps the option.

Attributes: mean drop_path (the drop probability, 0 for none) and global_path (the share of
mini-batches that keep one column, 0 for none); the others none.
Parameters: none. MACs: none: element-wise sums, products, maxima and means are free by the
convention of `passes/cost.py` (as residual sums are; torch's flop counter agrees), and
drop-path changes no count.
"""
from __future__ import annotations

from ..lang.values import show, t_bool, t_prob
from .base import NO_ARGS, Op, Signature, p_num
from .marks import num
from .window import ShapeError, fmt


def same_shapes(kind: str):
    def rule(attrs, ins):
        if len(set(ins)) > 1:
            raise ShapeError(f"the branches of `{kind}` have different shapes",
                             notes=tuple(f"branch {i} gives {fmt(s)}" for i, s in enumerate(ins)),
                             hint=f"`{kind}` combines tensors element by element: every branch must give the same shape")
        return ins[0], []
    return rule


def broadcast_shape(attrs, ins):
    """The product's shape: inputs agree, except that a Cx1x1 input spreads over any HxW."""
    out = max(ins, key=lambda s: s[1] * s[2] if len(s) == 3 else 0)
    for s in ins:
        if s != out and not (len(s) == 3 == len(out) and s[0] == out[0] and s[1:] == (1, 1)):
            raise ShapeError("the branches of `multiply` have shapes it cannot combine (only Cx1x1 spreads)",
                             notes=tuple(f"branch {i} gives {fmt(x)}" for i, x in enumerate(ins)),
                             hint=f"each branch must give {fmt(out)}, or {out[0]}x1x1 to scale each channel")
    return out, []


def gate_shape(attrs, ins):
    if len(ins) != 3:
        raise ShapeError(f"`gate` takes three branches (T, H, X), found {len(ins)}",
                         hint="write the gate T first, then the transform H, then the carried input X")
    return same_shapes("gate")(attrs, ins)


def joined_field(attrs, fields, ins, out) -> tuple:
    """The widest of the inputs' fields; none when an input sees the whole image (a gap branch)."""
    if any(not f for f in fields):
        return ()
    return tuple(max(f[i] for f in fields) for i in range(4))


def t_share(v):
    """A probability in [0, 1]: 1 makes every mini-batch train one column."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1:
        return float(v)
    raise TypeError(f"expected a probability in [0, 1], found `{show(v)}`")


def mean_label(a) -> str:
    marks = ([f"drop-path {num(a['drop_path'])}"] if a["drop_path"] else []) + \
            ([f"global {num(a['global_path'])}"] if a["global_path"] else [])
    return f"Mean ({', '.join(marks)})" if marks else "Mean"


def mean_torch(a, ins, out, lit) -> str:
    if a["global_path"]:
        # `inputs`: the network draws its column among as many as its widest such join has
        return f"Mean({lit(a['drop_path'])}, global_path={lit(a['global_path'])}, inputs={len(ins)})"
    return f"Mean({lit(a['drop_path'])})" if a["drop_path"] else "Mean()"


TWO = ("    branch: conv 3x3 4 S", "    branch: conv 1x1 4")  # two branches for the examples
# a flat mean whose second branch ends in a mean of two: one node, the mean of three
FLAT_EXAMPLE = ("mean(flat = yes, drop_path = 0.1):", "    branch: conv 3x3 4 S", "    branch:", "        conv 1x1 4",
                "        mean(drop_path = 0.1):", "            branch: conv 3x3 4 S", "            branch: identity")


OPS = (
    # `flat = yes` is lowering's (`ir/lower.py`, `merge_flat`): the nodes keep only `attributes`
    Op("mean", "concat", Signature({"drop_path": t_prob, "global_path": t_share, "flat": t_bool},
                                   {"drop_path": 0.0, "global_path": 0.0, "flat": False},
                                   (("drop_path", p_num),), False, "a drop-path probability"),
       same_shapes("mean"), mean_label, mean_torch, arity=None, receptive=joined_field,
       join=lambda attrs, n: {"drop_path": attrs["drop_path"], "global_path": attrs["global_path"]},
       min_branches=2, attributes=("drop_path", "global_path"), network_draw=lambda a: a["global_path"] > 0,
       example=("mean:", *TWO, "mean(drop_path = 0.15):", *TWO, *FLAT_EXAMPLE,
                "mean(drop_path = 0.15, global_path = 0.5):", *TWO)),
    Op("max", "concat", Signature({"flat": t_bool}, {"flat": False}),
       same_shapes("max"), lambda a: "Max", lambda a, ins, out, lit: "Max()",
       arity=None, receptive=joined_field, join=lambda attrs, n: {}, min_branches=2, attributes=(),
       example=("max:", *TWO, "max(flat = yes):", "    branch: conv 3x3 4 S", "    branch:",
                "        max:", "            branch: conv 1x1 4", "            branch: conv 3x3 4 S")),
    Op("multiply", "concat", NO_ARGS, broadcast_shape, lambda a: "Multiply", lambda a, ins, out, lit: "Multiply()",
       arity=None, receptive=joined_field, join=lambda attrs, n: {}, min_branches=2,
       example=("multiply:", *TWO, "multiply:", "    branch: identity",
                "    branch: gap -> conv 1x1 2 -> conv 1x1 4 act = sigmoid")),
    Op("gate", "concat", NO_ARGS, gate_shape, lambda a: "Gate: T * H + (1 - T) * X",
       lambda a, ins, out, lit: "Gate()", arity=None, receptive=joined_field, join=lambda attrs, n: {},
       min_branches=3,
       example=("gate:", "    branch: conv 3x3 4 S act = sigmoid", "    branch: conv 1x1 4", "    branch: identity")),
)
