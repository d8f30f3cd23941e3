"""Optimisers, the learning-rate schedule and weight averaging, built from a `Recipe`.

Factories are looked up by name (`OPTIMIZER_FACTORIES`), so recipes stay data. The
schedule is a pure function of the step (`learning_rate`): resuming needs only the step
count, and a test can check any point of it without training.
"""
from __future__ import annotations

import copy
import math

import torch

from .recipes import Recipe


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1 computes it, which the Inception-v3/v4 papers used.

    It differs from `torch.optim.RMSprop` where the papers' epsilon of 1.0 makes it matter:
    epsilon is added inside the square root, the mean square starts at one (not zero), and
    the learning rate scales the step before momentum accumulates it::

        ms  = decay * ms + (1 - decay) * g^2
        mom = momentum * mom + lr * g / sqrt(ms + eps)
        w   = w - mom

    Weight decay is the coupled L2 term (g += weight_decay * w), as TF-slim's regulariser; unlike
    TF-slim, which clips a gradient that includes it, the term is added after `--clip-grad`
    (it would change the norm by weight_decay * |w|: 4e-5 of the weights in the recipes).
    """

    def __init__(self, params, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["mean_square"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms, mom = state["mean_square"], state["momentum"]
                ms.mul_(group["decay"]).addcmul_(grad, grad, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(grad, ms.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


def _sgd(groups, r: Recipe):
    return torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0)


def _rmsprop_tf(groups, r: Recipe):
    return RMSpropTF(groups, lr=r.lr, decay=r.rms_decay, momentum=r.momentum, eps=r.eps)


def _adamw(groups, r: Recipe):
    return torch.optim.AdamW(groups, lr=r.lr, betas=(r.momentum, r.rms_decay), eps=r.eps)


OPTIMIZER_FACTORIES = {"sgd": _sgd, "rmsprop_tf": _rmsprop_tf, "adamw": _adamw}


def build_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over `model`'s parameters.

    Weight decay applies to conv and linear weights only: biases, batch-norm scales, PReLU
    slopes and learned scales (the one-dimensional parameters, and layer scales, which are
    [C, 1, 1] as torchvision names and shapes them) are left alone, as TF-slim's regulariser did
    and the PReLU paper asks.
    """
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and not name.endswith("layer_scale") else plain).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return OPTIMIZER_FACTORIES[recipe.optimizer]([g for g in groups if g["params"]], recipe)


def learning_rate(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step `step` (0-based) of a run.

    Linear warm-up over W = `warmup_epochs` epochs of steps (step i: lr * (i + 1) / W), then the
    schedule: `step` multiplies by `decay_rate` every `decay_every` epochs counted from the start
    of the run (a staircase, as the papers describe it), `cosine` anneals from the end of the
    warm-up to zero at the end of the last epoch, `constant` keeps the base rate.
    """
    epoch = step / steps_per_epoch
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return recipe.lr * min(1.0, (step + 1) / warmup_steps)
    if recipe.schedule == "step":
        return recipe.lr * recipe.decay_rate ** math.floor(epoch / recipe.decay_every + 1e-9)
    if recipe.schedule == "cosine":
        span = max(recipe.epochs - recipe.warmup_epochs, 1e-9)
        progress = min(max((epoch - recipe.warmup_epochs) / span, 0.0), 1.0)
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return recipe.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class WeightAverage:
    """An exponential moving average of a model's weights, evaluated instead of the model.

    The n-th update (n = 1, 2, ...) sets avg = d * avg + (1 - d) * w with
    d = min(decay, (1 + n) / (10 + n)), TensorFlow's `num_updates` ramp: early on this is
    close to a plain running mean of all weights so far (Polyak averaging), later an
    exponential average that forgets the first, poor weights. Buffers (batch-norm
    statistics) are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.module.parameters(), model.parameters()):
            avg.lerp_(p.detach(), 1.0 - decay)
        for avg, b in zip(self.module.buffers(), model.buffers()):
            avg.copy_(b)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
