"""One epoch of training and one evaluation, on the pieces of a run (`Run`).

Training adds each auxiliary head's loss with the module's `aux_weights`; evaluation runs
the module in eval mode, where it returns the main logits only, so the heads drop out.
Losses and accuracies are summed over all processes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import distributed, stop
from .data import UnreadableImages, split_batch
from .optim import WeightAverage, learning_rate, set_learning_rate
from .progress import Progress
from .recipes import Recipe


MIN_SCALE = 2.0 ** -126  # the fp16 loss scale below which training cannot go on (`check_finite`)


class NonFiniteLoss(Exception):
    """Training went off the rails at (epoch, step), both 1-based: `what` is "loss" (a batch's
    loss became inf or NaN), "weights" (a weight did, with every loss finite: an overflowing
    gradient without the fp16 scaler) or "scale" (the fp16 loss scale collapsed: below
    `MIN_SCALE`, after many overflows without 2,000 good steps between them to grow it again,
    the scaler no longer sees bad gradients)."""

    def __init__(self, epoch: int, step: int, what: str = "loss"):
        super().__init__(f"non-finite {what} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.what = epoch, step, what


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
    skip_bad_images: bool = False       # drop unreadable image files instead of stopping
    skipped: list = field(default_factory=list)  # `Unreadable` files dropped in the current epoch
    # fp16: the steps of the current epoch the gradient scaler skipped (inf/NaN gradients), counted
    # on the device (reading it waits for the device); None without a scaler or before a step
    overflows: object = None
    skipped_steps: int | None = None    # the same, read at the epoch's end (None without a scaler)


def loss_fn(output, labels, aux_weights, smoothing: float):
    """Cross-entropy of the main logits plus each auxiliary head's, weighted as the spec says."""
    if isinstance(output, tuple):
        logits, aux = output
    else:
        logits, aux = output, []
    loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    for weight, aux_logits in zip(aux_weights, aux):
        loss = loss + weight * F.cross_entropy(aux_logits, labels, label_smoothing=smoothing)
    return loss


def train_epoch(run: Run, loader, epoch: int, *, stream, log_every: int = 10, later_epochs: int = 0,
                epoch_seconds: float | None = None):
    """One pass over the training shard; returns (mean loss over all processes, images, seconds).

    `later_epochs` and `epoch_seconds` (the mean length of the epochs so far) feed the run's ETA.
    Raises UnreadableImages for an image file that does not decode, unless the run skips them
    (then they are added to `run.skipped`).
    """
    ctx, recipe = run.ctx, run.recipe
    run.model.train()
    aux_weights = list(getattr(run.model, "aux_weights", []))
    params = [p for p in run.model.parameters() if p.requires_grad]
    progress = Progress(stream, run.steps_per_epoch, f"epoch {epoch + 1}/{recipe.epochs}", enabled=ctx.main,
                        later_epochs=later_epochs, epoch_seconds=epoch_seconds)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    # the first step (1-based) whose loss was not finite, 0 while none: kept on the device every
    # step, read at each check, so no bad step slips between two checks
    first_bad = torch.zeros((), dtype=torch.int64, device=ctx.device)
    run.overflows, run.skipped_steps = None, None
    seen, start, lr, running, i = 0, time.perf_counter(), 0.0, float("nan"), -1
    try:
        for i, batch in enumerate(loader):
            stop.check()  # a SIGTERM: stop between two steps
            images, labels = take_readable(run, batch)
            lr = learning_rate(recipe, run.step, run.steps_per_epoch)
            if images is None:  # every file of the batch was skipped: keep the schedule's count
                run.step += 1
                continue
            set_learning_rate(run.optimizer, lr)
            images = images.to(ctx.device, non_blocking=True, memory_format=run.memory_format)
            labels = labels.to(ctx.device, non_blocking=True)
            with run.autocast():
                loss = loss_fn(run.forward(images), labels, aux_weights, recipe.label_smoothing)
            run.optimizer.zero_grad(set_to_none=True)
            backward_step(run, loss, params)
            # a step the fp16 scaler skipped still counts: the schedule follows the batches seen,
            # as timm's and torchvision's reference scripts step theirs, so epochs, warm-up and
            # resuming (step = epoch x steps_per_epoch) do not depend on how many steps overflowed
            run.step += 1
            loss = loss.detach()
            loss_sum += loss.double() * len(labels)
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss), i + 1, first_bad)
            seen += len(labels)
            if (i + 1) % log_every == 0 or i + 1 == run.steps_per_epoch:
                total, count = check_finite(run, loss_sum, first_bad, seen, epoch, i + 1)
                running = total / max(count, 1)
            progress.update(i + 1, seen * ctx.world, running, lr)  # every step: the bar moves, times stay fresh
        # always once more at the end (the last batch may have been skipped, or the loader may
        # be shorter than `steps_per_epoch`): nothing after a bad step reaches a checkpoint
        total, count = check_finite(run, loss_sum, first_bad, seen, epoch, i + 1)
        check_weights_finite(params, epoch, i + 1)
    except BaseException:
        progress.close(ok=False)  # end the bar's line: the error message starts on its own
        raise
    progress.close()
    if run.scaler is not None:
        run.skipped_steps = int(run.overflows.item()) if run.overflows is not None else 0
    return total / max(count, 1), int(count), time.perf_counter() - start


