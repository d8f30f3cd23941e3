"""Kinds that move values without computing: the network's input, flatten, identity, softmax.

Attributes: the input's shape (c, h, w); the others have none.
"""
from __future__ import annotations

from .base import NO_ARGS, Op, Signature, same_shape
from .marks import hwc


def input_shape(attrs, ins):
    return tuple(attrs["shape"]), []


def flatten_shape(attrs, ins):
    n = 1
    for v in ins[0]:
        n *= v
    return (n,), []


OPS = (
    # `input` is written as its own statement (`input 3x224x224`), not as a layer
    Op("input", "input", Signature({}, {}), input_shape, lambda a: f"Input ({hwc(a['shape'])})", None, arity=0,
       attributes=("shape",)),
    Op("flatten", "reshape", NO_ARGS, flatten_shape, lambda a: "Flatten", lambda a, ins, out, lit: "nn.Flatten()",
       head=True, head_start=True, elided=True, example=("flatten",)),
    Op("identity", "reshape", NO_ARGS, same_shape, lambda a: "Identity", lambda a, ins, out, lit: "nn.Identity()",
       head=True, passthrough=True, elided=True, example=("identity",)),
    Op("softmax", "linear", NO_ARGS, same_shape, lambda a: "Softmax", lambda a, ins, out, lit: "nn.Softmax(dim=1)",
       head=True, passthrough=True, example=("softmax",)),
)
