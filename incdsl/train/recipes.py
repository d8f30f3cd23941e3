"""Training recipes as data: one `Recipe` per paper, every field overridable by name.

A recipe says how to optimise, not what to train: the network (and its auxiliary heads'
loss weights) comes from the spec, the data from the command line. The command line
grows one option per field (`--lr`, `--ema-decay`, ...), so adding a field here is all it
takes to make it tunable. No torch here: `incdsl train --help` stays cheap.

The papers' figures are cited next to each recipe; where a paper is silent (batch size,
weight decay, epochs) the value is the authors' released configuration or a documented
choice, and says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from ..lang.values import FLOAT32_MAX

OPTIMIZERS = ("sgd", "rmsprop_tf", "adamw")
MAX_EPOCHS = 1_000_000   # bounds that keep counts in machine integers (schedules, samplers)
MAX_BATCH = 1 << 20
SCHEDULES = ("step", "cosine", "constant")


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training run (all plain data; saved in checkpoints)."""

    optimizer: str = _f("sgd", f"optimiser: {', '.join(OPTIMIZERS)}")
    lr: float = _f(0.1, "base learning rate (for --batch-size images per process)")
    momentum: float = _f(0.9, "momentum (sgd, rmsprop_tf); beta1 for adamw")
    nesterov: bool = _f(False, "Nesterov momentum (sgd)")
    rms_decay: float = _f(0.9, "decay of the mean square (rmsprop_tf); beta2 for adamw")
    eps: float = _f(1e-8, "epsilon in the denominator (rmsprop_tf: inside the square root)")
    weight_decay: float = _f(0.0, "weight decay on conv and linear weights only, not biases, batch norm, PReLU "
                                  "slopes or learned scales (sgd, rmsprop_tf: L2 added to the gradient; adamw: "
                                  "decoupled)")
    schedule: str = _f("cosine", f"learning-rate schedule: {', '.join(SCHEDULES)}")
    decay_every: float = _f(1.0, "step schedule: epochs between decays, counted from the start (warm-up included)")
    decay_rate: float = _f(1.0, "step schedule: factor applied at each decay")
    warmup_epochs: float = _f(0.0, "epochs of linear warm-up: step i of its W steps uses lr * (i + 1) / W")
    epochs: int = _f(10, "epochs to train")
    batch_size: int = _f(64, "images per process and step")
    label_smoothing: float = _f(0.0, "label smoothing of the training loss, aux heads' too (the validation loss "
                                     "is plain cross-entropy)")
    clip_grad: float = _f(0.0, "clip the global L2 norm of all gradients together to this, before weight decay "
                               "(0: off)")
    ema_decay: float = _f(0.0, "keep an exponential moving average of the weights for evaluation (0: off)")


def _recipe(summary: str, **values) -> tuple[str, Recipe]:
    return summary, Recipe(**values)


# name -> (one-line summary with sources, recipe)
RECIPES: dict[str, tuple[str, Recipe]] = {
    # A short-run recipe for small networks and data (digits, CIFAR-sized): SGD with
    # Nesterov momentum and a cosine schedule after one epoch of warm-up.
    "default": _recipe(
        "SGD, Nesterov momentum 0.9, lr 0.1 cosine-annealed after a one-epoch warm-up, weight decay 5e-4, "
        "label smoothing 0.1; 15 epochs of 64 images",
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
        warmup_epochs=1.0, epochs=15, batch_size=64, label_smoothing=0.1),
    # Szegedy et al. 2014, "Going deeper with convolutions", section 6: asynchronous SGD with
    # momentum 0.9, "decreasing the learning rate by 4% every 8 epochs", Polyak averaging for
    # the final model. The base rate, batch size and weight decay are not in the paper; these
    # are the BVLC Caffe GoogLeNet solver's (0.01, 32, 2e-4). Polyak averaging is approximated
    # by an average of the weights that becomes exponential with decay 0.9999.
    "googlenet": _recipe(
        "GoogLeNet paper: SGD momentum 0.9, lr 0.01 decreased 4% every 8 epochs, Polyak-style weight "
        "averaging; weight decay 2e-4, 32 images a step (Caffe's solver)",
        optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=2e-4, schedule="step", decay_every=8.0,
        decay_rate=0.96, epochs=250, batch_size=32, ema_decay=0.9999),
    # Szegedy et al. 2015, "Rethinking the Inception architecture", section 8: RMSProp with
    # decay 0.9 and epsilon 1.0, lr 0.045 decayed every two epochs by 0.94, gradient clipping
    # at 2.0, label smoothing 0.1 (section 7), evaluation on a running average of the
    # parameters; batch 32 per replica. Momentum 0.9 and weight decay 4e-5 are TF-slim's
    # released settings.
    "inception_v3": _recipe(
        "Inception-v3 paper: RMSProp decay 0.9 eps 1.0, lr 0.045 decayed 0.94 every 2 epochs, gradient "
        "clipping 2.0, label smoothing 0.1, weight EMA 0.9999; weight decay 4e-5, 32 images a step",
        optimizer="rmsprop_tf", lr=0.045, momentum=0.9, rms_decay=0.9, eps=1.0, weight_decay=4e-5,
        schedule="step", decay_every=2.0, decay_rate=0.94, epochs=100, batch_size=32,
        label_smoothing=0.1, clip_grad=2.0, ema_decay=0.9999),
    # Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the impact of residual
    # connections", section 4: the same RMSProp setting and schedule, evaluation on a running
    # average of the parameters; the paper mentions neither clipping (off) nor label smoothing
    # (Inception-v3's 0.1 is kept).
    "inception_v4": _recipe(
        "Inception-v4 paper: RMSProp decay 0.9 eps 1.0, lr 0.045 decayed 0.94 every 2 epochs, "
        "weight EMA 0.9999; label smoothing 0.1 (Inception-v3's), weight decay 4e-5, 32 images a step",
        optimizer="rmsprop_tf", lr=0.045, momentum=0.9, rms_decay=0.9, eps=1.0, weight_decay=4e-5,
        schedule="step", decay_every=2.0, decay_rate=0.94, epochs=100, batch_size=32,
        label_smoothing=0.1, ema_decay=0.9999),
}


