"""Graph rewrites for speed, chosen by `to_torch(optimize=LEVEL)` / `incdsl compile --optimize LEVEL`.

Levels, each exact (same outputs as "none", up to float rounding):

* ``none``: one module per IR node, as the spec writes it.
* ``train``: horizontal fusion. Nodes that read the same tensor and share their op's
  `fuse_key` (convolutions that differ only in filter count: Inception-A's three 1x1s,
  GoogLeNet's 1x1 and reduce convolutions) run as one wider module whose output is split by
  channels. One large matrix product keeps a GPU busier than three narrow ones. Exact in
  training as well, since batch norm is per channel. The state dict keeps the spec's keys and
  order (`layers.fuse_siblings`), so checkpoints, `load_weights` and references fit.
  An average pool before a 1x1 convolution (Inception's pool branch) is moved after it, on
  the convolution's fewer channels, so that convolution joins its siblings too.
* ``infer``: ``train`` plus batch norm folded into the preceding convolution, used in eval mode
  without autograd (`layers.ConvBnAct.fold`); training mode computes as ``train``. And concat
  elision (`deferred_nodes`): in eager inference a concatenation's inputs are written straight
  into their channel slices of its output (a branch's last activation applied with `out=`
  the slice) instead of `torch.cat` copying them. Not under autograd (`out=` is not
  differentiable) nor under `torch.compile`, whose inductor plans concatenations itself.

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
    """Nodes of one owner module that read `input` and run as one module, in graph order.

    `pools[i]` is None, or the `channel_linear` node (an average pool) between `input` and
    member i: the member's linear part runs first, on `input`, with its siblings, and the pool
    after it, on the member's channels alone (`pointwise_linear`: pool(conv(x)) = conv(pool(x))).
    Pooled members come last."""
    owner: str
    input: str
    members: tuple
    pools: tuple


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
        pool = _commuting_pool(graph, node_owner, n, src[0])
        source = inputs(graph, pool)[0] if pool else src[0]
        found.setdefault((node_owner[name], n.aux, source, key), []).append((pool is not None, name, pool))
    groups = []
    for (owner, _, source, _), members in found.items():
        if len(members) > 1:
            members.sort(key=lambda m: m[0])  # stable: graph order, pooled members last
            groups.append(FusionGroup(owner, source, tuple(m for _, m, _ in members), tuple(p for _, _, p in members)))
    return groups


def deferred_nodes(graph, node_owner: dict, head=()) -> frozenset:
    """Concat elision: the nodes whose module is called with `defer=True`, handing the
    concatenation that reads it a `layers.Pending` to write into its slice (op fields `defers`,
    `concat_into`). Such a node's kind defers; a `concat_into` node of feature maps is its only
    reader and reads it once; both run in the same `forward` (same owner module, same aux
    head, neither in the network's head chain)."""
    skip = set(head) | {graph.graph["input"], graph.graph["output"]}
    found = set()
    for name in graph.nodes:
        if name in skip:
            continue
        n = node(graph, name)
        readers = list(graph.successors(name))
        if n.kind.defers is None or not n.kind.defers(n.attrs) or len(set(readers)) != 1:
            continue
        join = node(graph, readers[0])
        if (join.kind.concat_into and join.name not in skip and len(join.shape) == 3
                and inputs(graph, join.name).count(name) == 1
                and node_owner[join.name] == node_owner[name] and join.aux == n.aux):
            found.add(name)
    return frozenset(found)


def _commuting_pool(graph, node_owner: dict, n, src: str) -> str | None:
    """`src`, when it is a channel-linear node that only `n` reads, in `n`'s module, keeping the
    spatial size, and `n` commutes with it; else None."""
    if n.kind.pointwise_linear is None or not n.kind.pointwise_linear(n.attrs):
        return None
    if src == graph.graph["input"] or set(graph.successors(src)) != {n.name}:
        return None
    pool = node(graph, src)
    if pool.kind.channel_linear is None or not pool.kind.channel_linear(pool.attrs):
        return None
    ins = inputs(graph, src)
    if (len(ins) != 1 or node_owner.get(src) != node_owner[n.name] or pool.aux != n.aux
            or graph.nodes[ins[0]]["shape"][1:] != pool.shape[1:]):
        return None
    return src
