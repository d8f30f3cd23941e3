"""Speed of compiled networks against the hand-written reference modules.

Inception-v4 (specs/inception_v4.inc vs timm `inception_v4`) and GoogLeNet
(specs/variants/googlenet_torchvision.inc vs torchvision `googlenet`), same weights (the
reference's, loaded with `incdsl.load_weights`), same batch, same machine, in one run: every
optimisation level asked for (`--levels`, passed to `incdsl.to_torch(optimize=...)` where this
version has it), inference and training, eager and `torch.compile` (`--exec`), and inference
replayed from CUDA graphs (`--cuda-graph`: `IncdslNet.capture`, the reference recorded alike).
Iterations of all the models of one row group alternate, so background load hits them alike;
the median iteration time of each gives images per second. `ours/ref` is ours / reference
time (1.00: as fast, above 1: slower); `speedup` is its inverse.

    python benchmarks/runtime.py --device cpu --batch 8
    python benchmarks/runtime.py --device cuda --batch 256 --amp bf16 --channels-last --exec eager compile
    python benchmarks/runtime.py --device cuda --batch 256 --amp bf16 --channels-last --modes infer --cuda-graph
    python benchmarks/runtime.py --merge a.json b.json     # one table from earlier --json files
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
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
LEVELS = ("none", "train", "infer")
INFERENCE_ONLY = {"infer"}  # levels whose rewrites (batch-norm folding) hold only in eval mode
DIFF_SAMPLES = 8  # the output check runs on this many images of the batch, in fp32
COLUMNS = ("network", "mode", "exec", "level", "ours img/s", "ref img/s", "ours/ref", "speedup",
           "max rel diff", "reference")
NUMERIC_ALIGN = ("---",) * 4 + ("---:",) * 5 + ("---",)  # markdown: numbers right-aligned


# --- what this version of incdsl offers ------------------------------------------------------

def accepts_optimize() -> bool:
    """Whether `incdsl.to_torch` takes `optimize=`: its signature, or its implementation's
    when the public function only forwards `**kwargs`."""
    params = inspect.signature(incdsl.to_torch).parameters
    if "optimize" in params:
        return True
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return False
    for name in ("incdsl.torch", "incdsl.torch.build"):  # before and after the layout move
        try:
            impl = getattr(importlib.import_module(name), "to_torch", None)
        except ImportError:
            continue
        if impl is not None:
            return "optimize" in inspect.signature(impl).parameters
    return False


def parse_levels(text: str) -> list[str]:
    levels = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in levels if s not in LEVELS]
    if bad or not levels:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(LEVELS)}; got {text!r}")
    return list(dict.fromkeys(levels))


# --- models and steps ---------------------------------------------------------------------

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


def capture(model, x):
    """A model's inference recorded as a CUDA graph: `IncdslNet.capture` where the model has it,
    else (the reference) the same recorder, `CapturedGraph`."""
    if hasattr(model, "capture"):
        return model.capture(x)
    from incdsl.torch.layers import CapturedGraph
    return CapturedGraph(model, x)


def graph_steps(models: dict, x, amp) -> dict:
    """Each model's inference captured (under the autocast of the eager rows); a step replays it."""
    autocast = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    runs = {}
    with torch.no_grad(), autocast():
        for k, m in models.items():
            runs[k] = capture(m, x)
    return {k: (lambda run=run: run(x)) for k, run in runs.items()}


def cuda_graphs_possible(device) -> bool:
    return device.type == "cuda"


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


def build_ours(net, ref_state: dict, level: str):
    """Our model at one optimisation level, carrying the reference's weights."""
    model = incdsl.to_torch(net, seed=0) if level == "none" else incdsl.to_torch(net, seed=0, optimize=level)
    incdsl.load_weights(model, ref_state)
    return model


def max_diff(model, ref, x) -> float:
    """Largest difference from the reference relative to the reference's largest value, eval
    mode, fp32: of the last feature map where the reference has `forward_features` (timm), else
    of the logits. The feature map is the stricter check: a freshly initialised classifier
    averages it down to logits so close that rounding hides any difference; and relative,
    since timm's initialisation leaves activations far from 1."""
    model, ref = model.eval(), ref.eval()
    with torch.no_grad():
        if hasattr(ref, "forward_features"):
            ours, theirs = model.forward_features(x), ref.forward_features(x)
        else:
            ours, theirs = model(x), ref(x)
        return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30)).item()


