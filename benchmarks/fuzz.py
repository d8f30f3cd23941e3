"""Fuzz incdsl with hostile specs: mutants of the shipped specs, each run through `check`,
`cost` and (for a sample) `compile` in a forked worker with a 10 s and 2 GB limit.

    python3 benchmarks/fuzz.py --cases 10000 --seed 1 --jobs 2
    python3 benchmarks/fuzz.py --cases 10000 --seed 1 --only 42,977     # rebuild and rerun two cases
    python3 benchmarks/fuzz.py --hand-made                               # tests/fuzz_cases and friends

Prints the count of each outcome class per command (accepted, located diagnostic, diagnostic
without location, other exception, over 10 s, over 2 GB) and writes every case in the last
four classes to --out (the spec's bytes, its file name, the mutations and each command's
outcome) for reproduction. Exit 1 when any case is in the last four classes. Cases are
deterministic for a seed; the engine is tests/fuzzlib.py.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fuzzlib  # noqa: E402


def save_failure(out: Path, case: fuzzlib.Case, outcomes: list) -> None:
    folder = out / f"case-{case.ident}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.inc").write_bytes(case.data)
    record = {"ident": case.ident, "file_name": case.name, "origin": case.origin, "rel_dir": case.rel_dir,
              "mutations": case.mutations, "args": list(case.args),
              "outcomes": [o.__dict__ for o in outcomes]}
    (folder / "case.json").write_text(json.dumps(record, indent=1, ensure_ascii=True))


def table(counts: dict, commands: list[str]) -> str:
    width = max(len(c) for c in fuzzlib.CLASSES)
    lines = [f"{'':<{width}}  " + "  ".join(f"{c:>8}" for c in commands)]
    for klass in fuzzlib.CLASSES:
        lines.append(f"{klass:<{width}}  " + "  ".join(f"{counts[c][klass]:>8}" for c in commands))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{sum(counts[c].values()):>8}" for c in commands))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="workers at a time (default 2)")
    p.add_argument("--commands", default="check,cost,compile")
    p.add_argument("--compile-fraction", type=float, default=0.1,
                   help="share of cases also run through compile (torch is slow; default 0.1)")
    p.add_argument("--only", help="comma-separated case indexes to run")
    p.add_argument("--hand-made", action="store_true", help="run the hand-made cases instead")
    p.add_argument("--no-infer", action="store_true",
                   help="run cost/compile even when check was over a limit (default: give them check's class)")
    p.add_argument("--out", help="where failing cases go (default: a folder in the temp dir)")
    args = p.parse_args(argv)

    commands = tuple(args.commands.split(","))
    seeds = fuzzlib.seed_specs()
    if args.hand_made:
        cases = fuzzlib.hand_made_cases()
    else:
        indexes = [int(i) for i in args.only.split(",")] if args.only else range(args.cases)
        cases = [fuzzlib.make_case(args.seed, i, seeds, args.compile_fraction, commands) for i in indexes]
    out = Path(args.out or os.path.join(tempfile.gettempdir(), f"incdsl-fuzz-seed{args.seed}"))
    out.mkdir(parents=True, exist_ok=True)
    counts = {c: collections.Counter() for c in commands}
    by_kind = collections.Counter()
    failures = 0
    started = time.monotonic()
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="incdsl-fuzz-") as root:
        runs = fuzzlib.run_all(cases, Path(root), seeds, jobs=args.jobs, infer=not args.no_infer)
        try:
            for n, (case, outcomes) in enumerate(runs, 1):
                for o in outcomes:
                    counts.setdefault(o.command, collections.Counter())[o.klass] += 1
                bad = [o for o in outcomes if o.klass in fuzzlib.BAD]
                if args.hand_made:
                    problems = [msg for o in outcomes for msg in fuzzlib.expected_failures(case, o)]
                    bad = bad or problems
                    for msg in problems:
                        print(f"  {case.ident}: {msg}", file=sys.stderr)
                if bad:
                    failures += 1
                    save_failure(out, case, outcomes)
                    for o in outcomes:
                        if o.klass in fuzzlib.BAD:
                            for kind in set(case.mutations) or {"hand-made"}:
                                by_kind[(o.command, o.klass, kind)] += 1
                if n % 500 == 0:
                    print(f"  {n} cases, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
                if n % 2000 == 0:
                    print(table(counts, list(counts)), file=sys.stderr, flush=True)
        except KeyboardInterrupt:  # print what was counted so far
            interrupted = True
            runs.close()
    wall = time.monotonic() - started
    shown = [c for c in commands if c in counts] + [c for c in counts if c not in commands]
    print(table(counts, shown))
    done = sum(counts[commands[0]].values()) if commands[0] in counts else 0
    print(f"\n{done if interrupted else len(cases)} cases{' (interrupted)' if interrupted else ''}, seed {args.seed}, "
          f"{args.jobs} jobs, {wall:.0f} s wall")
    if by_kind:
        print("\nfailing runs by mutation kind (a case with several kinds counts for each):")
        for (command, klass, kind), n in sorted(by_kind.items()):
            print(f"  {command:<8} {klass:<28} {kind:<18} {n}")
    if failures:
        print(f"\n{failures} failing cases written to {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
