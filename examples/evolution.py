"""Regularised (aging) evolution over a search space, each candidate trained for a few steps.

Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019):
keep a population; each cycle, pick a few members at random, mutate the best of them (one
choice changed), add the child and retire the oldest member, however good it is.

Each candidate is a point of the space (`incdsl.space`), made a checked network
(`space.network`) and trained by `incdsl train`'s loop (`incdsl.train.loop.train`) for one
short epoch on synthetic images on the CPU; its fitness is the validation loss (after a few
steps top-1 accuracy moves in coarse jumps, the loss does not). A point proposed again is not
trained again. At the end every candidate trained is ranked in a table, best first.

    python3 examples/evolution.py                      # examples/mini_space.inc: 15 s on 2 CPU cores
    python3 examples/evolution.py --threads 1          # faster on a machine busy with other work
    python3 examples/evolution.py --population 4 --cycles 4 --images 64 -o best.inc

For a real search use more data and steps (`--data digits` or an image folder, `--epochs`),
or `incdsl search`, which runs the same algorithm on Ray Tune.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import incdsl  # noqa: E402


def train_candidate(network, args) -> dict:
    """Train `network` as `args` says, in a scratch folder; returns its last epoch's metrics
    (`metrics.jsonl`'s record: train_loss, val_loss, val_top1, ...) and its parameters."""
    from incdsl.train.loop import TrainConfig, train
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup_epochs": 0.0,
                 "schedule": "constant"}
    with tempfile.TemporaryDirectory(prefix="incdsl-evolution-") as out, open(os.devnull, "w") as quiet:
        config = TrainConfig(data=args.data, out=out, overrides=overrides, device="cpu", seed=args.seed,
                             threads=args.threads, synthetic_size=args.images)
        train(network, config, log=lambda *a, **k: None, stream=quiet)
        with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
            record = json.loads(f.read().splitlines()[-1])
    return record


def evolve(space, fitness, population: int, cycles: int, tournament: int, rng: random.Random) -> dict:
    """Aging evolution minimising `fitness(point)`; returns {point as a tuple: fitness} for
    every distinct point evaluated (each once, however often it is proposed)."""
    seen: dict[tuple, float] = {}
    alive = collections.deque()  # (fitness, point), oldest first

    def evaluate(point):
        key = tuple(point.values())
        if key not in seen:
            seen[key] = fitness(point)
        return seen[key]

    for step in range(population + cycles):
        if step < population:
            point = space.sample(rng)  # the first population: random points
        else:
            parent = min(rng.sample(list(alive), min(tournament, len(alive))), key=lambda member: member[0])
            point = space.mutate(parent[1], rng)
        alive.append((evaluate(point), point))
        if len(alive) > population:
            alive.popleft()  # aging: the oldest goes, not the worst
    return seen


def short(option: str, width: int = 12) -> str:
    return option if len(option) <= width else option[:width - 3] + "..."


def ranked_table(space, results: dict, records: dict) -> str:
    """Every candidate, lowest validation loss first: rank, loss, top-1, parameters, MACs, options."""
    names = ", ".join(c.name for c in space.choices)
    lines = [f"{'rank':>4}  {'val loss':>8}  {'top-1':>6}  {'params':>9}  {'MACs':>11}  options ({names})"]
    for rank, key in enumerate(sorted(results, key=lambda k: (results[k], k)), 1):
        r = records[key]
        options = " ".join(short(v) for v in space.values(list(key)).values())
        lines.append(f"{rank:>4}  {r['val_loss']:8.4f}  {100 * r['val_top1']:5.1f}%  {r['params']:>9,}  "
                     f"{r['macs']:>11,}  {options}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", nargs="?", default=os.path.join(ROOT, "examples", "mini_space.inc"))
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--tournament", type=int, default=3, help="members compared per cycle")
    parser.add_argument("--data", default="synthetic", help="synthetic (default), digits or an image folder")
    parser.add_argument("--images", type=int, default=256, help="synthetic training images (validation: a quarter)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for training")
    parser.add_argument("--seed", type=int, default=0, help="seeds the evolution and every candidate's training")
    parser.add_argument("-o", "--output", help="write the best network's concrete spec here")
    args = parser.parse_args(argv)

    space = incdsl.space(args.space)
    print(f"{space.name}: {len(space.choices)} choices, {space.size:,} points; {args.population} random "
          f"candidates, then {args.cycles} mutations; each trained {args.epochs} epoch(s) on {args.data}")
    records: dict[tuple, dict] = {}

    def fitness(point) -> float:
        began = time.perf_counter()
        try:
            network = space.network(point)
            cost = incdsl.count_costs(network).total
            record = dict(train_candidate(network, args), params=cost.params, macs=cost.macs)
            note = f"{cost.params:,} params"
        except incdsl.IncdslError as exc:  # an invalid point, or a loss that diverged: ranks last
            record = {"val_loss": math.inf, "val_top1": 0.0, "params": 0, "macs": 0}
            note = str(exc).splitlines()[0]
        records[tuple(point.values())] = record
        print(f"  candidate {len(records):3d}: val loss {record['val_loss']:.4f}, "
              f"top-1 {100 * record['val_top1']:.1f}%, {note}, {time.perf_counter() - began:.1f} s", flush=True)
        return record["val_loss"] if math.isfinite(record["val_loss"]) else math.inf

    results = evolve(space, fitness, args.population, args.cycles, args.tournament, random.Random(args.seed))
    print(f"\n{len(results)} candidates trained, best first:")
    print(ranked_table(space, results, records))
    best = min(results, key=lambda k: (results[k], k))
    print("\nbest:")
    for name, option in space.values(list(best)).items():
        print(f"  {name:<16} {option}")
    if args.output:
        from incdsl.io import write_atomic
        write_atomic(args.output, space.to_spec(list(best)), inputs=list(space.program.sources))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