def recipe_fields() -> list:
    """The `dataclasses.Field`s of `Recipe`, in order (for building command-line options)."""
    return list(fields(Recipe))


def get_recipe(name: str) -> Recipe:
    """The named recipe. Raises KeyError for an unknown name (the caller words the error)."""
    return RECIPES[name][1]


def with_overrides(recipe: Recipe, overrides: dict) -> Recipe:
    """`recipe` with the fields in `overrides` replaced; None values are ignored.

    Raises ValueError naming the first value out of range.
    """
    updated = replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    validate(updated)
    return updated


def validate(recipe: Recipe) -> None:
    """Raise ValueError for a hyper-parameter out of its range."""
    for f in fields(Recipe):
        value = getattr(recipe, f.name)
        if f.type == "float" and not math.isfinite(value):
            raise ValueError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        if f.type == "float" and abs(value) > FLOAT32_MAX:  # the optimiser multiplies float32 tensors by it
            raise ValueError(f"--{f.name.replace('_', '-')} must be at most {FLOAT32_MAX:.3g}, got {value:g}")
    checks = [
        (recipe.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (recipe.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
        (recipe.lr > 0, "--lr must be positive"),
        (1 <= recipe.epochs <= MAX_EPOCHS, f"--epochs must be in [1, {MAX_EPOCHS:,}]"),
        (1 <= recipe.batch_size <= MAX_BATCH, f"--batch-size must be in [1, {MAX_BATCH:,}]"),
        (0 <= recipe.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (0 <= recipe.ema_decay < 1, "--ema-decay must be in [0, 1)"),
        (recipe.clip_grad >= 0, "--clip-grad must be >= 0"),
        (recipe.weight_decay >= 0, "--weight-decay must be >= 0"),
        (recipe.decay_every > 0, "--decay-every must be positive"),
        (0 < recipe.decay_rate <= 1, "--decay-rate must be in (0, 1]"),  # above 1, the rate grows past any float
        (recipe.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
        (recipe.eps > 0, "--eps must be positive"),
        (0 <= recipe.momentum < 1, "--momentum must be in [0, 1)"),
        (0 <= recipe.rms_decay < 1, "--rms-decay must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def check_value(name: str, value) -> None:
    """Raise ValueError if `value` is out of range for field `name` (each field is checked alone)."""
    validate(replace(Recipe(), **{name: value}))


def as_dict(recipe: Recipe) -> dict:
    return asdict(recipe)


_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def from_dict(values: dict) -> Recipe:
    """A recipe from `as_dict` output; unknown keys (from another version) are dropped.

    Raises ValueError for a value of the wrong type or out of range (a damaged checkpoint).
    """
    kept = {}
    for f in fields(Recipe):
        if f.name not in values:
            continue
        value = values[f.name]
        if not isinstance(value, _TYPES[f.type]) or (f.type != "bool" and isinstance(value, bool)):
            raise ValueError(f"recipe value `{f.name}` is {value!r}, not a {f.type}")
        kept[f.name] = value
    recipe = Recipe(**kept)
    validate(recipe)
    return recipe