def check_finite(run: Run, loss_sum, first_bad, seen: int, epoch: int, step: int) -> tuple[float, float]:
    """(loss sum, images) over all processes; raises NonFiniteLoss if (fp16) the loss scale has
    collapsed, or a loss so far was not finite. One wait for the device."""
    total, bad, count = distributed.all_reduce_sum(run.ctx, [*torch.stack([loss_sum, first_bad.double()]).tolist(),
                                                            seen])
    # Below float32's smallest normal number the scaler's reciprocal of the scale overflows: it
    # unscales the (finite, because tiny or zero) scaled gradients to inf or NaN without seeing
    # them, so steps are no longer skipped but taken, and the weights go bad. Said first: the
    # NaN loss that follows is its consequence.
    if run.scaler is not None and run.scaler.get_scale() < MIN_SCALE:
        raise NonFiniteLoss(epoch + 1, step, "scale")
    if not math.isfinite(total) or bad:
        raise NonFiniteLoss(epoch + 1, int(first_bad.item()) or step)
    return total, count


def check_weights_finite(params, epoch: int, step: int) -> None:
    """Raise NonFiniteLoss if a weight is inf or NaN: a gradient can overflow while every loss
    stays finite (without fp16's scaler, which would skip the step), and such weights must not
    reach a checkpoint. One pass over the weights an epoch."""
    if params and not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        raise NonFiniteLoss(epoch + 1, step, "weights")


def take_readable(run: Run, batch):
    """(images, labels) of a batch, minus unreadable files (recorded, or UnreadableImages).

    A batch with none left gives (None, None); under DDP every process must step together,
    so there it is an error even when skipping.
    """
    images, labels, bad = split_batch(batch)
    if bad:
        if not run.skip_bad_images or (images is None and run.ctx.distributed):
            raise UnreadableImages([(u.path, u.reason) for u in bad])
        run.skipped.extend(bad)
    return images, labels


def backward_step(run: Run, loss, params) -> bool:
    """Gradients, clipping (on unscaled gradients), the optimiser step and the average's update.

    Returns whether the optimiser stepped, as far as the average needs to know (without one,
    True): under fp16 the scaler skips a step whose gradients hold an inf or NaN, and then the
    weights, so the average too, stay as they were (averaging them in again would count a step
    that did not happen). Each skip is also added to `run.overflows` (on the device).
    """
    clip = run.recipe.clip_grad
    stepped = True
    if run.scaler is not None:  # fp16: scale the loss so small gradients survive
        run.scaler.scale(loss).backward()
        if clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        run.scaler.step(run.optimizer)
        skipped = scaler_skipped(run.scaler, run.optimizer)  # before update(), which forgets it
        run.scaler.update()
        run.overflows = skipped if run.overflows is None else run.overflows + skipped
        # read only for the average: each read waits for the device
        stepped = run.ema is None or not bool(skipped)
    else:
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        run.optimizer.step()
    if stepped and run.ema is not None:
        run.ema.update(run.model)
    return stepped


def scaler_skipped(scaler, optimizer) -> torch.Tensor:
    """1.0 if `scaler.step(optimizer)` just skipped the step (it found inf or NaN gradients), else
    0.0: a tensor on the device, so counting costs no wait. Read between `step` and `update`.

    GradScaler records what it found per optimiser and device (`found_inf_per_device`, what its
    own `update` reads, whatever the optimiser: fused ones skip inside their own step) but has
    no public accessor; comparing scales before and after `update` would need two waits for
    the device.
    """
    if not scaler.is_enabled():  # `enabled=False` (or "cuda" without CUDA): it checks nothing, always steps
        return torch.zeros(())
    found = list(scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values())
    device = found[0].device
    return torch.stack([f.to(device).reshape(()) for f in found]).sum().clamp(max=1.0)


@torch.no_grad()
def sync_buffers(run: Run) -> None:
    """Make every process's batch-norm statistics (and the average's copy of them) equal."""
    distributed.average_buffers(run.ctx, run.model)
    if run.ema is not None and run.ctx.distributed:
        for avg, b in zip(run.ema.module.buffers(), run.model.buffers()):
            avg.copy_(b)


@torch.no_grad()
def evaluate(run: Run, loader) -> dict:
    """Loss, top-1 and top-5 accuracy (fractions) on the validation set, over all processes.

    Evaluates the weight average when the recipe keeps one, as the papers did; auxiliary
    heads are not used (eval mode returns the main logits only). Top-5 is None for five
    classes or fewer, where it is always 100%.
    """
    module = run.ema.module if run.ema is not None else run.model
    module.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=run.ctx.device)  # loss, top-1, top-5, images
    for batch in loader:
        stop.check()
        images, labels = take_readable(run, batch)
        if images is None:
            continue
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
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n if has_top5(run.model.num_classes) else None}


def has_top5(classes: int) -> bool:
    """Top-5 accuracy means something only with more than five classes."""
    return classes > 5
