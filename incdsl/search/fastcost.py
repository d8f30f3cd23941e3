"""Parameters and multiply-adds of a resolved program, fast enough to score thousands of points.

`cost_lowerer` gives the core `Lowerer` (so every check, every rule and every name is the same)
with two parts of its own, passed in rather than written over the core's:

* a `CostSink` instead of the IR graph: the sink keeps each node's attributes (lowering reads
  shapes back) and adds up its cost as it comes (the closed forms of `passes/cost.py`), with
  no networkx graph and no edges;
* a `CostMemo` (the `ir.sink.Memo` protocol) over block instances and layers. A block
  instance's cost and output shape depend only on the block's (resolved) definition, its
  arguments, its input shape, the scoped defaults in force and whether it sits in an
  auxiliary head, so an instance seen before (the second to fourth Inception-A of a repeat,
  the fixed stem of every point) costs one look-up and a placeholder node instead of being
  lowered again. A layer's node is fixed by the values of the names its arguments read, its
  input shape, `in` (if read) and the defaults in force; a layer seen before is named and
  added (by the core's naming, so its rules still apply) without binding and checking its
  arguments again.

A memoised result was computed, and checked, by the core rules the first time, so a point
is rejected exactly when the full lowering rejects it (one exception: the limit on
layers counts the layers actually made, a memoised block as one). The memo outlives one point: `Space`
keeps it, and resolved definitions keep their identity across points. Blocks holding a
label that an `aux ... from LABEL` head taps are never memoised (the tap must find the node).
"""
from __future__ import annotations

from typing import NamedTuple

from ..lang import syntax as s
from ..lang.walk import iter_exprs, iter_statements
from ..ir.lower import MAX_LAYERS, Lowerer
from ..ir.sink import Memo
from ..passes.cost import node_params_macs

MEMO_LIMIT = 30_000  # entries (~2 KB each); the memo is cleared when it grows past this


class Cost(NamedTuple):
    """Trunk totals (auxiliary heads excluded), as `incdsl cost` and `incdsl check` report them;
    a pair, so ``params, macs = space.cost(point)`` works."""
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


def freeze(value):
    """A hashable key for a value, keeping types apart (True vs 1, 1 vs 1.0, `in.c` vs 384)."""
    if isinstance(value, tuple):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def tapped_labels(program) -> set[str]:
    """Labels named by `aux ... from LABEL` anywhere in the program."""
    return {st.tap for d in [program.network, *program.blocks.values()] if d is not None
            for st in iter_statements(d.body) if isinstance(st, s.AuxStmt) and st.tap}


def uncacheable_blocks(program) -> set[str]:
    """Blocks whose bodies (or the blocks they call) define a tapped label."""
    taps = tapped_labels(program)
    if not taps:
        return set()
    calls, labelled = {}, set()
    for name, d in program.blocks.items():
        found, names = [], set()
        _labels_and_calls(d.body, found, names)
        calls[name] = names
        if taps & set(found):
            labelled.add(name)
    changed = True
    while changed:
        changed = False
        for name, names in calls.items():
            if name not in labelled and names & labelled:
                labelled.add(name)
                changed = True
    return labelled


def _labels_and_calls(stmts, labels: list, names: set) -> None:
    for st in iter_statements(stmts):
        label = getattr(st, "label", None)
        if label:
            labels.append(label)
        if isinstance(st, s.Chain):
            for el in st.elements:
                names.add(el.name)
                if el.label:
                    labels.append(el.label)


class CostCache:
    """What `CostMemo` remembers between points: block bodies, layers, names each layer reads."""

    def __init__(self, skip: set[str] = frozenset()):
        self.skip = skip  # blocks never memoised (`uncacheable_blocks`)
        self.blocks: dict = {}
        self.layers: dict = {}
        self.reads: dict = {}

    def entries(self) -> int:
        return len(self.blocks) + len(self.layers) + len(self.reads)

    def trim(self) -> None:
        if self.entries() > MEMO_LIMIT:
            self.blocks.clear()
            self.layers.clear()
            self.reads.clear()


_MISSING = object()


