"""Whole-process time and peak memory of `incdsl check` on the worst specs it accepts and on
hostile ones it must refuse quickly (issue 15, item 4).

    python3 benchmarks/bounds.py

Each case is written to a temporary directory and checked in a fresh process; the peak RSS
is the child's `ru_maxrss`. Targets: every case under a few seconds and 1 GB; the accepted
cases at the default limit of 100,000 layers show what the limit costs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = "network t:\n    input 3x8x8\n"

CASES = {
    # accepted: the largest networks under the default limit
    "repeat 99999: identity": HEAD + "    repeat 99999: identity\n",
    "repeat 33333: conv, bn, relu": HEAD + "    repeat 33333: conv 1x1 3 -> bn -> relu\n",
    "repeat 9999: add of 9 branches": HEAD + "    repeat 9999:\n        add:\n"
                                            + "            branch: identity\n" * 9,
    "space of 2000 choices": HEAD + "    conv 1x1 choice(8, 16)\n" * 2000,
    # refused
    "repeat 999990: identity": HEAD + "    repeat 999990: identity\n",
    "repeat 999 in repeat 999": HEAD + "    repeat 999:\n        repeat 999: identity\n",
    "b(99999) -> b(99999), b(n) = repeat n": HEAD + "    b(99999) -> b(99999)\nblock b(n):\n    repeat n: identity\n",
    "round(8, -10**30)": HEAD + "    conv 1x1 round(8, -" + "1" + "0" * 30 + ")\n",
    "choice(range(1, 10**30))": HEAD + "    conv 1x1 choice(range(1, 1" + "0" * 30 + "))\n",
}


def measure(text: str, directory: str) -> tuple[int, float, float, float]:
    """(exit code, seconds, CPU seconds, peak RSS in MB) of `incdsl check` on `text` in a fresh process."""
    path = os.path.join(directory, "case.inc")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    pid = subprocess.Popen([sys.executable, "-m", "incdsl", "check", path], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    print(f"{'case':<42} {'exit':>4} {'seconds':>8} {'CPU s':>6} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as directory:
        for name, text in CASES.items():
            code, seconds, cpu, peak = measure(text, directory)
            print(f"{name:<42} {code:>4} {seconds:>8.2f} {cpu:>6.2f} {peak:>8.0f}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
