"""Where the next candidate of a search experiment comes from: random sampling, regularised
(aging) evolution, or Optuna's NSGA-II.

A proposer names points of a `Space` (tuples of option indices) and hears back how they did;
`incdsl.search.tune.SpaceSearcher` wraps one for Ray Tune and keeps the budget and duplicate
checks to itself. Proposers hold plain data (and an Optuna study), so Tune can pickle them
into its experiment checkpoints.
"""
from __future__ import annotations

import collections
import random

ALGORITHMS = ("random", "evolution", "nsga2")


class RandomProposer:
    """Points drawn uniformly, each choice independently."""

    def __init__(self, sizes: list[int], seed: int = 0):
        self.sizes = list(sizes)
        self.rng = random.Random(seed)

    def propose(self, trial_id: str) -> tuple[int, ...]:
        return tuple(self.rng.randrange(k) for k in self.sizes)

    def discard(self, trial_id: str, indices, known: dict | None) -> None:
        """The point will not be trained: over budget, invalid, or a duplicate (`known`: the
        metrics of the duplicate's trial once it has finished)."""

    def complete(self, trial_id: str, indices, result: dict | None) -> None:
        """The trial of `indices` ended; `result` is None when it failed."""


class EvolutionProposer(RandomProposer):
    """Regularised evolution (Real et al. 2019, "Regularized Evolution for Image Classifier
    Architecture Search", Algorithm 1): random points until `population` have finished; then
    each child mutates the best of `sample_size` members drawn from the population, and the
    oldest member leaves when a new one joins (aging, not the worst)."""

    def __init__(self, sizes: list[int], seed: int = 0, population: int = 8, sample_size: int = 3,
                 metric: str = "val_top1"):
        super().__init__(sizes, seed)
        self.population_size = max(1, population)
        self.sample_size = max(1, sample_size)
        self.metric = metric
        self.population: collections.deque = collections.deque()  # (indices, accuracy), oldest first
        self.parents: dict[str, tuple] = {}

    def propose(self, trial_id: str) -> tuple[int, ...]:
        if len(self.population) < self.population_size:
            return super().propose(trial_id)
        members = [self.population[self.rng.randrange(len(self.population))] for _ in range(self.sample_size)]
        parent = max(members, key=lambda m: m[1])[0]
        self.parents[trial_id] = parent
        return self.mutate(parent)

    def mutate(self, indices) -> tuple[int, ...]:
        """One choice (of those with two or more options) set to another option, as `Space.mutate`."""
        open_ = [k for k, n in enumerate(self.sizes) if n > 1]
        if not open_:
            return tuple(indices)
        child = list(indices)
        k = self.rng.choice(open_)
        other = self.rng.randrange(self.sizes[k] - 1)
        child[k] = other if other < child[k] else other + 1
        return tuple(child)

    def discard(self, trial_id: str, indices, known: dict | None) -> None:
        # a child equal to a finished point joins the population with that point's accuracy:
        # the step of evolution happens, the training does not
        self.complete(trial_id, indices, known)

    def complete(self, trial_id: str, indices, result: dict | None) -> None:
        if result is not None and result.get(self.metric) is not None:
            self._join(indices, float(result[self.metric]))

    def _join(self, indices, accuracy: float) -> None:
        self.population.append((tuple(indices), accuracy))
        while len(self.population) > self.population_size:
            self.population.popleft()


class OptunaProposer:
    """Optuna's NSGA-II (multi-objective: accuracy up, cost down) through Ray Tune's
    `OptunaSearch`; each choice is a categorical parameter ``c<ordinal>`` over option indices.

    Points the searcher rejects are told to the study as failed (over budget, invalid) or
    with the known values (a finished duplicate), so the sampler learns from them too."""

    def __init__(self, sizes: list[int], seed: int = 0, metrics=("val_top1", "macs"), modes=("max", "min"),
                 population: int = 8):
        import optuna
        from ray.tune.search.optuna import OptunaSearch
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines say what matters
        space = {f"c{k}": optuna.distributions.CategoricalDistribution(list(range(n))) for k, n in enumerate(sizes)}
        sampler = optuna.samplers.NSGAIISampler(population_size=max(2, population), seed=seed)
        self.sizes = list(sizes)
        self.metrics = list(metrics)
        self.search = OptunaSearch(space, metric=self.metrics, mode=list(modes), sampler=sampler)
        self.asks = 0
        self.current: dict[str, str] = {}  # Tune trial id -> the Optuna ask it runs

    def propose(self, trial_id: str) -> tuple[int, ...]:
        self.asks += 1
        ask = f"{trial_id}#{self.asks}"
        self.current[trial_id] = ask
        params = self.search.suggest(ask)
        return tuple(int(params[f"c{k}"]) for k in range(len(self.sizes)))

    def discard(self, trial_id: str, indices, known: dict | None) -> None:
        ask = self.current.pop(trial_id)
        if known is not None:
            self.search.on_trial_complete(ask, result=known)
        else:
            self.search.on_trial_complete(ask, result=None, error=True)

    def complete(self, trial_id: str, indices, result: dict | None) -> None:
        ask = self.current.pop(trial_id, None)
        if ask is not None:
            self.search.on_trial_complete(ask, result=result, error=result is None)


def make_proposer(algorithm: str, sizes: list[int], seed: int, objective: str, population: int):
    """The proposer for `--algorithm` (one of `ALGORITHMS`)."""
    if algorithm == "random":
        return RandomProposer(sizes, seed)
    if algorithm == "evolution":
        return EvolutionProposer(sizes, seed, population=population, sample_size=max(2, population // 3))
    if algorithm == "nsga2":
        return OptunaProposer(sizes, seed, metrics=("val_top1", objective), population=population)
    raise ValueError(f"unknown algorithm {algorithm!r}")
