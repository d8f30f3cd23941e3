"""Differential audit of `incdsl train` and `incdsl eval` against an independent training loop.

The oracle below is written from the documented definitions alone (docs/training.md, the
recipes' help and the papers they cite), not from incdsl's code: its own learning-rate
schedule (exact fractions), its own choice of decayed parameters (conv and linear weights, by
module type), TensorFlow's RMSProp written out, `torch.optim.SGD`/`AdamW` for the others,
TensorFlow's global-norm clipping, its own weight average and its own auxiliary-loss sum (the
heads' logits taken with hooks, the weights from the spec). It trains a float64 copy of the
same initial network on the same batches (synthetic images in the order the sampler is
documented to give: a permutation drawn from seed + epoch), and every figure incdsl reports is
compared with it: per-step learning rates and losses, final and averaged weights, each epoch's
record, `metrics.jsonl`, `summary.json` and `incdsl eval`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import torch.nn.functional as F  # noqa: E402

import incdsl  # noqa: E402
from incdsl.cli import main  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from incdsl.train import epoch as epoch_module  # noqa: E402
from incdsl.train.data import SyntheticImages  # noqa: E402

# Two auxiliary heads of different weights (their order matters), batch norm, a conv with a
# bias, PReLU slopes: every kind of parameter the decay rule must sort. No dropout, so the
# oracle needs no random numbers of its own.
SPEC = """\
network audit(classes = 10):
    input 1x8x8
    with conv(bn = 0.001):
        conv 3x3 6 S as stem
        concat as mixed:
            branch: conv 1x1 4
            branch: conv 1x1 3 -> conv 3x3 4 S
    conv 3x3 8 /2 S act = relu
    gap -> flatten -> linear classes
    aux early(weight = 0.7) from stem: gap -> flatten -> linear classes
    aux late(weight = 0.2) from mixed: gap -> flatten -> prelu -> linear classes
