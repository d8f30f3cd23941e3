"""The table: node kind -> `Op`, built once from the family modules' records.

To add a kind: write its module (one `OPS` tuple of records) and list it in `FAMILIES`.
"""
from __future__ import annotations

from . import activation
from . import adaptive_pool
from . import conv
from . import dropout
from . import elementwise
from . import global_pool
from . import joins
from . import learned_scale
from . import linear
from . import lrn
from . import norm
from . import pad
from . import pooling
from . import prelu
from . import reshape
from . import shuffle
from . import slicing
from . import stochastic
from . import upsample
from .base import Op

FAMILIES = (reshape, conv, pooling, global_pool, lrn, norm, activation, prelu, dropout, linear, joins, elementwise, upsample, pad,
            adaptive_pool, stochastic, learned_scale, slicing, shuffle)

OPS: dict[str, Op] = {op.name: op for family in FAMILIES for op in family.OPS}

# Layer names the language accepts in a chain: kinds with one input, and their aliases.
ALIASES: dict[str, tuple[str, dict]] = {alias: (op.name, fixed) for op in OPS.values()
                                        for alias, fixed in op.aliases.items()}
LAYER_OPS: frozenset = frozenset({name for name, op in OPS.items() if op.arity == 1} | set(ALIASES))

# Bare words that are values (`relu`, `V`, `bilinear`): reserved, never names.
SYMBOLS: frozenset = frozenset(word for op in OPS.values() for word in op.words)

# `with GROUP(...)` names: a group (`pool`) stands for all its kinds.
GROUPS: dict[str, list[str]] = {group: [name for name, op in OPS.items() if op.group == group]
                                 for group in sorted({op.group for op in OPS.values() if op.group})}
