"""The `Op` record, the argument `Signature` it holds, and the default rules records share."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..lang.values import Dims, Sym

Shape = tuple  # (c, h, w) or (n,)


@dataclass(frozen=True)
class Signature:
    """What one op accepts. `positional` slots are filled by the first that accepts a value's type."""
    keywords: dict  # name -> type checker (returns the normalised value or raises TypeError)
    defaults: dict  # name -> normalised default (absent: required)
    positional: tuple = ()  # (name, predicate)
    stride: bool = False
    describe: str = ""


NO_ARGS = Signature({}, {})


# positional slot predicates: which slot a positional value fills

def p_dims(v):
    return isinstance(v, Dims) and len(v) == 2


def p_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def p_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def p_padsym(v):
    return isinstance(v, Sym) and v in ("V", "S")


def same_shape(attrs: dict, ins: list) -> tuple[Shape, list[str]]:
    return ins[0], []


def free(attrs: dict, ins: list, out: Shape) -> tuple[int, int]:
    """No parameters, no multiply-adds (the convention of `passes/cost.py`)."""
    return 0, 0


def all_weights(attrs: dict, params: int) -> int:
    return params


def keep_field(attrs: dict, fields: list, ins: list, out: Shape) -> tuple:
    """Receptive field unchanged: one output position sees one input position."""
    return fields[0]


def as_is(attrs: dict) -> dict:
    return attrs


@dataclass(frozen=True)
class Op:
    """Everything about one node kind.

    name       the node kind, as the IR and the language write it
    family     diagram style family (`render/style.py` colours it)
    signature  the arguments the language accepts, with checks and defaults
    shape      (attrs, input shapes) -> (output shape, warnings); raises ShapeError
    label      attrs -> the diagram's box text
    torch      (attrs, input shapes, output shape, lits) -> constructor source text
               (`backends/plan.Lits` marks numbers); None: the kind compiles to no module.
               Generated `forward` code calls every module alike: `y = self.path(x1, x2)`,
               inputs in edge order
    arity      number of inputs; None: two or more (joins)
    cost       (attrs, input shapes, output shape) -> (parameters, MACs)
    weights    (attrs, parameters) -> parameters less biases and norm scales/shifts (`--against`)
    receptive  (attrs, input fields, input shapes, output shape) -> field (rf_h, rf_w, jump_h,
               jump_w), in input pixels; see `passes/cost.py`. A flat output has no field
    finish     attrs -> attrs: lowering's last normalisation of the bound arguments; raises
               TypeError (the whole message) when arguments do not fit together
    aliases    other names that spell this op with fixed arguments: `relu` -> act(fn = relu)
    words      bare words its arguments accept as values (`bilinear`)
    group      `with GROUP(...)` sets defaults for every op of the group (`pool`)
    head       may run in the network's `forward_head` (after features are pooled)
    head_start a head chain starts at this op (`gap`, `flatten`)
    passthrough a classifier is still the one before this op (`softmax`, `dropout`)
    classifier the op is a classifier that `reset_classifier` may replace
    elided     at network level only its arrow is drawn (it reshapes, computes nothing)
    join       (bound attrs, number of branches) -> node attrs, for kinds written as a
               statement with branches (`concat:`, `add:`); None for layers
    min_branches  fewest branches the statement takes
    aligned    branches must agree in height and width (reported at the branch that differs)
    attributes the IR attribute names of its nodes; None: the signature's keywords
    example    the smallest statement that uses the op (lines of a network body, after
               `input 4x15x15`): `tests/test_ops.py` checks, costs, draws and compiles it
    post_act   attrs -> activation drawn as its own box after this one, or None
    edge_note  (attrs, input index) -> note on that input's arrow, or None
    fuse_key   attrs -> a hashable key, or None: nodes of this kind that read the same tensor
               and share a key run as one module whose output channels are theirs, in order
               (horizontal fusion, `torch/rewrite.py`; the layer class must merge: see
               `FusedConvBnAct`); None: never fused
    channel_linear  attrs -> whether the node maps each channel linearly, zeros to zeros
               (average pooling): a `pointwise_linear` node after it may run before it
    pointwise_linear  attrs -> whether the node starts with a bias-free 1x1 linear map over
               channels (a 1x1 convolution before its norm and activation): it commutes with
               a `channel_linear` node before it, so it can fuse with that node's siblings
    network_draw  attrs -> whether the node's module reads the network's one random draw per
               forward pass (`Mean` with global drop-path: the network then shares a
               `ColumnDraw` and draws before its trunk runs)
    defers     attrs -> whether the node's module, called with `defer=True`, may leave its last
               step to the `concat_into` node that alone reads it, in eager inference (level
               infer): it returns a `layers.Pending` (an activation not yet applied, a nested
               concatenation's parts) that the join writes straight into its channel slice of
               the output, so no copy is made (concat elision, `torch/rewrite.py`); None: never
    concat_into  the node joins its inputs along channels into a new tensor and takes the
               `Pending` inputs of `defers` nodes
    """
    name: str
    family: str
    signature: Signature
    shape: Callable
    label: Callable
    torch: Callable | None
    arity: int | None = 1
    cost: Callable = free
    weights: Callable = all_weights
    receptive: Callable = keep_field
    finish: Callable = as_is
    aliases: dict = field(default_factory=dict)
    words: tuple = ()
    group: str | None = None
    head: bool = False
    head_start: bool = False
    passthrough: bool = False
    classifier: bool = False
    elided: bool = False
    attributes: tuple | None = None
    example: tuple = ()
    join: Callable | None = None
    min_branches: int = 1
    aligned: bool = False
    post_act: Callable | None = None
    edge_note: Callable | None = None
    fuse_key: Callable | None = None
    channel_linear: Callable | None = None
    pointwise_linear: Callable | None = None
    network_draw: Callable | None = None
    defers: Callable | None = None
    concat_into: bool = False

    @property
    def attribute_names(self) -> tuple:
        """What `attrs` holds on a node of this kind (`ir.lint` checks it)."""
        return self.attributes if self.attributes is not None else tuple(self.signature.keywords)