"""

SIZE, BATCH, EPOCHS, SEED = 48, 8, 3, 3   # 6 steps an epoch, 12 validation images
STEPS = SIZE // BATCH

# Each recipe as its summary and the paper it cites state it (written out here, not read
# from incdsl): the oracle's hyper-parameters.
PAPERS = {
    "default": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                    warmup_epochs=1.0, label_smoothing=0.1),
    "googlenet": dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=2e-4, schedule="step", decay_every=8.0,
                      decay_rate=0.96, ema_decay=0.9999),
    "inception_v3": dict(optimizer="rmsprop_tf", lr=0.045, momentum=0.9, rms_decay=0.9, eps=1.0, weight_decay=4e-5,
                         schedule="step", decay_every=2.0, decay_rate=0.94, label_smoothing=0.1, clip_grad=2.0,
                         ema_decay=0.9999),
    "inception_v4": dict(optimizer="rmsprop_tf", lr=0.045, momentum=0.9, rms_decay=0.9, eps=1.0, weight_decay=4e-5,
                         schedule="step", decay_every=2.0, decay_rate=0.94, label_smoothing=0.1, ema_decay=0.9999),
}
UNSET = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, rms_decay=0.9, eps=1e-8, weight_decay=0.0,
             schedule="cosine", decay_every=1.0, decay_rate=1.0, warmup_epochs=0.0, label_smoothing=0.0,
             clip_grad=0.0, ema_decay=0.0)


# the oracle -------------------------------------------------------------------------------

def exact(x) -> Fraction:
    """A number as the decimal it was written as (0.1 is 1/10, not the float nearest it)."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def oracle_lr(h: dict, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The documented schedule at optimiser step `step` (0-based): warm-up step i of W rises
    linearly to the base rate, (i + 1) / W of it; then `step` multiplies by decay_rate once
    per decay_every epochs counted from the run's start, `cosine` follows half a cosine from
    the end of the warm-up to zero at the end of the last epoch, `constant` stays."""
    lr, at = exact(h["lr"]), Fraction(step, steps_per_epoch)   # epochs done, exactly
    warmup = exact(h["warmup_epochs"]) * steps_per_epoch
    if step < warmup:
        return float(lr * min(Fraction(1), (step + 1) / warmup))
    if h["schedule"] == "step":
        return float(lr) * h["decay_rate"] ** math.floor(at / exact(h["decay_every"]))
    if h["schedule"] == "cosine":
        span = epochs - exact(h["warmup_epochs"])
        progress = min(max((at - exact(h["warmup_epochs"])) / span, Fraction(0)), Fraction(1))
        return float(lr) * 0.5 * (1 + math.cos(math.pi * float(progress)))
    return float(lr)


def decayed_names(model) -> set:
    """The parameters weight decay applies to, as documented: conv and linear weights."""
    return {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}


class TFRMSProp:
    """TensorFlow 1's RMSPropOptimizer (training/rmsprop.py) with coupled L2 decay: the mean
    square starts at one, epsilon inside the root, the rate inside the momentum."""

    def __init__(self, named, decay, momentum, eps, weight_decay, decayed):
        self.params = dict(named)
        self.decay, self.momentum, self.eps = decay, momentum, eps
        self.wd = {n: (weight_decay if n in decayed else 0.0) for n in self.params}
        self.ms = {n: torch.ones_like(p) for n, p in self.params.items()}
        self.mom = {n: torch.zeros_like(p) for n, p in self.params.items()}

    @torch.no_grad()
    def step(self, lr):
        for n, p in self.params.items():
            g = p.grad + self.wd[n] * p
            self.ms[n] = self.decay * self.ms[n] + (1 - self.decay) * g * g
            self.mom[n] = self.momentum * self.mom[n] + lr * g / torch.sqrt(self.ms[n] + self.eps)
            p -= self.mom[n]


class TorchOptimizer:
    """`torch.optim.SGD` or `AdamW` with weight decay on the decayed parameters only."""

    def __init__(self, named, h, decayed):
        named = list(named)
        groups = [{"params": [p for n, p in named if n in decayed], "weight_decay": h["weight_decay"]},
                  {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0}]
        if h["optimizer"] == "sgd":
            self.opt = torch.optim.SGD(groups, lr=h["lr"], momentum=h["momentum"],
                                       nesterov=h["nesterov"] and h["momentum"] > 0)
        else:
            self.opt = torch.optim.AdamW(groups, lr=h["lr"], betas=(h["momentum"], h["rms_decay"]), eps=h["eps"])

    def step(self, lr):
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()


def clip_global_norm(params, clip: float) -> tuple:
    """TensorFlow's clip_by_global_norm: every gradient times clip / max(norm, clip).
    Returns (norm before clipping, whether it clipped)."""
    params = list(params)
    norm = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
    if norm > clip:
        for p in params:
            p.grad.mul_(clip / norm)
    return norm, norm > clip


class Average:
    """The documented weight average: the n-th update (1-based) mixes in the weights with
    1 - min(decay, (1 + n) / (10 + n)); buffers (batch-norm statistics) are copied."""

    def __init__(self, model, decay):
        self.module, self.decay, self.n = copy.deepcopy(model), decay, 0

    @torch.no_grad()
    def update(self, model):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for (_, a), (_, p) in zip(sorted(self.module.named_parameters()), sorted(model.named_parameters())):
            a.copy_(d * a + (1 - d) * p)
        for (_, a), (_, b) in zip(sorted(self.module.named_buffers()), sorted(model.named_buffers())):
            a.copy_(b)


def head_logits(model, network):
    """Hooks that catch each output's logits by layer name: (main name, {aux name: weight}, store)."""
    store = {}
    outputs = {network.graph.graph["output"]: None, **{h["output"]: h["weight"] for h in network.aux_heads}}
    for node in outputs:
        module = model.get_submodule(node.replace("/", "."))
        module.register_forward_hook(lambda mod, args, out, node=node: store.__setitem__(node, out))
    return network.graph.graph["output"], {h["output"]: h["weight"] for h in network.aux_heads}, store


def batches(dataset, order, batch):
    """(images, labels) of `order` in batches of `batch`, the last partial one dropped."""
    for i in range(0, len(order) - batch + 1, batch):
        images, labels = dataset.__getitems__(order[i:i + batch])
        yield images.double(), labels


