"""Time to sample and cost candidates of a search space, against lowering each one in full.

    python3 benchmarks/sample.py                                   # the Inception-v4 space
    python3 benchmarks/sample.py specs/search/inception_space.inc -n 1000 --seed 0

Target: 1,000 candidates of the Inception-v4 space sampled and costed well under 10 s on a
2-core machine. `Space.cost` reuses block instances and layers it has lowered before (see
`incdsl/search/fastcost.py`); the full route lowers every point into the whole IR graph and
runs the cost pass, as `incdsl check` does. Times are wall clock and process CPU (the CPU
figure is steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from incdsl.passes.cost import count_costs  # noqa: E402
from incdsl.search import load_space  # noqa: E402
from incdsl.search.sampling import Budget, draw_random  # noqa: E402


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def line(label: str, t: Timer, n: int) -> str:
    return (f"{label:<44} {t.wall:7.2f} s wall {t.cpu:7.2f} s CPU   "
            f"{1000 * t.wall / n:7.3f} ms / candidate ({1000 * t.cpu / n:.3f} CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", nargs="?", default=os.path.join(ROOT, "specs", "search", "inception_space.inc"))
    parser.add_argument("-n", type=int, default=1000, help="candidates (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", type=int, default=50, help="candidates lowered in full for comparison (default 50)")
    parser.add_argument("--max-macs", type=float, default=6e9, help="budget of the rejection-sampling run")
    args = parser.parse_args()

    with Timer() as t_load:
        space = load_space(args.space)
    print(f"{space.name}: {len(space.choices)} choices, {space.size:,} points; loaded in {t_load.wall:.2f} s")

    rng = random.Random(args.seed)
    with Timer() as t_cold:
        costs = [space.cost(space.sample(rng)) for _ in range(args.n)]
    print(line(f"sample + cost, {args.n:,} candidates (cold cache)", t_cold, args.n))
    with Timer() as t_warm:
        for _ in range(args.n):
            space.cost(space.sample(rng))
    print(line(f"sample + cost, {args.n:,} more (warm cache)", t_warm, args.n))

    points = [space.sample(rng) for _ in range(args.full)]
    with Timer() as t_full:
        full = [count_costs(space.network(p)).total for p in points]
    print(line(f"full lowering + cost pass, {args.full} candidates", t_full, args.full))
    assert all((f.params, f.macs) == (c.params, c.macs) for f, c in zip(full, map(space.cost, points))), \
        "the fast cost disagrees with the full count"
    print(f"{'speed-up of the cached cost (cold)':<44} {t_full.wall / args.full / (t_cold.wall / args.n):7.1f}x")

    budget = Budget(max_macs=int(args.max_macs))
    with Timer() as t_budget:
        draw = draw_random(load_space(args.space), 100, random.Random(args.seed), budget)
    print(line(f"100 samples within {args.max_macs:.3g} MACs ({draw.tried} tried)", t_budget, draw.tried))
    params = sorted(c.params for c in costs)
    print(f"parameters over the first {args.n:,}: min {params[0]:,}, median {params[len(params) // 2]:,}, "
          f"max {params[-1]:,}")


if __name__ == "__main__":
    main()