def prepare(name: str, levels: list, args, device):
    """The reference, our model per level ({level: model or error text}), the batch, diffs."""
    spec, _ = NETWORKS[name]
    net = incdsl.load(str(ROOT / spec))
    torch.manual_seed(0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    ref = reference(name)
    state = ref.state_dict()  # CPU tensors: our models load them before moving to the device
    ref = ref.to(device, memory_format=layout)
    ours, diffs = {}, {}
    x = torch.randn(args.batch, *net.input_shape, device=device).to(memory_format=layout)
    y = torch.randint(0, net.output_shape[0], (args.batch,), device=device)
    for level in levels:
        try:
            ours[level] = build_ours(net, state, level).to(device, memory_format=layout)
            diffs[level] = max_diff(ours[level], ref, x[:DIFF_SAMPLES])
        except Exception as exc:  # noqa: BLE001  (a level that fails is reported, the others still run)
            ours[level] = f"error: {type(exc).__name__}: {first_line(exc)}"
    aux_weights = next((m.aux_weights for m in ours.values() if not isinstance(m, str)), [])
    return ref, ours, x, y, diffs, (aux_weights[0] if aux_weights else 0.0)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def compiled(model, args):
    return torch.compile(model, mode=args.compile_mode, fullgraph=args.fullgraph)


# --- one network -------------------------------------------------------------------------

def run_network(name: str, levels: list, args, device, clock, progress, save=lambda rows: None) -> list[dict]:
    """Rows of one network; `save(rows)` after each timed group, so a run stopped by a time
    limit keeps what it measured."""
    ref, ours, x, y, diffs, aux_weight = prepare(name, levels, args, device)
    rows, models = [], {}

    def row(mode, how, level, note="", t=None):
        r = {"network": name, "mode": mode, "exec": how, "level": level, "batch": args.batch,
             "ours_s": None, "ref_s": None, "ours_img_s": None, "ref_img_s": None, "ratio": None,
             "speedup": None, "max_rel_diff": diffs.get(level), "reference": NETWORKS[name][1], "note": note}
        if t is not None:
            r.update(ours_s=t[level], ref_s=t["ref"], ours_img_s=args.batch / t[level],
                     ref_img_s=args.batch / t["ref"], ratio=t[level] / t["ref"], speedup=t["ref"] / t[level])
        rows.append(r)

    for how in args.exec:
        wrap = (lambda m: compiled(m, args)) if how == "compile" else (lambda m: m)  # cuda-graph: at timing
        ready = {level: m for level, m in ours.items() if not isinstance(m, str)}
        models = {"ref": wrap(ref), **{level: wrap(m) for level, m in ready.items()}}
        for mode in args.modes:
            train = mode == "train"
            timed_levels = [lv for lv in ready if not (train and lv in INFERENCE_ONLY)]
            if how == "cuda-graph" and train:
                for level in levels:
                    row(mode, how, level, ours[level] if isinstance(ours[level], str) else "CUDA graphs: inference only")
                continue
            for m in (ref, *ready.values()):
                m.train(train)
            progress(f"{name} {mode} {how}: timing ref + {', '.join(timed_levels) or 'nothing'}")
            try:
                if how == "cuda-graph":
                    steps = graph_steps({k: models[k] for k in ("ref", *timed_levels)}, x, args.amp)
                else:
                    steps = {k: make_step(models[k], x, y, train, args.amp, aux_weight) for k in ("ref", *timed_levels)}
                t = timed(steps, device, args.warmup, args.iters, clock)
                del steps  # a captured graph holds its memory pool
            except Exception as exc:  # noqa: BLE001  (one failing group must not hide the rest)
                for level in levels:
                    row(mode, how, level, f"error: {type(exc).__name__}: {first_line(exc)}")
                continue
            for level in levels:
                if isinstance(ours[level], str):
                    row(mode, how, level, ours[level])
                elif level not in timed_levels:
                    row(mode, how, level, "inference-only level: not timed in training")
                else:
                    row(mode, how, level, t=t)
            save(rows)
    del ref, ours, x, y, models  # free the device memory before the next network
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# --- output ------------------------------------------------------------------------------

def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    """The rows as one markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(NUMERIC_ALIGN) + "|"]
    for r in rows:
        ref = r["reference"] + (f" ({r['note']})" if r.get("note") else "")
        cells = (r["network"], r["mode"], r["exec"], r["level"], fmt(r["ours_img_s"], ",.1f"),
                 fmt(r["ref_img_s"], ",.1f"), fmt(r["ratio"], ".3f"), fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                 fmt(r["max_rel_diff"], ".1e"), ref)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: str, data: dict) -> None:
    """Whole or not at all: a temporary file beside the target, then a rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def merge(paths: list) -> int:
    """Print one table from several --json files (benchmarks/gpu.sh runs parts separately)."""
    rows = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            print(f"runtime.py: error: cannot read {path}: {exc}", file=sys.stderr)
            return 1
        print(f"- {data.get('setup', '?')}")
        rows += data.get("rows", [])
    print()
    print(table(rows))
    return 0


def describe(args, device) -> str:
    where = (f"{device} ({torch.cuda.get_device_name()})" if device.type == "cuda"
             else f"{device}, {torch.get_num_threads()} threads")
    return (f"torch {torch.__version__}, {where}, batch {args.batch}, amp {args.amp or 'off'}, "
            f"channels_last {args.channels_last}, exec {'+'.join(args.exec)}"
            + (f" (mode {args.compile_mode or 'default'}, fullgraph {args.fullgraph})" if "compile" in args.exec else "")
            + f", {args.iters} iterations (median) after {args.warmup} warm-up, {args.clock} clock")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--amp", choices=("bf16",), help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--exec", nargs="+", choices=("eager", "compile", "cuda-graph"), default=None,
                   help="eager, torch.compile and/or CUDA-graph replay (inference only), in one run (default: eager)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time inference replayed from a CUDA graph (same as adding cuda-graph to --exec)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (same as --exec compile)")
    p.add_argument("--compile-mode", help="torch.compile mode, e.g. max-autotune (default: torch's)")
    p.add_argument("--fullgraph", action="store_true", help="torch.compile(fullgraph=True)")
    p.add_argument("--levels", type=parse_levels, default=["none"], metavar="none[,train,infer]",
                   help="optimisation levels of our model (incdsl.to_torch(optimize=LEVEL)); default: none")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per model and mode")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS))
    p.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time, robust to other load on a shared machine (use with --threads 1)")
    p.add_argument("--json", metavar="PATH", help="also write the setup and rows as JSON")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print one table from earlier --json files and exit")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    args.exec = list(dict.fromkeys((args.exec or (["compile"] if args.compile else ["eager"]))
                                   + (["cuda-graph"] if args.cuda_graph else [])))
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        p.error("--batch and --iters must be at least 1, --warmup at least 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda was asked for, but PyTorch finds no CUDA device")
    if "cuda-graph" in args.exec and not cuda_graphs_possible(device):
        p.error("--cuda-graph (exec cuda-graph) replays CUDA graphs: use it with --device cuda")
    if args.clock == "cpu" and device.type == "cuda":
        p.error("--clock cpu measures CPU time; use it with --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides alike; fixed shapes
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    levels, missing = args.levels, []
    if not accepts_optimize():
        missing = [lv for lv in levels if lv != "none"]
        levels = ["none"]
    setup = describe(args, device)
    print(setup)
    for lv in missing:
        print(f"level {lv}: not available in this version (incdsl.to_torch takes no optimize=)")

    def progress(msg):
        print(f"  ... {msg}", file=sys.stderr, flush=True)

    rows = []

    def save(partial, complete=False):
        if args.json:
            write_json(args.json, {"setup": setup, "torch": torch.__version__, "device": str(device),
                                   "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                                   "levels": levels, "unavailable_levels": missing, "rows": rows + partial,
                                   "complete": complete})

    for i, name in enumerate(args.networks):
        rows += run_network(name, levels, args, device, clock, progress, save)
        save([], complete=i == len(args.networks) - 1)
    print()
    print(table(rows))
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    if ratios:
        print(f"\nworst ratio {max(ratios):.3f}, best {min(ratios):.3f} (ours time / reference time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
