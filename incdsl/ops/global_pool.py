"""Global average pooling to C x 1 x 1 (free, as all pooling). No attributes."""
from __future__ import annotations

from .base import NO_ARGS, Op
from .window import spatial


def shape(attrs, ins):
    return (spatial("gap", ins[0])[0], 1, 1), []


def no_field(attrs, fields, ins, out) -> tuple:
    """Every output sees the whole input: a receptive field is no longer meaningful."""
    return ()


OPS = (
    Op("gap", "pool", NO_ARGS, shape, lambda a: "Global Avg Pooling", lambda a, ins, out, lit: "nn.AdaptiveAvgPool2d(1)",
       receptive=no_field, aliases={"global_avgpool": {}}, head=True, head_start=True, example=("gap",)),
)
