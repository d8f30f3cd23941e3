"""Whole-process time and peak memory of `incdsl cost` on each shipped spec, side by side with
the tracing route: build the same network in PyTorch and count MACs with
`torch.utils.flop_counter` (only where torch, and timm/torchvision for the reference models,
are installed).

    python3 benchmarks/cost.py            # all specs
    python3 benchmarks/cost.py --repeat 5 specs/inception_v4.inc

Targets: `incdsl cost specs/inception_v4.inc` under 0.5 s and 100 MB as a whole process, an
order of magnitude ahead of tracing.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Reference models counted by tracing: spec -> (library, constructor, input size)
REFERENCES = {
    "inception_v4.inc": ("timm", "inception_v4", 299),
    "inception_resnet_v2.inc": ("timm", "inception_resnet_v2", 299),
    "inception_v3.inc": ("torchvision", "inception_v3", 299),
    "googlenet_torchvision.inc": ("torchvision", "googlenet", 224),
}

TRACE = r"""
import resource, sys, time
t0 = time.perf_counter()
import torch
from torch.utils.flop_counter import FlopCounterMode
lib, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if lib == "timm":
    import timm
    model = timm.create_model(name, pretrained=False)
elif lib == "incdsl":
    import incdsl
    model = incdsl.to_torch(incdsl.load(name, input=(3, size, size)))  # a model checks its input size
else:
    import torchvision
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
model.eval()
params = sum(p.numel() for p in model.parameters())
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(torch.zeros(1, 3, size, size))
macs = counter.get_total_flops() // 2
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{params} {macs} {time.perf_counter() - t0:.3f} {rss:.0f}")
"""


def run_process(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process, its own rusage only."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out = proc.stdout.read()  # not communicate(): it would reap the child before wait4 can
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true", help="skip the PyTorch tracing route")
    args = parser.parse_args()
    specs = args.specs or sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.inc"), recursive=True))
    specs = [s for s in specs if "/lib/" not in s and "/search/" not in s]
    print(f"{'spec':<44} {'incdsl cost':>12} {'peak MiB':>9}   {'tracing':>9} {'peak MiB':>9} {'speed-up':>9}  agree")
    for spec in specs:
        rel = os.path.relpath(spec, ROOT)
        times = [run_process([sys.executable, "-m", "incdsl", "cost", rel, "--format", "json"])[0]
                 for _ in range(args.repeat)]
        import json
        out = json.loads(run_process([sys.executable, "-m", "incdsl", "cost", rel, "--format", "json"])[2])
        peak = run_process([sys.executable, "-m", "incdsl", "cost", rel, "--format", "json"])[1]
        t = statistics.median(times)
        line = f"{rel:<44} {t * 1000:>10.0f}ms {peak:>9.0f}"
        ref = REFERENCES.get(os.path.basename(spec))
        if ref and not args.no_trace:
            # find_spec, not import: a parent that loaded torch would lend its memory high-water
            # mark to every child forked after it (Linux keeps it across exec).
            if importlib.util.find_spec("torch") is None or importlib.util.find_spec(ref[0]) is None:
                ref = None
        if ref and not args.no_trace:
            wall, rss, stdout = run_process([sys.executable, "-c", TRACE, *map(str, ref)])
            params, macs, _, _ = stdout.split()
            agree = int(params) == out["total"]["params"] and int(macs) == out["total"]["macs"]
            line += f"   {wall:>8.2f}s {float(rss):>9.0f} {wall / t:>8.1f}x  {'yes' if agree else 'NO'}"
            line += f" ({ref[0]} {ref[1]}: {int(params):,} params, {int(macs):,} MACs)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
