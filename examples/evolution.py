"""Regularised (aging) evolution over a search space, scored by the cost model.

Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019):
keep a population; each cycle, pick a few members at random, mutate the best of them (one
choice changed), add the child and retire the oldest member, however good it is.

With no data to train on, the score is a stand-in that needs no training: the number of
parameters (capacity) of a network whose multiply-adds fit a budget; over the budget, the
score is minus the overshoot, which pulls the search back inside. Replace `score` with a
validation accuracy (e.g. a short `incdsl train` run) to search for real.

    python3 examples/evolution.py                              # the Inception-v4 space, 6 GMACs
    python3 examples/evolution.py --max-macs 3.5e9 --cycles 500 -o best.inc
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from incdsl.search import load_space  # noqa: E402


def score(cost, max_macs: float) -> float:
    """Capacity within the compute budget; negative overshoot beyond it."""
    return cost.params if cost.macs <= max_macs else -(cost.macs - max_macs)


def evolve(space, cycles: int, population: int, tournament: int, max_macs: float, rng: random.Random):
    """Returns the best (score, point, cost) ever seen; prints progress every tenth of the run."""
    alive = collections.deque()  # (score, point, cost), oldest first
    best = None
    for step in range(population + cycles):
        if step < population:
            point = space.sample(rng)  # the first population: random points
        else:
            parent = max(rng.sample(list(alive), tournament), key=lambda member: member[0])
            point = space.mutate(parent[1], rng)
        cost = space.cost(point)
        member = (score(cost, max_macs), point, cost)
        alive.append(member)
        if len(alive) > population:
            alive.popleft()  # aging: the oldest goes, not the worst
        if best is None or member[0] > best[0]:
            best = member
        if step >= population and (step - population) % max(1, cycles // 10) == 0:
            feasible = sum(1 for m in alive if m[2].macs <= max_macs)
            print(f"cycle {step - population:5d}: best {best[2].params / 1e6:7.2f} M params at "
                  f"{best[2].macs / 1e9:6.2f} GMACs; population {feasible}/{len(alive)} within budget")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", nargs="?", default=os.path.join(ROOT, "specs", "search", "inception_space.inc"))
    parser.add_argument("--max-macs", type=float, default=6e9, help="compute budget (default 6e9)")
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--tournament", type=int, default=10, help="members compared per cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="write the best network's concrete spec here")
    args = parser.parse_args()

    space = load_space(args.space)
    print(f"{space.name}: {len(space.choices)} choices, {space.size:.3g} points; "
          f"maximising parameters within {args.max_macs / 1e9:g} GMACs")
    best = evolve(space, args.cycles, args.population, args.tournament, args.max_macs, random.Random(args.seed))
    _, point, cost = best
    print(f"best: {cost.params:,} parameters, {cost.macs:,} MACs")
    for name, option in space.values(point).items():
        print(f"  {name:<16} {option}")
    if args.output:
        from incdsl.io import write_atomic
        write_atomic(args.output, space.to_spec(point), inputs=list(space.program.sources))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
