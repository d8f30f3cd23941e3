"""Drawing points of a space: random (without repeats, within a budget) or a full grid, and
the points `incdsl check` looks at. Pure functions of the space and an explicit `random.Random`:
the same seed draws the same points.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from ..diagnostics import IncdslError
from .fastcost import Cost

GRID_LIMIT = 10_000  # points `--strategy grid` will enumerate
CHECK_ALL_LIMIT = 512  # spaces up to this size are checked point by point
CHECK_RANDOM = 64  # random points checked beyond the one-choice-at-a-time sweep


@dataclass(frozen=True)
class Budget:
    """Upper limits, inclusive; None for no limit."""
    max_params: int | None = None
    max_macs: int | None = None

    def admits(self, cost: Cost) -> bool:
        return ((self.max_params is None or cost.params <= self.max_params)
                and (self.max_macs is None or cost.macs <= self.max_macs))

    def __bool__(self) -> bool:
        return self.max_params is not None or self.max_macs is not None


@dataclass(frozen=True)
class Candidate:
    indices: tuple[int, ...]
    cost: Cost


@dataclass
class Draw:
    """What a strategy found: the samples, and an account of every point it tried."""
    samples: list[Candidate] = field(default_factory=list)
    tried: int = 0  # distinct points costed
    repeats: int = 0  # random draws that hit a point already tried
    over_budget: int = 0
    invalid: int = 0
    first_invalid: IncdslError | None = None
    fewest_params: Candidate | None = None  # the cheapest valid points seen, for error messages
    fewest_macs: Candidate | None = None

    def see(self, cand: Candidate) -> None:
        if self.fewest_params is None or cand.cost.params < self.fewest_params.cost.params:
            self.fewest_params = cand
        if self.fewest_macs is None or cand.cost.macs < self.fewest_macs.cost.macs:
            self.fewest_macs = cand


def _try(space, indices, budget: Budget, draw: Draw) -> Candidate | None:
    draw.tried += 1
    try:
        cost = space.cost(indices)
    except IncdslError as exc:
        draw.invalid += 1
        draw.first_invalid = draw.first_invalid or exc
        return None
    cand = Candidate(tuple(indices), cost)
    draw.see(cand)
    if not budget.admits(cost):
        draw.over_budget += 1
        return None
    return cand


def draw_random(space, n: int, rng: random.Random, budget: Budget = Budget(), max_tries: int | None = None) -> Draw:
    """Up to `n` distinct valid points within budget, drawn uniformly by rejection.

    Stops after `max_tries` distinct points (default ``20 n + 1000``) or when every point of
    the space has been tried. The caller decides whether fewer than `n` is an error.
    """
    limit = max_tries if max_tries is not None else 20 * n + 1000
    sizes = [len(c.options) for c in space.choices]
    total = space.size
    seen: set[tuple[int, ...]] = set()
    draw = Draw()
    while len(draw.samples) < n and draw.tried < limit and len(seen) < total:
        indices = tuple(rng.randrange(k) for k in sizes)
        if indices in seen:
            draw.repeats += 1
            if draw.repeats > 100 * limit:  # a tiny space nearly exhausted: finish it off in order
                indices = next(p for p in itertools.product(*map(range, sizes)) if p not in seen)
            else:
                continue
        seen.add(indices)
        cand = _try(space, indices, budget, draw)
        if cand is not None:
            draw.samples.append(cand)
    return draw


def draw_grid(space, n: int | None, budget: Budget = Budget(), limit: int = GRID_LIMIT) -> Draw:
    """Every point in grid order (last choice fastest), keeping the first `n` (all if None)
    valid ones within budget.

    Raises:
        ValueError: when the space has more than `limit` points.
    """
    if space.size > limit:
        raise ValueError(f"the space has {space.size:,} points; grid enumerates at most {limit:,}")
    draw = Draw()
    for indices in itertools.product(*(range(len(c.options)) for c in space.choices)):
        if n is not None and len(draw.samples) >= n:
            break
        cand = _try(space, indices, budget, draw)
        if cand is not None:
            draw.samples.append(cand)
    return draw


def descend(space, start: Candidate, key=lambda cost: cost.macs, rounds: int = 10) -> Candidate:
    """Coordinate descent from `start`: each choice in turn set to its cheapest option (by
    `key`), until nothing improves. Finds how small a point can get when the budget admits
    (almost) nothing; invalid points are passed over."""
    best = start
    for _ in range(rounds):
        improved = False
        for k, c in enumerate(space.choices):
            for i in range(len(c.options)):
                if i == best.indices[k]:
                    continue
                indices = best.indices[:k] + (i,) + best.indices[k + 1:]
                try:
                    cost = space.cost(indices)
                except IncdslError:
                    continue
                if key(cost) < key(best.cost):
                    best, improved = Candidate(indices, cost), True
        if not improved:
            break
    return best


@dataclass
class CheckPlan:
    """The points `incdsl check` costs, and how to describe them."""
    points: list[tuple[int, ...]]
    exhaustive: bool
    sweep: int = 0  # points of the one-choice-at-a-time sweep
    random: int = 0  # further random points
    seed: int = 0


def check_plan(space, all_limit: int = CHECK_ALL_LIMIT, samples: int = CHECK_RANDOM, seed: int = 0) -> CheckPlan:
    """All points of a small space; otherwise every option of each choice with the others at
    their first option, then `samples` random points (seeded: the same every run)."""
    sizes = [len(c.options) for c in space.choices]
    if space.size <= all_limit:
        return CheckPlan(list(itertools.product(*map(range, sizes))), True)
    sweep = [tuple(0 for _ in sizes)]
    for k, m in enumerate(sizes):
        for i in range(1, m):
            sweep.append(tuple(i if j == k else 0 for j in range(len(sizes))))
    seen = set(sweep)
    rng = random.Random(seed)
    extra = []
    samples = min(samples, space.size - len(seen))
    while len(extra) < samples:
        p = tuple(rng.randrange(m) for m in sizes)
        if p not in seen:
            seen.add(p)
            extra.append(p)
    return CheckPlan(sweep + extra, False, len(sweep), len(extra), seed)
