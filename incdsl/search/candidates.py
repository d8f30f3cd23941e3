"""Vetting the points a search proposes, before any of them trains: invalid points and
points over budget are never started, and a point whose network was already started is a
duplicate (its *key* is a digest of the lowered graph, so two points that build the same
network, e.g. differing only in a choice the network does not reach, are one candidate).

Ray-free and torch-free; `SpaceSearcher` (incdsl.search.tune) keeps one `Vetter`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..diagnostics import IncdslError
from .sampling import Budget


@dataclass(frozen=True)
class Candidate:
    """A point that will train: its key, indices, costs, concrete spec and chosen options."""
    key: str
    indices: tuple[int, ...]
    params: int
    macs: int
    spec: str
    choices: dict


@dataclass
class Verdict:
    kind: str  # "new" | "duplicate" | "over budget" | "invalid"
    candidate: Candidate | None = None
    key: str | None = None


def network_key(network) -> str:
    """A digest of the network's stable text form: equal networks, equal keys."""
    from ..ir.graph import format_graph
    return hashlib.sha256(format_graph(network.graph).encode("utf-8")).hexdigest()[:16]


@dataclass
class Vetter:
    """Decides what becomes of each proposed point; remembers every key it let through and
    the final metrics of those that finished (for duplicates proposed later)."""

    spec: str
    params: dict = field(default_factory=dict)
    input: tuple | None = None
    budget: Budget = Budget()
    include_path: list = field(default_factory=list)
    max_layers: int | None = None
    started: set = field(default_factory=set)       # keys of candidates handed out
    finished: dict = field(default_factory=dict)    # key -> last metrics (None: failed)
    keys: dict = field(default_factory=dict)        # indices -> key, for points lowered before
    counts: dict = field(default_factory=lambda: {"duplicate": 0, "over budget": 0, "invalid": 0})

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_space", None)  # reloaded from the spec: keeps Tune's checkpoints small
        return state

    @property
    def space(self):
        if "_space" not in self.__dict__:
            from .space import load_space
            limits = {} if self.max_layers is None else {"max_layers": self.max_layers}
            self.__dict__["_space"] = load_space(self.spec, params=self.params, input=self.input,
                                                 include_path=self.include_path, **limits)
        return self.__dict__["_space"]

    def sizes(self) -> list[int]:
        return [len(c.options) for c in self.space.choices]

    def vet(self, indices) -> Verdict:
        indices = tuple(indices)
        key = self.keys.get(indices)
        if key is None:
            try:
                cost = self.space.cost(indices)
            except IncdslError:
                return self._count(Verdict("invalid"))
            if not self.budget.admits(cost):
                return self._count(Verdict("over budget"))
            try:
                network = self.space.network(indices)
            except IncdslError:
                return self._count(Verdict("invalid"))
            key = self.keys[indices] = network_key(network)
            if key not in self.started:
                self.started.add(key)
                return Verdict("new", Candidate(key, indices, cost.params, cost.macs, self.space.to_spec(indices),
                                                self.space.values(indices)), key)
        return self._count(Verdict("duplicate", key=key))

    def finish(self, key: str, metrics: dict | None) -> None:
        self.finished[key] = metrics

    def known(self, key: str | None) -> dict | None:
        """The metrics of a finished candidate, None while it runs or when it failed."""
        return self.finished.get(key) if key else None

    def _count(self, verdict: Verdict) -> Verdict:
        self.counts[verdict.kind] += 1
        return verdict
