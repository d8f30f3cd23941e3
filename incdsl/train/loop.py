"""The training loop: build, (resume,) train epoch by epoch, evaluate, checkpoint.

`train(network, config)` runs in every process torchrun starts (or the only one). Rank 0
prints and writes `OUT/last.pt` after every epoch, `OUT/final.pt` and `OUT/summary.json`
at the end, and rewrites `OUT/metrics.jsonl` (one JSON object per epoch) after each
checkpoint, so the metrics never run ahead of what a resume would restore.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..diagnostics import error
from . import checkpoint as ckpt
from . import distributed
from .data import make_loaders, open_data, reseed
from .optim import WeightAverage, build_optimizer, learning_rate, set_learning_rate
from .progress import Progress
from .recipes import Recipe, as_dict, from_dict, get_recipe, with_overrides

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainConfig:
    """What `incdsl train` was asked to do, besides the network itself."""

    data: str
    out: str
    recipe: str | None = None           # recipe name; None: "default", or the checkpoint's on resume
    overrides: dict = field(default_factory=dict)  # recipe fields given explicitly
    device: str | None = None           # "cuda" | "cpu" | None (CUDA when present)
    amp: str | None = None              # "bf16" | "fp16" | None
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    seed: int | None = None             # None: 0, or the checkpoint's on resume
    workers: int | None = None          # loader processes; None: the data's suggestion
    num_classes: int | None = None      # replace the classifier (specs without `classes`)
    resume: str | None = None           # a checkpoint file or an --out folder
    stop_after: int | None = None       # leave after this many epochs, as if interrupted
    synthetic_size: int = 1024
    log_every: int = 10                 # steps between loss checks and progress updates


@dataclass
class Run:
    """The pieces of a run that epochs update."""

    ctx: distributed.Context
    recipe: Recipe
    model: torch.nn.Module              # the module itself (weights, checkpoints, evaluation)
    forward: torch.nn.Module            # what training calls: DDP and/or compiled wrapper
    optimizer: torch.optim.Optimizer
    ema: WeightAverage | None
    scaler: object | None
    autocast: object
    memory_format: torch.memory_format
    steps_per_epoch: int
    seed: int
    step: int = 0
    history: list = field(default_factory=list)


def train(network, config: TrainConfig, *, log=print, stream=sys.stderr) -> dict:
    """Train `network` (an `incdsl.Network`) as `config` says; returns the run's summary.

    `log` receives rank 0's report lines, `stream` its progress bars.
    Raises IncdslError for bad data, a classifier that does not fit, a missing CUDA
    device, a bad checkpoint or a loss that stops being finite.
    """
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    ctx = distributed.setup(config.device)
    try:
        return _train(network, config, ctx, log if ctx.main else _quiet, stream)
    finally:
        distributed.teardown(ctx)
        torch.use_deterministic_algorithms(flags[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[1], flags[2]


def _quiet(*args, **kwargs) -> None:
    pass


def _train(network, config: TrainConfig, ctx, log, stream) -> dict:
    _check_config(config, ctx)
    resumed = ckpt.load(ckpt.find(config.resume)) if config.resume else None
    recipe = _resolve_recipe(config, resumed)
    seed = config.seed if config.seed is not None else (resumed["seed"] if resumed else 0)
    _set_determinism(config.deterministic, ctx)
    _seed_all(seed)

    data = open_data(config.data, network.input_shape, num_classes=_output_classes(network, config),
                     seed=seed, synthetic_size=config.synthetic_size, workers=config.workers)
    run = _build(network, config, ctx, recipe, seed, data)
    train_loader, sampler, val_loader = make_loaders(
        data, recipe.batch_size, rank=ctx.rank, world=ctx.world, seed=seed, workers=config.workers,
        pin_memory=ctx.device.type == "cuda")
    if len(train_loader) == 0:
        raise error(f"the training set ({len(data.train)} images over {ctx.world} process(es)) is smaller "
                    f"than one batch of {recipe.batch_size}", hint="pass a smaller --batch-size")
    run.steps_per_epoch = len(train_loader)
    start = _restore(run, resumed, network, log) if resumed else 0
    if not resumed:
        _seed_all(seed + ctx.rank)  # processes share initial weights (DDP copies rank 0's) but not dropout
    if ctx.main:
        os.makedirs(config.out, exist_ok=True)
    log(f"{network.name}: {data.description}; {ctx.world} process(es) on {ctx.device.type}")
    log(_describe(recipe, config))

    began, state = time.perf_counter(), None
    stop = recipe.epochs if config.stop_after is None else min(recipe.epochs, start + config.stop_after)
    for epoch in range(start, stop):
        reseed(train_loader, sampler, seed, epoch)
        t0 = time.perf_counter()
        loss, images, train_seconds = _train_epoch(run, train_loader, epoch, config, stream)
        metrics = _evaluate(run, val_loader)
        record = {"epoch": epoch + 1, "train_loss": loss, "val_loss": metrics["loss"], "val_top1": metrics["top1"],
                  "val_top5": metrics["top5"], "lr": run.optimizer.param_groups[0]["lr"],
                  "images_per_s": images / max(train_seconds, 1e-9), "seconds": time.perf_counter() - t0}
        run.history.append(record)
        state = _checkpoint(run, network, config, epoch + 1)
        if ctx.main:
            ckpt.save(os.path.join(config.out, ckpt.LAST), state)
            _write_metrics(config.out, run.history)
        log(_epoch_line(record, recipe.epochs, run.ema is not None))
    return _finish(run, network, config, state, stop, time.perf_counter() - began, log)


# setup ----------------------------------------------------------------------------------

def _check_config(config: TrainConfig, ctx) -> None:
    if config.amp not in (None, *AMP_DTYPES):
        raise error(f"unknown --amp `{config.amp}`", hint="use --amp bf16 or --amp fp16")
    if config.amp == "fp16" and ctx.device.type != "cuda":
        raise error("--amp fp16 needs a CUDA device", hint="use --amp bf16 on the CPU, or --device cuda")


def _resolve_recipe(config: TrainConfig, resumed: dict | None) -> Recipe:
    """The named recipe (or the checkpoint's, when resuming without --recipe), then overrides."""
    if config.recipe is None and resumed is not None:
        base = from_dict(resumed["recipe"])
    else:
        try:
            base = get_recipe(config.recipe or "default")
        except KeyError:
            from ..diagnostics import did_you_mean
            from .recipes import RECIPES
            raise error(f"unknown recipe `{config.recipe}`",
                        hint=did_you_mean(config.recipe, RECIPES) or f"the recipes are {', '.join(RECIPES)}") from None
    try:
        return with_overrides(base, config.overrides)
    except ValueError as exc:
        raise error(str(exc)) from None


def _set_determinism(on: bool, ctx) -> None:
    if on:
        # cuBLAS needs a fixed workspace for reproducible matrix products (CUDA docs)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = ctx.device.type == "cuda" and not on


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _output_classes(network, config: TrainConfig) -> int | None:
    if config.num_classes:
        return config.num_classes
    shape = network.output_shape
    return shape[0] if len(shape) == 1 else None


def _build(network, config: TrainConfig, ctx, recipe: Recipe, seed: int, data) -> Run:
    from ..backends.torch import to_torch
    model = to_torch(network, num_classes=config.num_classes, seed=seed)
    classes = len(data.classes)
    if model.num_classes != classes:
        has_param = "classes" in network.params
        raise error(f"the network's classifier gives {model.num_classes} classes, but the data has {classes}",
                    notes=[f"data: {data.description}"],
                    hint=f"pass --classes {classes}" + ("" if has_param else
                         " (the spec has no `classes` parameter, so its last linear layer is replaced)"))
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(ctx.device, memory_format=memory_format)
    forward = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel
        forward = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if config.compile:
        forward = torch.compile(forward)
    dtype = AMP_DTYPES.get(config.amp)
    autocast = (lambda: torch.autocast(ctx.device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
    return Run(ctx, recipe, model, forward, build_optimizer(model, recipe),
               WeightAverage(model, recipe.ema_decay) if recipe.ema_decay else None,
               scaler, autocast, memory_format, 0, seed)


def _restore(run: Run, state: dict, network, log) -> int:
    """Load a checkpoint into the run; returns the epoch to start from."""
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.ema is not None:
            if state["ema"] is None:
                run.ema = WeightAverage(run.model, run.recipe.ema_decay)
            else:
                run.ema.load_state_dict(state["ema"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise error("the checkpoint does not fit this network",
                    notes=[str(exc).strip().splitlines()[0]],
                    hint="resume with the spec, --set, --input and --classes the run started with") from None
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    if state["scheduler"]["steps_per_epoch"] != run.steps_per_epoch:
        log(f"warning: {run.steps_per_epoch} steps per epoch now, {state['scheduler']['steps_per_epoch']} "
            "before: the run will not continue exactly")
    if state["spec"]["sources"] != ckpt.plain(network.sources):
        log("warning: the spec text differs from the checkpoint's")
    run.step = state["scheduler"]["step"]
    run.history = list(state["history"])
    rng = state["rng"]
    if len(rng) != run.ctx.world:
        log(f"warning: the checkpoint has random states for {len(rng)} process(es), this run has "
            f"{run.ctx.world}: the run will not continue exactly")
    ckpt.restore_rng(rng[run.ctx.rank % len(rng)])
    log(f"resumed after epoch {state['epoch']} (step {run.step})")
    return int(state["epoch"])


def _describe(recipe: Recipe, config: TrainConfig) -> str:
    parts = [f"{recipe.optimizer} lr {recipe.lr:g} ({recipe.schedule})", f"{recipe.epochs} epochs",
             f"batch {recipe.batch_size}"]
    if recipe.weight_decay:
        parts.append(f"weight decay {recipe.weight_decay:g}")
    if recipe.label_smoothing:
        parts.append(f"label smoothing {recipe.label_smoothing:g}")
    if recipe.clip_grad:
        parts.append(f"clip {recipe.clip_grad:g}")
    if recipe.ema_decay:
        parts.append(f"EMA {recipe.ema_decay:g}")
    flags = [name for name, on in (("amp " + str(config.amp), config.amp), ("channels-last", config.channels_last),
                                   ("compiled", config.compile), ("deterministic", config.deterministic)) if on]
    return "recipe: " + ", ".join(parts + flags)


# epochs ---------------------------------------------------------------------------------

def _loss(output, labels, aux_weights, smoothing: float):
    """Cross-entropy of the main logits plus each auxiliary head's, weighted as the spec says."""
    if isinstance(output, tuple):
        logits, aux = output
    else:
        logits, aux = output, []
    loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    for weight, aux_logits in zip(aux_weights, aux):
        loss = loss + weight * F.cross_entropy(aux_logits, labels, label_smoothing=smoothing)
    return loss


def _train_epoch(run: Run, loader, epoch: int, config: TrainConfig, stream):
    """One pass over the training shard; returns (mean loss over all processes, images, seconds)."""
    ctx, recipe = run.ctx, run.recipe
    run.model.train()
    aux_weights = list(getattr(run.model, "aux_weights", []))
    params = [p for p in run.model.parameters() if p.requires_grad]
    progress = Progress(stream, run.steps_per_epoch, f"epoch {epoch + 1}/{recipe.epochs}", enabled=ctx.main)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    seen, start, lr = 0, time.perf_counter(), 0.0
    for i, (images, labels) in enumerate(loader):
        lr = learning_rate(recipe, run.step, run.steps_per_epoch)
        set_learning_rate(run.optimizer, lr)
        images = images.to(ctx.device, non_blocking=True, memory_format=run.memory_format)
        labels = labels.to(ctx.device, non_blocking=True)
        with run.autocast():
            loss = _loss(run.forward(images), labels, aux_weights, recipe.label_smoothing)
        run.optimizer.zero_grad(set_to_none=True)
        _backward_step(run, loss, params)
        run.step += 1
        loss_sum += loss.detach().double() * len(labels)
        seen += len(labels)
        if (i + 1) % config.log_every == 0 or i + 1 == run.steps_per_epoch:
            total, count = distributed.all_reduce_sum(ctx, [loss_sum.item(), seen])
            if not math.isfinite(total):
                raise _diverged(config, epoch, i + 1, run)
            progress.update(i + 1, int(count), total / count, lr)
    progress.close()
    total, count = distributed.all_reduce_sum(ctx, [loss_sum.item(), seen])
    return total / count, int(count), time.perf_counter() - start


def _backward_step(run: Run, loss, params) -> None:
    clip = run.recipe.clip_grad
    if run.scaler is not None:  # fp16: scale the loss so small gradients survive
        run.scaler.scale(loss).backward()
        if clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.model)


def _diverged(config: TrainConfig, epoch: int, step: int, run: Run):
    last = os.path.join(config.out, ckpt.LAST)
    kept = (f"the last good checkpoint is {last} (epoch {len(run.history)})" if run.history or config.resume
            else "no checkpoint was written")
    return error(f"the training loss is no longer finite (epoch {epoch + 1}, step {step}): stopping",
                 notes=[kept], hint="lower --lr, or clip the gradients with --clip-grad")


@torch.no_grad()
def _evaluate(run: Run, loader) -> dict:
    """Loss, top-1 and top-5 accuracy (fractions) on the validation set, over all processes.

    Evaluates the weight average when the recipe keeps one, as the papers did; auxiliary
    heads are not used (eval mode returns the main logits only).
    """
    module = run.ema.module if run.ema is not None else run.model
    module.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=run.ctx.device)  # loss, top-1, top-5, images
    for images, labels in loader:
        images = images.to(run.ctx.device, non_blocking=True, memory_format=run.memory_format)
        labels = labels.to(run.ctx.device, non_blocking=True)
        with run.autocast():
            logits = module(images)
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices == labels[:, None]
        sums += torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                             top[:, 0].sum().double(), top.any(dim=1).sum().double(),
                             torch.tensor(float(len(labels)), dtype=torch.float64, device=sums.device)])
    loss, top1, top5, n = distributed.all_reduce_sum(run.ctx, sums.tolist())
    n = max(n, 1.0)
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n}


