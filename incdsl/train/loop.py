"""The training loop: build, (resume,) train epoch by epoch, evaluate, checkpoint.

`train(network, config)` runs in every process torchrun starts (or the only one). Rank 0
prints and writes `OUT/last.pt` after every epoch, `OUT/final.pt` and `OUT/summary.json`
at the end, and rewrites `OUT/metrics.jsonl` (one JSON object per epoch) after each
checkpoint, each file whole or not at all. The checkpoint goes first on purpose: it holds the
whole history, so metrics.jsonl is a copy of it that may lag one epoch if the process dies
between the two writes (a resume rewrites it from the checkpoint at once), but never
runs ahead of what a resume would restore (a metrics line for weights that were lost).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..diagnostics import error
from ..torch.memory import check_size, format_bytes, is_out_of_memory, out_of_memory_error, train_bytes
from . import checkpoint as ckpt
from . import distributed
from .data import UnreadableImages, held_bytes, make_loaders, open_data, reseed
from .epoch import NonFiniteLoss, Run, evaluate, sync_buffers, train_epoch
from .optim import WeightAverage, build_optimizer
from .progress import format_rate
from ..report.tables import counted
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
    channels_last: bool | None = None   # None: on (faster convolutions on CUDA and on most networks on the CPU), off with --deterministic
    compile: bool = False
    optimize: str = "none"              # to_torch's graph rewrites: "none" | "train" | "infer" (all exact)
    deterministic: bool = False
    seed: int | None = None             # None: 0, or the checkpoint's on resume
    workers: int | None = None          # loader processes; None: the data's suggestion
    threads: int | None = None          # CPU threads for torch's operators; None: torch's default
    num_classes: int | None = None      # replace the classifier (specs without `classes`)
    resume: str | None = None           # a checkpoint file or an --out folder
    stop_after: int | None = None       # leave after this many epochs, as if interrupted
    synthetic_size: int = 1024
    log_every: int = 10                 # steps between loss checks (the progress line moves every step)
    weights: str | None = None          # start from these weights: FILE, timm:NAME or torchvision:NAME
    skip_bad_images: bool = False       # drop image files that do not decode (counted) instead of stopping
    max_memory: int | None = None       # refuse CPU training estimated above this many bytes; None: half the machine's

    def settings(self) -> dict:
        """What a checkpoint keeps so `--resume DIR` alone continues the run the same way."""
        data = self.data if self.data in ("digits", "synthetic") else os.path.abspath(self.data)
        return {"data": data, "synthetic_size": self.synthetic_size, "amp": self.amp,
                "channels_last": self.channels_last, "deterministic": self.deterministic,
                "compile": self.compile, "optimize": self.optimize, "skip_bad_images": self.skip_bad_images,
                "weights": self.weights}


def train(network, config: TrainConfig, *, log=print, stream=None) -> dict:
    """Train `network` (an `incdsl.Network`) as `config` says; returns the run's summary.

    `log` receives rank 0's report lines, `stream` (default: stderr) its progress bars.
    Raises IncdslError for bad data, a classifier that does not fit, a missing CUDA
    device, a bad checkpoint or a loss that stops being finite.
    """
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.get_num_threads())
    if config.threads:
        torch.set_num_threads(config.threads)
    ctx = distributed.setup(config.device)
    try:
        return _train(network, config, ctx, log if ctx.main else _quiet, stream or sys.stderr)
    finally:
        distributed.teardown(ctx)
        torch.use_deterministic_algorithms(flags[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[1], flags[2]
        torch.set_num_threads(flags[3])


def _quiet(*args, **kwargs) -> None:
    pass


def resolved_channels_last(config: TrainConfig, device_type: str) -> bool:
    """--channels-last as given, else on for CUDA and the CPU unless the run must be deterministic
    (NHWC selects other kernels). On the CPU a training step of the README's example takes 0.58x
    the time in it, and 50 of 52 shipped networks infer faster (benchmarks/layout.py)."""
    if config.channels_last is not None:
        return config.channels_last
    return device_type in ("cuda", "cpu") and not config.deterministic


def _train(network, config: TrainConfig, ctx, log, stream) -> dict:
    config = replace(config, channels_last=resolved_channels_last(config, ctx.device.type))
    _check_config(config, ctx)
    resumed = ckpt.load(ckpt.find(config.resume)) if config.resume else None
    recipe = _resolve_recipe(config, resumed)
    seed = config.seed if config.seed is not None else (resumed["seed"] if resumed else 0)
    _set_determinism(config.deterministic, ctx)
    _seed_all(seed)
    if ctx.device.type == "cpu":  # CUDA says so itself when it runs out (caught below); the CPU may be killed instead
        _check_train_memory(network, config, recipe)

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
    run.skip_bad_images = config.skip_bad_images
    start = _restore(run, resumed, network, log) if resumed else 0
    if resumed and seed != resumed["seed"]:
        log(_seed_changed(resumed["seed"], seed, config.data))
    if not resumed:
        _seed_all(seed + ctx.rank)  # processes share initial weights (DDP copies rank 0's) but not dropout
    if ctx.main:
        from ..io import prepare_output_dir
        prepare_output_dir(config.out)
        if resumed:  # catch up with the checkpoint, should the last run have died between the two writes
            _write_metrics(config.out, run.history)
    log(f"{network.name}: {data.description}; {ctx.world} process(es) on {ctx.device.type}")
    for note in data.notes:
        log(f"note: {note}")
    if config.weights and not resumed:
        log(_start_from_weights(run, config.weights))
    log(_describe(recipe, config))

    began, state = time.perf_counter(), None
    stop = recipe.epochs if config.stop_after is None else min(recipe.epochs, start + config.stop_after)
    for epoch in range(start, stop):
        reseed(train_loader, sampler, seed, epoch)
        t0 = time.perf_counter()
        run.skipped = []
        try:
            loss, images, train_seconds = train_epoch(run, train_loader, epoch, stream=stream,
                                                      log_every=config.log_every, later_epochs=stop - epoch - 1,
                                                      epoch_seconds=_mean_epoch_seconds(run.history))
        except NonFiniteLoss as exc:
            raise _diverged(config, exc, run) from None
        except UnreadableImages as exc:
            raise _unreadable(exc) from None
        except (RuntimeError, MemoryError) as exc:
            if is_out_of_memory(exc):
                raise out_of_memory_error(exc, f"training `{network.name}`", recipe.batch_size) from None
            if config.deterministic and "deterministic" in str(exc):
                raise _no_deterministic_kernel(exc) from None
            if config.compile and type(exc).__module__.startswith("torch._dynamo"):
                raise error(f"torch.compile failed: {str(exc).strip().splitlines()[0]}",
                            hint="train without --compile") from None
            raise
        sync_buffers(run)
        try:
            metrics = evaluate(run, val_loader)
        except UnreadableImages as exc:
            raise _unreadable(exc) from None
        except (RuntimeError, MemoryError) as exc:
            if is_out_of_memory(exc):
                raise out_of_memory_error(exc, f"evaluating `{network.name}`", recipe.batch_size) from None
            raise
        record = {"epoch": epoch + 1, "train_loss": loss, "val_loss": metrics["loss"], "val_top1": metrics["top1"],
                  "val_top5": metrics["top5"], "lr": run.optimizer.param_groups[0]["lr"],
                  "images_per_s": images / max(train_seconds, 1e-9), "seconds": time.perf_counter() - t0}
        if run.skipped_steps is not None:  # fp16 only: without loss scaling no step is skipped
            record["skipped_steps"] = run.skipped_steps
        if data.files:
            record["skipped_images"] = int(distributed.all_reduce_sum(ctx, [len(run.skipped)])[0])
            if record["skipped_images"]:
                log(f"warning: skipped {record['skipped_images']} unreadable image(s) in epoch {epoch + 1}, "
                    f"e.g. {run.skipped[0].path if run.skipped else 'on another process'}")
        run.history.append(record)
        state = _checkpoint(run, network, config, epoch + 1)
        if ctx.main:  # this order: see the module docstring
            ckpt.save(os.path.join(config.out, ckpt.LAST), state)
            _write_metrics(config.out, run.history)
        log(_epoch_line(record, recipe.epochs, run.ema is not None))
    return _finish(run, network, config, state, stop, stop > start, time.perf_counter() - began, log,
                   resumed=start > 0)


# setup ----------------------------------------------------------------------------------

def _check_config(config: TrainConfig, ctx) -> None:
    if config.amp not in (None, *AMP_DTYPES):
        raise error(f"unknown --amp `{config.amp}`", hint="use --amp bf16 or --amp fp16")
    if config.amp == "fp16" and ctx.device.type != "cuda":
        raise error("--amp fp16 needs a CUDA device", hint="use --amp bf16 on the CPU, or --device cuda")


def _resolve_recipe(config: TrainConfig, resumed: dict | None) -> Recipe:
    """The named recipe (or the checkpoint's, when resuming without --recipe), then overrides."""
    if config.recipe is None and resumed is not None:
        try:
            base = from_dict(resumed["recipe"])
        except ValueError as exc:
            raise error(f"the checkpoint's recipe is damaged: {exc}", hint="pass --recipe NAME") from None
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


def _check_train_memory(network, config: TrainConfig, recipe: Recipe) -> None:
    """Refuse, before anything is allocated, a run whose memory estimate is over the limit."""
    held = held_bytes(config.data, network.input_shape)
    needed = train_bytes(network, recipe.batch_size, config.num_classes) + held
    shape = "x".join(str(d) for d in network.input_shape)
    notes = [f"in batches of {recipe.batch_size:,} images of {shape}, every layer's output is kept "
             "for the backward pass"]
    if held:
        notes.append(f"the data set holds {format_bytes(held)} at that size")
    check_size(network, needed, config.max_memory, what="training",
               override="--max-memory {gib}G, or pass a smaller --batch-size", notes=notes)


def _output_classes(network, config: TrainConfig) -> int | None:
    if config.num_classes:
        return config.num_classes
    shape = network.output_shape
    return shape[0] if len(shape) == 1 else None


def _build(network, config: TrainConfig, ctx, recipe: Recipe, seed: int, data) -> Run:
    from ..torch.build import to_torch
    try:
        model = to_torch(network, num_classes=config.num_classes, seed=seed, optimize=config.optimize)
    except ValueError as exc:  # --classes for a network that ends in no classifier
        raise error(f"cannot replace the classifier: {exc}",
                    hint="end the network in a `linear` classifier, or leave out --classes") from None
    classes = len(data.classes)
    if model.num_classes != classes:
        if not any(network.graph.nodes[n]["op"] == "linear" for n in network.layers):
            hint = f"end the network with a classifier, e.g. `gap -> flatten -> linear {classes}`"
        elif "classes" in network.params:
            hint = f"pass --classes {classes}"
        else:
            hint = f"pass --classes {classes} (the spec has no `classes` parameter: its last linear layer is replaced)"
        if config.resume:  # its weights are for the checkpoint's classes: another count starts a new run
            import shlex
            hint = (f"resume on data of the run's {model.num_classes} classes (leave out --data for its own), or "
                    f"fine-tune its weights in a new run: `incdsl train SPEC --data {shlex.quote(config.data)} "
                    f"--weights {shlex.quote(config.resume)} --classes {classes} --out NEW`")
        raise error(f"the network gives {model.num_classes} outputs, but the data has {classes} classes",
                    notes=[f"data: {data.description}"], hint=hint)
    _check_aux_outputs(network, classes, replaced=config.num_classes is not None)
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
    scaler = torch.amp.GradScaler(ctx.device.type) if config.amp == "fp16" else None
    return Run(ctx, recipe, model, forward, build_optimizer(model, recipe),
               WeightAverage(model, recipe.ema_decay) if recipe.ema_decay else None,
               scaler, autocast, memory_format, 0, seed)


def _load_optimizer_state(optimizer, saved: dict) -> None:
    """Load a checkpoint's per-parameter buffers but keep this run's hyper-parameters:
    `load_state_dict` also replaces every group's values (weight decay, momentum, eps, ...) with
    the saved ones, which would silently undo the recipe flags given again with --resume."""
    current = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, values in zip(optimizer.param_groups, current):
        group.update(values)


def _check_aux_outputs(network, classes: int, *, replaced: bool) -> None:
    """Raise IncdslError for an auxiliary head that does not end in one logit per class: its loss
    is a cross-entropy against the labels, which fails on a label past its outputs (an internal
    error) and is meaningless below. With `replaced` (--classes on a spec without `classes`),
    heads of the main classifier's shape get new classifiers, as `to_torch` does."""
    main = tuple(network.output_shape)
    for head in network.aux_heads:
        shape = tuple(network.graph.nodes[head["output"]]["shape"])
        if (replaced and shape == main) or shape == (classes,):
            continue
        size = "x".join(str(d) for d in shape)
        if replaced:
            hint = f"end it in `linear {main[0]}`, as the main classifier: --classes replaces both"
        else:
            hint = f"end it in `linear {'classes' if 'classes' in network.params else classes}`"
        raise error(f"auxiliary head `{head['name']}` gives {size} outputs, but training adds its loss against "
                    f"labels of {classes} classes", hint=hint)


def _seed_changed(before: int, now: int, data: str) -> str:
    """The warning for --seed given again with --resume: the data may no longer be the run's."""
    what = {"digits": "the digits' train/validation split changes too: validation images may have been "
                      "trained on",
            "synthetic": "the synthetic images change too: each class gets another pattern"}.get(data)
    return (f"warning: seed {now} now, {before} before: the order of the training images changes"
            + (f", and {what}" if what else ""))


def _check_optimizer_state(optimizer) -> None:
    """Raise ValueError where a loaded per-parameter buffer (momentum, moments) does not have its
    parameter's shape: `load_state_dict` checks only the number of parameters, and the first
    step would fail with an error from deep inside torch."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"optimiser state `{key}` has shape {tuple(value.shape)}, "
                                     f"its parameter {tuple(param.shape)}")


def _restore(run: Run, state: dict, network, log) -> int:
    """Load a checkpoint (already validated by `ckpt.load`) into the run; returns the epoch to start from."""
    try:
        run.model.load_state_dict(state["model"])
        before = state["recipe"].get("optimizer", run.recipe.optimizer)
        if before == run.recipe.optimizer:
            _load_optimizer_state(run.optimizer, state["optimizer"])
            _check_optimizer_state(run.optimizer)
        else:  # another optimiser's buffers mean nothing to this one
            log(f"warning: the optimiser is {run.recipe.optimizer} now, {before} before: its state "
                "(momentum, moments) starts afresh")
        if run.ema is not None:
            if state["ema"] is None:
                run.ema = WeightAverage(run.model, run.recipe.ema_decay)
            else:
                run.ema.load_state_dict(state["ema"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        notes = ckpt.spec_note(state, network) + (ckpt.weights_mismatch(run.model, state["model"])
                                                  or [(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]])
        raise error("the checkpoint does not fit this network", notes=notes,
                    hint="resume with the spec, --set, --input and --classes the run started with, or leave "
                         "out SPEC to use the checkpoint's own") from None
    try:
        if run.scaler is not None and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        ckpt.restore_rng(rng[run.ctx.rank % len(rng)])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise error(f"the checkpoint's random or scaler state is damaged: {type(exc).__name__}: "
                    f"{(str(exc).strip().splitlines() or [''])[0][:200]}", hint=ckpt.DAMAGED_HINT) from None
    if state["scheduler"]["steps_per_epoch"] != run.steps_per_epoch:
        log(f"warning: {run.steps_per_epoch} steps per epoch now, {state['scheduler']['steps_per_epoch']} "
            "before: the run will not continue exactly")
    if sorted(state["spec"]["sources"].values()) != sorted(ckpt.plain(network.sources).values()):
        log("warning: the spec text differs from the checkpoint's")
    run.step = state["scheduler"]["step"]
    run.history = list(state["history"])
    if len(rng) != run.ctx.world:
        log(f"warning: the checkpoint has random states for {len(rng)} process(es), this run has "
            f"{run.ctx.world}: the run will not continue exactly")
    log(f"resumed after epoch {state['epoch']} (step {run.step})")
    return int(state["epoch"])


def _describe(recipe: Recipe, config: TrainConfig) -> str:
    parts = [f"{recipe.optimizer} lr {recipe.lr:g} ({recipe.schedule})", counted(recipe.epochs, "epoch"),
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
                                   ("compiled", config.compile), ("deterministic", config.deterministic),
                                   ("optimize " + config.optimize, config.optimize != "none")) if on]
    return "recipe: " + ", ".join(parts + flags)


def _no_deterministic_kernel(exc: RuntimeError):
    """Word torch's error when --deterministic meets an operation with no deterministic kernel."""
    text = str(exc)
    return error("--deterministic: an operation of this network has no deterministic implementation here",
                 notes=[text.strip().splitlines()[0]],
                 hint="drop --deterministic (or --channels-last, which selects other kernels)")


def _unreadable(exc: UnreadableImages):
    path, reason = exc.bad[0]
    more = [f"{len(exc.bad) - 1} more in the same batch"] if len(exc.bad) > 1 else []
    return error(f"cannot read image {path}: {reason}", notes=more,
                 hint="replace or delete the file, or pass --skip-bad-images to skip unreadable files")


def _mean_epoch_seconds(history: list) -> float | None:
    seconds = [r["seconds"] for r in history if isinstance(r.get("seconds"), (int, float))]
    return sum(seconds) / len(seconds) if seconds else None


def _start_from_weights(run: Run, source: str) -> str:
    """Load `--weights` into the model (and its average); returns the line that says what was loaded."""
    from .pretrained import load_pretrained
    report = load_pretrained(run.model, source)
    if run.ema is not None:
        run.ema.module.load_state_dict(run.model.state_dict())
    return f"weights: {report.summary()} from {source}"


def _diverged(config: TrainConfig, exc: NonFiniteLoss, run: Run):
    last = os.path.join(config.out, ckpt.LAST)
    kept = (f"the last good checkpoint is {last} (epoch {len(run.history)})" if run.history or config.resume
            else "no checkpoint was written")
    where = f"(epoch {exc.epoch}, step {exc.step})"
    if exc.what == "scale":
        return error(f"the fp16 loss scale collapsed {where}: too many steps overflowed; stopping",
                     notes=[kept, "below 2^-126 the gradient scaler no longer sees inf or NaN gradients"],
                     hint="train with --amp bf16, or lower --lr, or clip the gradients with --clip-grad")
    what = "the training loss is" if exc.what == "loss" else "the weights are"
    return error(f"{what} no longer finite {where}: stopping",
                 notes=[kept], hint="lower --lr, or clip the gradients with --clip-grad")


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
        "weights_sha256": ckpt.weights_digest(run.model),
        "ema_weights_sha256": ckpt.weights_digest(run.ema.module) if run.ema is not None else None,
        "settings": config.settings(),
    }


