"""Front-end speed: parse + lower + shape check, in-process and as a whole `incdsl check` process.

    python3 benchmarks/frontend.py                 # everything
    python3 benchmarks/frontend.py --sizes 1000 10000 --repeat 3
    python3 benchmarks/frontend.py --profile 10000 # cProfile of one generated network

Three parts:
1. generated networks of 1k, 10k and 100k layers (a stem, then a repeated Inception-style
   block): time per layer must stay flat as the network grows (linear time);
2. every shipped spec (specs/**/*.inc that defines a network): parse + check in-process, the
   best of --repeat runs after one warm-up (the parser tables are built once per process);
3. the whole process `python -m incdsl check specs/inception_v4.inc`, median wall time, beside
   the bare interpreter's start-up for scale.

Targets: a spec of Inception-v4's size checks in well under 100 ms in-process; the whole
`incdsl check` process takes under half a second.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import glob
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import incdsl  # noqa: E402
from incdsl.passes.cost import count_costs  # noqa: E402

LAYERS_PER_BLOCK = 9  # 3 branches (1 + 2 + 2 layers), concat, projection, add (see generated())


def generated(layers: int) -> str:
    """A network of about `layers` layers: residual Inception-style blocks, repeated."""
    repeats = max(1, (layers - 4) // LAYERS_PER_BLOCK)
    return f"""\
network generated(classes = 10):
    input 3x64x64
    conv 3x3 32 /2 S bn = 0.001
    repeat {repeats} as i: mixed(n = 8 + i % 3 * 8)
    gap -> flatten -> linear classes
block mixed(n):
    residual(scale = 0.2):
        concat:
            branch: conv 1x1 n
            branch: conv 1x1 n -> conv 3x3 n S
            branch: avgpool 3x3 S count_pad = no -> conv 1x1 n
        conv 1x1 in.c act = off
"""


def timed(fn, repeat: int) -> float:
    """Best CPU time of `repeat` calls, in seconds.

    CPU time of this process, not wall time: on a shared machine other processes' load
    would otherwise decide the figures (and favour short runs over long ones)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
        del result  # freeing the graph is not part of checking it
    return best


def bench_generated(sizes, repeat: int) -> list[float]:
    print("== generated networks: parse + lower + shapes, CPU time (best of %d)" % repeat)
    print(f"{'layers':>9} {'total s':>9} {'us/layer':>9}")
    incdsl.load(generated(100))  # warm-up: parser tables
    per_layer = []
    for size in sizes:
        text = generated(size)
        n = len(incdsl.load(text).layers)
        t = timed(lambda: incdsl.load(text), repeat if size <= 10_000 else 1)
        per_layer.append(t / n * 1e6)
        print(f"{n:>9,} {t:>9.3f} {per_layer[-1]:>9.1f}")
    if len(per_layer) > 1:
        print(f"growth of time per layer, largest vs smallest: x{per_layer[-1] / per_layer[0]:.2f} "
              f"(flat = linear time)")
    return per_layer


def shipped_specs() -> list[str]:
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.inc"), recursive=True))
    return [p for p in paths if re.search(r"^network ", open(p, encoding="utf-8").read(), re.M)]


def bench_specs(paths, repeat: int) -> dict:
    print(f"\n== shipped specs: in-process CPU time, best of {repeat} after a warm-up")
    print(f"{'spec':<44} {'layers':>6} {'load ms':>8} {'+cost ms':>9}")
    results = {}
    for path in paths:
        name = os.path.relpath(path, ROOT)
        try:
            net = incdsl.load(path)
        except incdsl.IncdslError as exc:  # search spaces and specs in progress
            print(f"{name:<44} {'-':>6} {'not a plain network: ' + exc.diagnostics[0].message[:40]}")
            continue
        t_load = timed(lambda: incdsl.load(path), repeat)
        t_all = timed(lambda: count_costs(incdsl.load(path)), repeat)
        results[name] = t_load
        print(f"{name:<44} {len(net.layers):>6} {t_load * 1e3:>8.1f} {t_all * 1e3:>9.1f}")
    return results


def bench_process(spec: str, repeat: int) -> dict:
    """Median wall time of `python -m incdsl check SPEC`, as the environment is configured and,
    where it forbids writing bytecode (PYTHONDONTWRITEBYTECODE, which makes every start compile
    incdsl's sources again), also with a bytecode cache in a temporary directory, as an
    installed package has."""
    if not os.path.exists(spec):
        print(f"\n== whole process: {os.path.relpath(spec, ROOT)} not found, skipped")
        return {}
    base = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    variants = {"as configured": base}
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="incdsl-pyc-")
        variants["with bytecode cache"] = cached

    def wall(argv, env) -> float:
        """Wall time of one child process; its CPU time (user + system) goes to `cpu`."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return seconds

    cpu: list[float] = []

    argv = [sys.executable, "-m", "incdsl", "check", spec]
    print(f"\n== whole process: python -m incdsl check {os.path.relpath(spec, ROOT)} (median of {repeat} runs)")
    results = {}
    for label, env in variants.items():
        wall(argv, env)  # the first run may build the parser and bytecode caches
        cpu.clear()
        times = [wall(argv, env) for _ in range(repeat)]
        check_cpu = statistics.median(cpu)
        cpu.clear()
        bare = statistics.median(wall([sys.executable, "-c", "pass"], env) for _ in range(repeat))
        bare_cpu = statistics.median(cpu)
        cpu.clear()
        deps = statistics.median(wall([sys.executable, "-c", "import networkx, lark"], env) for _ in range(repeat))
        deps_cpu = statistics.median(cpu)
        results[label] = statistics.median(times)
        print(f"{label:<20} wall median {results[label]:.3f} s (min {min(times):.3f}), CPU {check_cpu:.3f} s; "
              f"bare interpreter {bare:.3f} s (CPU {bare_cpu:.3f}); + import networkx, lark {deps:.3f} s "
              f"(CPU {deps_cpu:.3f})")
        results[label + " (CPU)"] = check_cpu
    return results


def profile(size: int) -> None:
    text = generated(size)
    incdsl.load(generated(100))
    prof = cProfile.Profile()
    prof.enable()
    incdsl.load(text)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", type=int, metavar="LAYERS", help="profile one generated network and stop")
    args = ap.parse_args()
    if args.profile:
        profile(args.profile)
        return 0
    print(f"python {sys.version.split()[0]}, incdsl {incdsl.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    bench_generated(args.sizes, args.repeat)
    gc.collect()
    specs = bench_specs(shipped_specs(), args.repeat)
    v4 = os.path.join("specs", "inception_v4.inc")
    process = bench_process(os.path.join(ROOT, v4), args.repeat)
    print("\n== targets")
    if v4 in specs:
        print(f"inception_v4 in-process {specs[v4] * 1e3:.1f} ms (target < 100 ms): "
              f"{'ok' if specs[v4] < 0.1 else 'MISSED'}")
    for label, seconds in process.items():
        print(f"inception_v4 whole process, {label}: {seconds:.3f} s (target < 0.5 s): "
              f"{'ok' if seconds < 0.5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
