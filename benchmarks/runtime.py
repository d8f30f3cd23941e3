"""Speed of compiled networks against the hand-written reference modules.

Inception-v4 (specs/inception_v4.inc vs timm `inception_v4`) and GoogLeNet
(specs/variants/googlenet_torchvision.inc vs torchvision `googlenet`), same weights (the
reference's, loaded with `incdsl.load_weights`), same batch, same machine, in one run.
Iterations of the two models alternate, so background load hits both alike; the median
iteration time of each gives images per second, and the ratio is ours / reference (time):
1.00 means as fast, above 1 slower.

    python benchmarks/runtime.py --device cpu --batch 8
    python benchmarks/runtime.py --device cuda --batch 64 --amp bf16 --channels-last --compile
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import incdsl  # noqa: E402

NETWORKS = {
    "inception_v4": ("specs/inception_v4.inc", "timm inception_v4"),
    "googlenet": ("specs/variants/googlenet_torchvision.inc", "torchvision googlenet"),
}


def reference(name: str):
    if name == "inception_v4":
        import timm
        return timm.create_model("inception_v4", pretrained=False, drop_rate=0.2)  # the spec's dropout
    import torchvision
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=False)


def outputs(out):
    """(logits, [aux logits]) from either kind of model in either mode."""
    if isinstance(out, torch.Tensor):
        return out, []
    if hasattr(out, "aux_logits2"):  # torchvision GoogLeNetOutputs
        return out.logits, [out.aux_logits1, out.aux_logits2]
    return out[0], list(out[1])


def make_step(model, x, y, train: bool, amp, aux_weight: float):
    """One inference or training iteration as a function of no arguments."""
    autocast = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    if not train:
        def infer():
            with torch.no_grad(), autocast():
                return model(x)
        return infer
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits, aux = outputs(model(x))
            loss = torch.nn.functional.cross_entropy(logits, y)
            for a in aux:
                loss = loss + aux_weight * torch.nn.functional.cross_entropy(a, y)
        loss.backward()
        opt.step()
    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, device, warmup: int, iters: int, clock=time.perf_counter) -> dict:
    """Median seconds per iteration of each function, iterations interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t = clock()
            fn()
            sync(device)
            times[k].append(clock() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def prepare(name: str, args, device):
    spec, _ = NETWORKS[name]
    net = incdsl.load(str(ROOT / spec))
    torch.manual_seed(0)
    ref = reference(name)
    ours = incdsl.to_torch(net, seed=0)
    incdsl.load_weights(ours, ref.state_dict())
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    ref, ours = (m.to(device, memory_format=layout) for m in (ref, ours))
    x = torch.randn(args.batch, *net.input_shape, device=device).to(memory_format=layout)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    with torch.no_grad():
        diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
    aux_weight = ours.aux_weights[0] if ours.aux_weights else 0.0
    if args.compile:
        ours, ref = torch.compile(ours), torch.compile(ref)
    return net, ours, ref, x, y, diff, aux_weight


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--amp", choices=("bf16",), help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per model and mode")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS))
    p.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time, robust to other load on a shared machine (use with --threads 1)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and device.type == "cuda":
        p.error("--clock cpu measures CPU time; use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"torch {torch.__version__}, device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda"
          else f", {torch.get_num_threads()} threads") + f", batch {args.batch}, amp {args.amp or 'off'}, "
          f"channels_last {args.channels_last}, compile {args.compile}, {args.iters} iterations (median), "
          f"{args.clock} clock")
    print(f"{'network':<14}{'mode':<7}{'ours img/s':>12}{'ref img/s':>12}{'ratio':>8}  reference")
    worst = 0.0
    for name in args.networks:
        net, ours, ref, x, y, diff, aux_weight = prepare(name, args, device)
        for mode in args.modes:
            train = mode == "train"
            ours.train(train), ref.train(train)
            t = timed({"ours": make_step(ours, x, y, train, args.amp, aux_weight),
                       "ref": make_step(ref, x, y, train, args.amp, aux_weight)}, device, args.warmup, args.iters, clock)
            ratio = t["ours"] / t["ref"]
            worst = max(worst, ratio)
            print(f"{name:<14}{mode:<7}{args.batch / t['ours']:>12.1f}{args.batch / t['ref']:>12.1f}{ratio:>8.3f}  "
                  f"{NETWORKS[name][1]} (max |logit diff| {diff:.1e})")
    print(f"worst ratio {worst:.3f} (ours time / reference time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
