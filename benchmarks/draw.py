"""Time `incdsl draw` on each shipped spec: building the DOT text per level (no Graphviz), then
laying it out with `dot` (SVG), and the whole `incdsl draw` process.

    python3 benchmarks/draw.py                     # all shipped specs
    python3 benchmarks/draw.py --repeat 20 specs/inception_v4.inc

Target: every level of Inception-v4 well under a second before `dot` runs. Block level is
timed over every block the network uses (the column shows the slowest one).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import incdsl  # noqa: E402
from incdsl.render.collect import block_names  # noqa: E402
from incdsl.render.graphviz import DrawOptions, build_dot, run_dot  # noqa: E402


def best_of(repeat: int, fn) -> float:
    """The fastest of `repeat` runs, in milliseconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def level_options(net) -> dict[str, list[DrawOptions]]:
    return {"network": [DrawOptions()],
            "block": [DrawOptions(level="block", block=b) for b in block_names(net.graph)],
            "layer": [DrawOptions(level="layer")]}


def bench_spec(path: str, repeat: int, with_dot: bool) -> list[str]:
    net = incdsl.load(path)
    cells = []
    for level, options in level_options(net).items():
        text_ms = max(best_of(repeat, lambda o=o: build_dot(net, o)) for o in options)
        cell = f"{level} {text_ms:6.1f} ms"
        if with_dot:
            dot_ms = max(best_of(max(1, repeat // 5), lambda o=o: run_dot(build_dot(net, o), "svg")) for o in options)
            cell += f" / {dot_ms:6.0f} ms"
        cells.append(cell)
    return cells


def whole_process(path: str) -> float:
    """Seconds for `python -m incdsl draw SPEC -o FILE.svg` as a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "incdsl", "draw", path, "-o", os.path.join(tmp, "out.svg")], cwd=ROOT,
                       check=True)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", help="spec files (default: specs/*.inc and specs/variants/*.inc)")
    parser.add_argument("--repeat", type=int, default=10, help="runs per measurement; the best is shown")
    args = parser.parse_args()
    specs = args.specs or sorted(glob.glob(os.path.join(ROOT, "specs", "*.inc")) +
                                 glob.glob(os.path.join(ROOT, "specs", "variants", "*.inc")))
    with_dot = shutil.which("dot") is not None
    print("DOT text build time per level" + (" / with dot layout to SVG" if with_dot else " (dot not installed)")
          + "; block = slowest block" + ("; process = whole `incdsl draw` to SVG" if with_dot else ""))
    for path in specs:
        cells = bench_spec(path, args.repeat, with_dot)
        if with_dot:
            cells.append(f"process {whole_process(path):.2f} s")
        print(f"{os.path.relpath(path, ROOT):45s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
