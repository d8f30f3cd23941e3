"""Inference time of compiled specs in the two memory layouts, contiguous (NCHW) and
channels_last (NHWC), side by side in one run: which layout to deploy a network in.

    python3 benchmarks/layout.py                       # every shipped spec, CPU, one thread
    python3 benchmarks/layout.py specs/googlenet.inc --batch 8 --level infer --threads 1

The layout is the caller's choice (`model.to(memory_format=torch.channels_last)` and a
channels-last input), not an optimisation level's: on the CPU channels_last is faster for most
shipped specs, but not for all (oneDNN's convolutions are slower in it for some shapes), so no
level switches it on behind the user's back. On CUDA `incdsl train` uses it by default.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import incdsl  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def shipped_specs() -> list[str]:
    """The networks of specs/ (Inception family and zoo), relative to the repository."""
    found = glob.glob(os.path.join(ROOT, "specs", "*.inc")) + glob.glob(os.path.join(ROOT, "specs", "zoo", "*.inc")) \
        + glob.glob(os.path.join(ROOT, "specs", "zoo", "cifar", "*.inc"))
    return sorted(os.path.relpath(p, ROOT) for p in found)


def seconds_per_batch(model, x, iters: int, warmup: int, clock) -> float:
    """Median time of one forward pass."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        times = []
        for _ in range(iters):
            sync()
            start = clock()
            model(x)
            sync()
            times.append(clock() - start)
    return statistics.median(times)


def measure(spec: str, args) -> dict:
    net = incdsl.load(os.path.join(ROOT, spec) if not os.path.isabs(spec) else spec)
    model = incdsl.to_torch(net, seed=0, optimize=args.level).eval().to(args.device)
    x = torch.randn(args.batch, *net.input_shape, device=args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    row = {"spec": spec, "input": "x".join(map(str, net.input_shape))}
    outputs = {}
    for name, layout in LAYOUTS.items():
        model = model.to(memory_format=layout)
        xl = x.contiguous(memory_format=layout)
        row[name] = seconds_per_batch(model, xl, args.iters, args.warmup, clock)
        with torch.inference_mode():
            outputs[name] = model(xl).float()
    row["speedup"] = row["contiguous"] / row["channels_last"]
    scale = max(outputs["contiguous"].abs().max().item(), 1.0)
    row["max_rel_diff"] = (outputs["contiguous"] - outputs["channels_last"]).abs().max().item() / scale
    return row


def table(rows: list[dict], batch: int) -> str:
    lines = ["| spec | input | contiguous ms/batch | channels_last ms/batch | channels_last speedup | max rel diff |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['spec']} | {r['input']} | {1000 * r['contiguous']:,.1f} | {1000 * r['channels_last']:,.1f} "
                     f"| {r['speedup']:.2f}x | {r['max_rel_diff']:.1e} |")
    faster = sum(r["speedup"] > 1 for r in rows)
    lines.append("")
    lines.append(f"channels_last faster for {faster} of {len(rows)} specs (batch {batch}); "
                 f"speedup from {min(r['speedup'] for r in rows):.2f}x to {max(r['speedup'] for r in rows):.2f}x")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="*", help="spec files (default: every shipped network)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--level", default="infer", choices=["none", "train", "infer"], help="incdsl.to_torch(optimize=)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on the CPU")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                   help="cpu: this process's CPU time, robust to other load (with --threads 1)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("layout.py: no CUDA device here", file=sys.stderr)
        return 0
    if args.device == "cuda":
        args.clock = "wall"  # CPU time says nothing of the GPU's; each forward is synchronised
    torch.set_num_threads(args.threads)
    rows = [measure(spec, args) for spec in (args.specs or shipped_specs())]
    print(f"- torch {torch.__version__}, {args.device}, batch {args.batch}, level {args.level}, "
          f"{args.threads} thread(s), {args.iters} iterations (median) after {args.warmup} warm-up, {args.clock} clock")
    print()
    print(table(rows, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