def _write_metrics(out: str, history: list) -> None:
    from ..io import write_atomic
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in history))


def _epoch_line(r: dict, epochs: int, ema: bool) -> str:
    weights = " (EMA)" if ema else ""
    top5 = f"  top-5 {100 * r['val_top5']:.2f}%" if r.get("val_top5") is not None else ""
    return (f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  val top-1{weights} {100 * r['val_top1']:.2f}%"
            f"{top5}  lr {r['lr']:.4g}  {format_rate(r['images_per_s'])} img/s  {r['seconds']:.1f} s{_skips(r)}")


def _skips(r: dict) -> str:
    """The epoch line's note of fp16 steps skipped for overflowing gradients (none: nothing)."""
    n = r.get("skipped_steps") or 0
    return f"  ({n} step{'s' if n != 1 else ''} skipped: fp16 overflow)" if n else ""


def resume_command(out: str, world: int = 1) -> str:
    """The command line that continues the run in `out` (its checkpoint holds everything else)."""
    import shlex
    launcher = f"torchrun --nproc_per_node={world} -m incdsl" if world > 1 else "incdsl"
    return f"{launcher} train --resume {shlex.quote(out)}"


def _finish(run: Run, network, config: TrainConfig, state, stopped_at: int, ran: bool, seconds: float, log, *,
            resumed: bool = False) -> dict:
    """Write summary.json, and final.pt once all epochs are done; returns the summary.

    The summary covers the whole run, resumed parts included: `epochs` and `seconds` (the sum of
    every epoch's time) come from the history; `session_seconds` is this process's share.
    """
    ctx, done = run.ctx, stopped_at >= run.recipe.epochs
    digests = distributed.all_gather(ctx, ckpt.weights_digest(run.model))
    ema_digests = distributed.all_gather(ctx, ckpt.weights_digest(run.ema.module)) if run.ema is not None else None
    last = run.history[-1] if run.history else {}
    best = max(run.history, key=lambda r: r["val_top1"]) if run.history else {}
    total_seconds = sum(r.get("seconds", 0.0) for r in run.history)
    summary = {"network": network.name, "epochs": len(run.history), "finished": done,
               "seconds": total_seconds, "session_seconds": seconds, "val_top1": last.get("val_top1"),
               "val_top5": last.get("val_top5"), "best_val_top1": best.get("val_top1"), "best_epoch": best.get("epoch"),
               "world_size": ctx.world, "weights_sha256": digests, "ema_weights_sha256": ema_digests,
               "out": config.out}
    if ctx.main and ran and done:
        ckpt.save(os.path.join(config.out, ckpt.FINAL), state)
    if ctx.main and ran:
        from ..io import write_atomic
        write_atomic(os.path.join(config.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    distributed.barrier(ctx)
    resumed_part = f" (this session: {seconds:.1f} s)" if resumed else ""
    if not ran:
        done_epochs = len(run.history)
        log(f"{network.name}: nothing to do: " + (
            f"{done_epochs} of {counted(run.recipe.epochs, 'epoch')} already trained" if done_epochs <= run.recipe.epochs
            else f"{counted(done_epochs, 'epoch')} already trained, more than the {run.recipe.epochs} asked for "
                 "(--epochs)"))
    elif not done:
        log(f"{network.name}: stopped after epoch {len(run.history)} of {run.recipe.epochs}, {total_seconds:.1f} s "
            f"in all{resumed_part}; continue with: {resume_command(config.out, ctx.world)}")
    else:
        top5 = f" top-5 {100 * last['val_top5']:.2f}%" if last.get("val_top5") is not None else ""
        log(f"{network.name}: {counted(len(run.history), 'epoch')} in {total_seconds:.1f} s{resumed_part}; val top-1 "
            f"{100 * last['val_top1']:.2f}%{top5} (best top-1 {100 * best['val_top1']:.2f}% at epoch "
            f"{best['epoch']}); checkpoints and metrics in {config.out}")
    return summary
