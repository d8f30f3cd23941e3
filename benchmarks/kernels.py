"""Where the time goes: ours against the reference, kernel time by category, side by side.

The companion of `runtime.py` for a missed target: the same models (the reference's weights
loaded into ours at `--level`), the same step (inference or a training step), profiled with
`torch.profiler` over a few steps after a warm-up. Each kernel (CUDA) or operator (CPU) is put
in one category by its name; the table gives milliseconds per step for ours and the reference,
and the difference, so the categories that lose or win are read off at once; then the
largest kernels of each.

    python benchmarks/kernels.py --device cuda --batch 256 --amp bf16 --channels-last --mode train --level train
    python benchmarks/kernels.py --device cpu --batch 4 --mode infer --level infer --network googlenet

On CUDA the times are the kernels' device time; on the CPU, operators' own (self) CPU time.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runtime  # noqa: E402  (its models, weights and steps: one definition of what is timed)

# first match wins; kernel names (cuDNN, cutlass, triton, aten) and CPU operator names alike
CATEGORIES = (
    ("batch norm", r"batch_?norm|bn_fw|bn_bw|welford|native_batch_norm"),
    ("convolution / GEMM", r"conv|gemm|cutlass|sm\d+_xmma|implicit|mkldnn|addmm|matmul|\bmm\b|linear|cudnn"),
    ("pooling", r"pool"),
    ("concatenation / copy", r"cat|copy|contiguous|clone|memcpy|to_copy"),
    ("elementwise", r"relu|clamp|elementwise|vectorized|add|mul|div|threshold|fill|where|dropout|sigmoid|softmax"),
    ("optimizer", r"sgd|foreach|momentum|multi_tensor"),
    ("reduction", r"reduce|sum|mean|nll|cross_entropy|log_softmax"),
)


def category(name: str) -> str:
    low = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, low):
            return label
    return "other"


def profile_step(step, device: torch.device, warmup: int, steps: int) -> list[tuple[str, float]]:
    """(kernel or operator name, milliseconds per step) for `step`, its own time only."""
    for _ in range(warmup):
        step()
    runtime.sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        runtime.sync(device)
    rows = []
    for e in prof.key_averages():
        if device.type == "cuda":
            us = getattr(e, "self_device_time_total", None)
            if us is None:  # torch before the device-agnostic names
                us = e.self_cuda_time_total
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
        else:
            us = e.self_cpu_time_total
        if us > 0:
            rows.append((e.key, us / 1000.0 / steps))
    return rows


def by_category(rows: list[tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for name, ms in rows:
        totals[category(name)] += ms
    return dict(totals)


def table(ours: dict[str, float], ref: dict[str, float]) -> str:
    labels = [label for label, _ in CATEGORIES] + ["other"]
    lines = ["| category | ours ms/step | reference ms/step | ours - reference |", "|---|---:|---:|---:|"]
    for label in labels:
        a, b = ours.get(label, 0.0), ref.get(label, 0.0)
        if a or b:
            lines.append(f"| {label} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    a, b = sum(ours.values()), sum(ref.values())
    lines.append(f"| **total** | **{a:.2f}** | **{b:.2f}** | **{a - b:+.2f}** |")
    return "\n".join(lines)


def top(rows: list[tuple[str, float]], n: int) -> str:
    lines = ["| ms/step | category | kernel / operator |", "|---:|---|---|"]
    for name, ms in sorted(rows, key=lambda r: -r[1])[:n]:
        lines.append(f"| {ms:.2f} | {category(name)} | `{name[:90]}` |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--amp", choices=("bf16",))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--network", choices=tuple(runtime.NETWORKS), default="inception_v4")
    p.add_argument("--mode", choices=("infer", "train"), default="train")
    p.add_argument("--level", choices=runtime.LEVELS, default="train")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=12, help="largest kernels listed for each model")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("kernels.py: error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.mode == "train" and args.level in runtime.INFERENCE_ONLY:
        print(f"kernels.py: error: level {args.level!r} is for inference only: use --mode infer", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ref, ours, x, y, _, aux_weight = runtime.prepare(args.network, [args.level], args, device)
    model = ours[args.level]
    if isinstance(model, str):
        print(f"kernels.py: error: level {args.level}: {model}", file=sys.stderr)
        return 1
    train = args.mode == "train"
    results = {}
    for label, m in (("ours", model), ("reference", ref)):
        m.train(train)
        results[label] = profile_step(runtime.make_step(m, x, y, train, args.amp, aux_weight), device,
                                      args.warmup, args.steps)
    print(f"{args.network}, {args.mode}, level {args.level}, batch {args.batch}, {args.device}"
          f"{', bf16' if args.amp else ''}{', channels_last' if args.channels_last else ''}, "
          f"{args.steps} steps after {args.warmup} warm-up; {'device' if args.device == 'cuda' else 'self CPU'} time\n")
    print(table(by_category(results["ours"]), by_category(results["reference"])))
    for label in ("ours", "reference"):
        print(f"\nlargest, {label}:\n")
        print(top(results[label], args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