@torch.no_grad()
def oracle_eval(model, network, dataset, classes: int) -> dict:
    """Validation loss (plain cross-entropy of the main logits), top-1 and top-5 (> 5 classes)."""
    model.eval()
    images, labels = dataset.__getitems__(list(range(len(dataset))))
    logits = model(images.double())
    ranked = logits.argsort(dim=1, descending=True)
    return {"loss": float(F.cross_entropy(logits, labels)),
            "top1": float((ranked[:, 0] == labels).double().mean()),
            "top5": float((ranked[:, :5] == labels[:, None]).any(dim=1).double().mean()) if classes > 5 else None}


def oracle_train(network, h: dict, *, epochs=EPOCHS, seed=SEED) -> dict:
    """Train a float64 copy of the network as documented; every figure a run reports."""
    model = incdsl.to_torch(network, seed=seed).double().train()
    main_name, aux_weights, store = head_logits(model, network)
    named = [(n, p) for n, p in model.named_parameters()]
    decayed = decayed_names(model)
    if h["optimizer"] == "rmsprop_tf":
        opt = TFRMSProp(named, h["rms_decay"], h["momentum"], h["eps"], h["weight_decay"], decayed)
    else:
        opt = TorchOptimizer(named, h, decayed)
    average = Average(model, h["ema_decay"]) if h["ema_decay"] else None
    shape, classes = network.input_shape, model.num_classes
    train_set = SyntheticImages(SIZE, shape, classes, seed)
    val_set = SyntheticImages(max(SIZE // 4, 1), shape, classes, seed)
    out = {"lrs": [], "losses": [], "clipped": [], "records": []}
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(SIZE, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        loss_sum, seen = 0.0, 0
        for images, labels in batches(train_set, order, h.get("batch_size", BATCH)):
            lr = oracle_lr(h, step, STEPS, epochs)
            store.clear()
            model(images)
            loss = F.cross_entropy(store[main_name], labels, label_smoothing=h["label_smoothing"])
            for node, weight in aux_weights.items():
                loss = loss + weight * F.cross_entropy(store[node], labels, label_smoothing=h["label_smoothing"])
            for p in model.parameters():
                p.grad = None
            loss.backward()
            if h["clip_grad"]:
                out["clipped"].append(clip_global_norm(model.parameters(), h["clip_grad"])[1])
            opt.step(lr)
            if average is not None:
                average.update(model)
            out["lrs"].append(lr)
            out["losses"].append(float(loss.detach()))
            loss_sum, seen, step = loss_sum + float(loss) * len(labels), seen + len(labels), step + 1
        evaluated = average.module if average is not None else model
        metrics = oracle_eval(evaluated, network, val_set, classes)
        model.train()
        out["records"].append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "val_loss": metrics["loss"],
                               "val_top1": metrics["top1"], "val_top5": metrics["top5"], "lr": out["lrs"][-1]})
    out["model"], out["average"] = model, (average.module if average is not None else None)
    out["raw_eval"] = oracle_eval(model, network, val_set, classes)
    return out


# running incdsl ---------------------------------------------------------------------------

def run_incdsl_train(monkeypatch, capsys, spec, out, recipe, flags):
    """`incdsl train` with per-step learning rates and losses recorded; returns them."""
    seen = {"lrs": [], "losses": []}
    set_lr, loss_fn = epoch_module.set_learning_rate, epoch_module.loss_fn

    def record_lr(optimizer, lr):
        seen["lrs"].append(lr)
        set_lr(optimizer, lr)

    def record_loss(*args, **kwargs):
        loss = loss_fn(*args, **kwargs)
        seen["losses"].append(float(loss.detach()))
        return loss

    monkeypatch.setattr(epoch_module, "set_learning_rate", record_lr)
    monkeypatch.setattr(epoch_module, "loss_fn", record_loss)
    code = main(["train", str(spec), "--data", "synthetic", "--synthetic-size", str(SIZE), "--batch-size", str(BATCH),
                 "--epochs", str(EPOCHS), "--recipe", recipe, "--seed", str(SEED), "--device", "cpu",
                 "--threads", "1", "--workers", "0", "--out", str(out), *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    monkeypatch.setattr(epoch_module, "set_learning_rate", set_lr)
    monkeypatch.setattr(epoch_module, "loss_fn", loss_fn)
    return seen


def hyper_parameters(recipe: str, flags: list) -> dict:
    """The oracle's values: the paper's recipe with the flags' overrides applied."""
    h = {**UNSET, **PAPERS[recipe]}
    for option, value in zip(flags[::2], flags[1::2]):
        key = option[2:].replace("-", "_")
        h[key] = {"yes": True, "no": False}.get(value, value)
        if key not in ("optimizer", "schedule", "nesterov"):
            h[key] = float(value)
    return h


def assert_states_close(ours: dict, oracle: dict, what: str, rtol=2e-4, atol=2e-5):
    assert sorted(ours) == sorted(oracle), what
    for key, value in oracle.items():
        torch.testing.assert_close(ours[key].double(), value.double(), rtol=rtol, atol=atol,
                                   msg=lambda m, key=key: f"{what} `{key}`: {m}")


def assert_record_close(ours: dict, oracle: dict):
    for key in ("train_loss", "val_loss", "lr"):
        assert ours[key] == pytest.approx(oracle[key], rel=2e-4, abs=1e-7), (ours["epoch"], key)
    assert ours["epoch"] == oracle["epoch"]
    assert (ours["val_top1"], ours["val_top5"]) == (oracle["val_top1"], oracle["val_top5"]), ours["epoch"]


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "audit.inc"
    path.write_text(SPEC)
    return path


CASES = {
    "default": ("default", []),
    "googlenet": ("googlenet", ["--decay-every", "1"]),            # two decays within the run
    "inception_v3": ("inception_v3", ["--clip-grad", "0.5"]),       # clipping on some steps, not all
    "inception_v4": ("inception_v4", []),
    "adamw": ("default", ["--optimizer", "adamw", "--lr", "0.01", "--momentum", "0.8", "--rms-decay", "0.99",
                          "--eps", "1e-6", "--weight-decay", "0.05", "--schedule", "step", "--decay-every", "0.5",
                          "--decay-rate", "0.5", "--warmup-epochs", "0.5", "--ema-decay", "0.5"]),
    "sgd_plain": ("googlenet", ["--momentum", "0", "--nesterov", "no", "--schedule", "constant",
                                "--label-smoothing", "0.3", "--ema-decay", "0"]),
}


@pytest.mark.parametrize("case", CASES)
def test_training_matches_the_oracle(case, spec, tmp_path, monkeypatch, capsys):
    recipe, flags = CASES[case]
    out = tmp_path / "run"
    seen = run_incdsl_train(monkeypatch, capsys, spec, out, recipe, flags)
    h = hyper_parameters(recipe, flags)
    oracle = oracle_train(incdsl.load(str(spec)), h)
    if h["clip_grad"]:
        assert any(oracle["clipped"]) and not all(oracle["clipped"]), "the case must exercise clipping"

    assert seen["lrs"] == pytest.approx(oracle["lrs"], rel=1e-12, abs=0)
    assert seen["losses"] == pytest.approx(oracle["losses"], rel=2e-4)
    state = ckpt.load(str(out / "final.pt"))
    assert_states_close(state["model"], oracle["model"].state_dict(), "weights")
    if oracle["average"] is not None:
        assert_states_close(state["ema"]["module"], oracle["average"].state_dict(), "averaged weights")
    else:
        assert state["ema"] is None
    for ours, theirs in zip(state["history"], oracle["records"], strict=True):
        assert_record_close(ours, theirs)


# ---------------------------------------------------------------------------------------------

def test_the_schedule_oracle_knows_the_papers_figures():
    """The oracle's schedule itself, on figures the papers state."""
    v3 = {**UNSET, **PAPERS["inception_v3"]}
    assert [oracle_lr(v3, s, 10, 100) for s in (0, 19, 20, 39, 40)] == pytest.approx(
        [0.045, 0.045, 0.045 * 0.94, 0.045 * 0.94, 0.045 * 0.94 ** 2])
    g = {**UNSET, **PAPERS["googlenet"]}
    assert oracle_lr(g, 8 * 5 - 1, 5, 250) == 0.01 and oracle_lr(g, 8 * 5, 5, 250) == pytest.approx(0.0096)
    d = {**UNSET, **PAPERS["default"]}
    assert [oracle_lr(d, s, 4, 3) for s in (0, 3, 4, 8, 11)] == pytest.approx(
        [0.025, 0.1, 0.1, 0.05, 0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8))])
