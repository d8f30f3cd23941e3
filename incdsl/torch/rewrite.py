"""Graph rewrites for speed, chosen by `to_torch(optimize=LEVEL)` / `incdsl compile --optimize LEVEL`.

Levels, each exact (same outputs as "none", up to float rounding):

* ``none``: one module per IR node, as the spec writes it.
* ``train``: horizontal fusion. Nodes that read the same tensor and share their op's
  `fuse_key` (convolutions that differ only in filter count: Inception-A's three 1x1s,
  GoogLeNet's 1x1 and reduce convolutions) run as one wider module whose output is split by
  channels. One large matrix product keeps a GPU busier than three narrow ones. Exact in
  training as well, since batch norm is per channel. The state dict keeps the spec's keys and
  order (`layers.fuse_siblings`), so checkpoints, `load_weights` and references fit.
* ``infer``: ``train`` plus batch norm folded into the preceding convolution, used in eval mode
  without autograd (`layers.ConvBnAct.fold`); training mode computes as ``train``.

This module plans the rewrites from the IR alone (no torch): `source.py` prints the plan into
the generated classes, and the layer classes apply it when the network is built.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import inputs, node

LEVELS = ("none", "train", "infer")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"optimize must be one of {', '.join(map(repr, LEVELS))}, got {level!r}")
    return level


@dataclass(frozen=True)
class FusionGroup:
    """Nodes of one owner module that read `input` and run as one module, in graph order."""
    owner: str
    input: str
    members: tuple


def fusion_groups(graph, node_owner: dict, head=()) -> list[FusionGroup]:
    """The horizontal fusions of a graph: per owner module (they must share a `forward`), per
    aux head (the network's trunk and heads run in separate methods), per input and fuse key,
    the nodes of two or more. Nodes of the network's head chain (`head`) stay as they are."""
    found: dict[tuple, list] = {}
    skip = set(head) | {graph.graph["input"]}
    for name in graph.nodes:
        if name in skip:
            continue
        n = node(graph, name)
        key = n.kind.fuse_key(n.attrs) if n.kind.fuse_key is not None else None
        src = inputs(graph, name)
        if key is None or len(src) != 1:
            continue
        found.setdefault((node_owner[name], n.aux, src[0], key), []).append(name)
    return [FusionGroup(owner, src, tuple(members))
            for (owner, _, src, _), members in found.items() if len(members) > 1]
