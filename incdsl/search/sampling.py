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

# Layers `incdsl check` makes on a space, over all the points it costs (about 70 us each with
# resolving the choices: about a second, under the fuzz harness's 10 s on a busy machine);
# and option indices it holds in its plan (points x choices).
CHECK_WORK = 20_000
CHECK_POINTS_ENTRIES = 2_000_000


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
    alike: int = 0  # points that failed as the first did
    alike_options: dict = field(default_factory=dict)  # choice -> the options those points took
    same_failure: bool = False  # stopped: the first points all failed at the same place, whatever the choices

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
        if _same(exc, draw.first_invalid):
            draw.alike += 1
            for k, i in enumerate(indices):
                draw.alike_options.setdefault(k, set()).add(i)
        draw.same_failure = _fails_whatever_the_choices(space, draw)
        return None
    cand = Candidate(tuple(indices), cost)
    draw.see(cand)
    if not budget.admits(cost):
        draw.over_budget += 1
        return None
    return cand


def _fails_whatever_the_choices(space, draw: Draw) -> bool:
    """Whether every point tried failed at the same place, at least `SAME_FAILURES` of them, with
    every choice taking two options among them: an error no choice reaches (as `check_space`
    stops), so more points, each up to the layer limit, would say nothing new."""
    return (draw.tried == draw.alike >= SAME_FAILURES
            and all(len(draw.alike_options[k]) >= min(2, len(c.options)) for k, c in enumerate(space.choices)))


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
    while len(draw.samples) < n and draw.tried < limit and len(seen) < total and not draw.same_failure:
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
        if n is not None and len(draw.samples) >= n or draw.same_failure:
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
    """The points `incdsl check` costs, and how to describe them.

    kind: "all" (every point), "sweep" (each option of every choice with the others at their
    first option, then random points) or "cover" (for spaces whose sweep is too long: the
    i-th option of every choice at once, i = 0, 1, ..., then random points)."""
    points: list[tuple[int, ...]]
    exhaustive: bool
    sweep: int = 0  # points of the sweep (or cover)
    random: int = 0  # further random points
    seed: int = 0
    kind: str = "sweep"
    covered: bool = True  # every option of every choice is in some point


def check_plan(space, all_limit: int = CHECK_ALL_LIMIT, samples: int = CHECK_RANDOM, seed: int = 0,
               max_points: int | None = None) -> CheckPlan:
    """All points of a small space; otherwise every option of each choice with the others at
    their first option, then `samples` random points (seeded: the same every run).

    With `max_points`, at most that many: when the sweep does not fit, the cover takes its
    place (as many points as the longest choice has options, or fewer)."""
    sizes = [len(c.options) for c in space.choices]
    limit = max_points if max_points is not None else space.size
    if space.size <= min(all_limit, limit):
        return CheckPlan(list(itertools.product(*map(range, sizes))), True, kind="all")
    sweep_length = 1 + sum(m - 1 for m in sizes)
    if sweep_length <= limit:
        kind, covered = "sweep", True
        sweep = [tuple(0 for _ in sizes)]
        for k, m in enumerate(sizes):
            for i in range(1, m):
                sweep.append(tuple(i if j == k else 0 for j in range(len(sizes))))
    else:
        longest = max(sizes)
        kind, covered = "cover", longest <= limit
        sweep = [tuple(i % m for m in sizes) for i in range(min(longest, limit))]
    seen = set(sweep)
    rng = random.Random(seed)
    extra = []
    samples = max(0, min(samples, space.size - len(seen), limit - len(sweep)))
    while len(extra) < samples:
        p = tuple(rng.randrange(m) for m in sizes)
        if p not in seen:
            seen.add(p)
            extra.append(p)
    return CheckPlan(sweep + extra, False, len(sweep), len(extra), seed, kind, covered)


@dataclass
class CheckResult:
    """What `check_space` found: costs of the valid points, the invalid ones, how far it got."""
    plan: CheckPlan
    costs: list[Cost] = field(default_factory=list)
    invalid: int = 0
    first_invalid: IncdslError | None = None
    checked: int = 0  # points of the plan costed (all of them, unless the work limit stopped it)
    lowered: int = 0  # layers made while checking
    same_failure: bool = False  # stopped: the first points all failed at the same place, whatever the choices


def check_space(space, work: int = CHECK_WORK) -> CheckResult:
    """Cost the points of `check_plan`, making at most about `work` layers in all.

    The first point's size sets how many points fit; checking stops early if later points
    are larger. So `incdsl check` on any space takes seconds, and says how much it checked."""
    start = space.lowered
    first = (0,) * len(space.choices)
    outcome = _cost_or_error(space, first)
    per_point = max(1, space.lowered - start)
    max_points = max(1, min(work // per_point, CHECK_POINTS_ENTRIES // max(1, len(space.choices))))
    plan = check_plan(space, max_points=max_points)
    result = CheckResult(plan)
    for indices in plan.points:
        if result.checked and space.lowered - start >= work:
            break
        cost = outcome if indices == first else _cost_or_error(space, indices)
        result.checked += 1
        if isinstance(cost, IncdslError):
            result.invalid += 1
            result.first_invalid = result.first_invalid or cost
            if result.invalid == result.checked == SAME_FAILURES and _same(cost, result.first_invalid):
                result.same_failure = True  # an error no choice reaches: more points say nothing new
                break
        else:
            result.costs.append(cost)
    result.lowered = space.lowered - start
    return result


SAME_FAILURES = 8  # this many first points failing alike stop the check


def _same(a: IncdslError, b: IncdslError) -> bool:
    return (a.diagnostics[0].message, a.span) == (b.diagnostics[0].message, b.span)


def _cost_or_error(space, indices):
    try:
        return space.cost(indices)
    except IncdslError as exc:
        return exc