# checkpoints and reports ----------------------------------------------------------------

def _checkpoint(run: Run, network, config: TrainConfig, epoch: int) -> dict:
    rng = distributed.all_gather(run.ctx, ckpt.capture_rng())
    return {
        "format": ckpt.FORMAT, "epoch": epoch,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": {"step": run.step, "steps_per_epoch": run.steps_per_epoch},
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": rng,
        "spec": {"name": network.name, "file": str(network.file), "sources": ckpt.plain(network.sources),
                 "params": ckpt.plain(network.params), "input": list(network.input_shape)},
        "recipe": as_dict(run.recipe), "num_classes": int(run.model.num_classes), "seed": run.seed,
        "history": list(run.history),
    }


def _write_metrics(out: str, history: list) -> None:
    from ..cli import write_atomic
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in history))


def _epoch_line(r: dict, epochs: int, ema: bool) -> str:
    weights = " (EMA)" if ema else ""
    return (f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  val top-1{weights} {100 * r['val_top1']:.2f}%  "
            f"top-5 {100 * r['val_top5']:.2f}%  lr {r['lr']:.4g}  {r['images_per_s']:,.0f} img/s  {r['seconds']:.1f} s")


def _finish(run: Run, network, config: TrainConfig, state, stopped_at: int, seconds: float, log) -> dict:
    """Write final.pt and summary.json once all epochs are done; returns the summary."""
    ctx, done = run.ctx, stopped_at >= run.recipe.epochs
    digests = distributed.all_gather(ctx, ckpt.weights_digest(run.model))
    last = run.history[-1] if run.history else {}
    best = max(run.history, key=lambda r: r["val_top1"]) if run.history else {}
    summary = {"network": network.name, "epochs": len(run.history), "finished": done,
               "seconds": seconds, "val_top1": last.get("val_top1"), "val_top5": last.get("val_top5"),
               "best_val_top1": best.get("val_top1"), "best_epoch": best.get("epoch"),
               "world_size": ctx.world, "weights_sha256": digests, "out": config.out}
    if ctx.main and state is not None and done:
        ckpt.save(os.path.join(config.out, ckpt.FINAL), state)
    if ctx.main:
        from ..cli import write_atomic
        write_atomic(os.path.join(config.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    distributed.barrier(ctx)
    if not run.history:
        log(f"{network.name}: nothing to do: {run.recipe.epochs} epochs already trained")
    elif not done:
        log(f"{network.name}: stopped after epoch {len(run.history)} of {run.recipe.epochs} in {seconds:.1f} s; "
            f"continue with --resume {config.out}")
    else:
        log(f"{network.name}: {len(run.history)} epochs in {seconds:.1f} s; val top-1 {100 * last['val_top1']:.2f}% "
            f"top-5 {100 * last['val_top5']:.2f}% (best top-1 {100 * best['val_top1']:.2f}% at epoch "
            f"{best['epoch']}); checkpoints and metrics in {config.out}")
    return summary