def _names_read(el: s.Element) -> tuple[tuple[str, ...], bool]:
    """(names, reads `in`) of a layer's argument expressions."""
    names, uses_in = set(), False
    for a in el.args:
        for e in iter_exprs(a.value):
            if isinstance(e, s.Name):
                names.add(e.id)
            elif isinstance(e, s.Attr):
                uses_in = True
    return tuple(sorted(names)), uses_in


class CostSink:
    """A lowering sink (see `ir.lower.GraphSink`) that keeps each node's attributes, not a graph,
    and adds up the trunk's cost as nodes come (the closed forms of `passes/cost.py`)."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self.graph: dict = {}
        self.params = 0
        self.macs = 0

    def add(self, name: str, data: dict, ins, cost=None) -> None:
        """`cost`: (params, macs) already known (a memoised layer or block), counted as given."""
        nodes = self.nodes
        nodes[name] = data
        if cost is None:
            if data["aux"] is not None:
                return
            cost = node_params_macs(data["op"], data["attrs"], [nodes[i]["shape"] for i in ins], data["shape"])
        self.params += cost[0]
        self.macs += cost[1]

    def node(self, name: str) -> dict:
        return self.nodes[name]

    def remove(self, name: str) -> None:
        """A join merged into a flat one: joins that merge cost nothing, so no count changes."""
        del self.nodes[name]

    def __len__(self) -> int:
        return len(self.nodes)

    def result(self) -> "CostSink":
        return self


class CostMemo(Memo):
    """The memo of one run (see `ir.sink.Memo`): keys from the values a layer or block instance
    depends on, entries in the `CostCache` shared between runs, costs read off the `CostSink`."""

    def __init__(self, cache: CostCache, sink: CostSink):
        self.cache = cache
        self.sink = sink
        self._frozen: dict = {}  # id(defaults dict) -> (dict, frozen form), for this run

    def frozen_defaults(self, defaults: dict):
        hit = self._frozen.get(id(defaults))
        if hit is None or hit[0] is not defaults:
            hit = self._frozen[id(defaults)] = (defaults, freeze(defaults))
        return hit[1]

    def tally(self) -> tuple[int, int]:
        return self.sink.params, self.sink.macs

    def since(self, tally: tuple[int, int]) -> tuple[int, int]:
        return self.sink.params - tally[0], self.sink.macs - tally[1]

    def layer_key(self, el, in_shape, ctx):
        # A layer's node is fixed by the values of the names it reads, its input shape, `in`
        # (if read) and the defaults in force: compute that once, name and add it each time.
        reads = self.cache.reads.get(id(el))
        if reads is None or reads[0] is not el:
            reads = self.cache.reads[id(el)] = (el, *_names_read(el))
        _, names, uses_in = reads
        env = ctx.env
        return (id(el), tuple(freeze(env.get(n, _MISSING)) for n in names), in_shape,
                ctx.in_shape if uses_in else None, self.frozen_defaults(ctx.defaults), ctx.aux is None)

    def layer(self, key):
        hit = self.cache.layers.get(key)
        return None if hit is None else (hit[0], hit[1], hit[2], hit[3], hit[4])

    def keep_layer(self, key, el, data: dict, since) -> None:
        self.cache.layers[key] = (el, data["op"], data["attrs"], data["shape"], self.since(since))

    def block_key(self, d, in_shape, ctx):
        if ctx.block in self.cache.skip:
            return None
        return (id(d), freeze(ctx.env), in_shape, self.frozen_defaults(ctx.defaults), ctx.aux is None)

    def block(self, key):
        return self.cache.blocks.get(key)

    def keep_block(self, key, d, shape: tuple, since) -> None:
        # The definition itself is kept in the entry: its id is only a valid key while it lives.
        self.cache.blocks[key] = (d, shape, self.since(since))


def cost_lowerer(program, cache: CostCache, max_layers: int = MAX_LAYERS) -> Lowerer:
    """A `Lowerer` of `program` into a `CostSink` (its `.sink`: `params`, `macs`), remembering
    layers and block instances in `cache` (shared between runs); see the module docstring."""
    sink = CostSink()
    return Lowerer(program, max_layers, sink=sink, memo=CostMemo(cache, sink))
