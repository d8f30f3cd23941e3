"""Differential audit of `incdsl train` and `incdsl eval` against an independent training loop.

The oracle below is written from the documented definitions alone (docs/training.md, the
recipes' help and the papers they cite), not from incdsl's code: its own learning-rate
schedule (exact fractions), its own choice of decayed parameters (conv and linear weights, by
module type), TensorFlow's RMSProp written out, `torch.optim.SGD`/`AdamW` for the others,
TensorFlow's global-norm clipping, Inception-v3's label smoothing written out, its own weight
average and its own auxiliary-loss sum (the heads' logits taken with hooks, the weights from the
spec). It trains a float64 copy of the same initial network on the same batches (synthetic
images in the order the sampler is documented to give: a permutation drawn from seed x 1,000,003 + epoch),
and every figure incdsl reports is compared with it: per-step learning rates and losses, final and averaged weights, each epoch's
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


def smoothed_cross_entropy(logits, labels, smoothing: float):
    """Inception-v3's label-smoothing regularisation (section 7): the cross-entropy against
    q'(k) = (1 - e) [k = label] + e / K, averaged over the batch."""
    classes = logits.shape[1]
    target = torch.full_like(logits, smoothing / classes)
    target[torch.arange(len(labels)), labels] += 1 - smoothing
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


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
    confusion = [[0] * classes for _ in range(classes)]
    for true, predicted in zip(labels.tolist(), ranked[:, 0].tolist()):
        confusion[true][predicted] += 1
    return {"loss": float(smoothed_cross_entropy(logits, labels, 0.0)), "confusion": confusion, "images": len(labels),
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
        order = torch.randperm(SIZE, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        loss_sum, seen = 0.0, 0
        for images, labels in batches(train_set, order, h.get("batch_size", BATCH)):
            lr = oracle_lr(h, step, STEPS, epochs)
            store.clear()
            model(images)
            loss = smoothed_cross_entropy(store[main_name], labels, h["label_smoothing"])
            for node, weight in aux_weights.items():
                loss = loss + weight * smoothed_cross_entropy(store[node], labels, h["label_smoothing"])
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
            loss_sum, seen, step = loss_sum + float(loss.detach()) * len(labels), seen + len(labels), step + 1
        evaluated = average.module if average is not None else model
        metrics = oracle_eval(evaluated, network, val_set, classes)
        out["eval"] = metrics
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


def hyper_parameters(recipe: str, overrides: list) -> dict:
    """The oracle's values: the paper's recipe with the overrides (`--name value` pairs) applied."""
    h = {**UNSET, **PAPERS[recipe]}
    for option, value in zip(overrides[::2], overrides[1::2]):
        key = option[2:].replace("-", "_")
        h[key] = {"yes": True, "no": False}.get(value, value)
        if key not in ("optimizer", "schedule", "nesterov"):
            h[key] = float(value)
    return h


def assert_states_close(ours: dict, oracle: dict, what: str, rtol=1e-5, atol=5e-6):
    assert sorted(ours) == sorted(oracle), what
    for key, value in oracle.items():
        torch.testing.assert_close(ours[key].double(), value.double(), rtol=rtol, atol=atol,
                                   msg=lambda m, key=key: f"{what} `{key}`: {m}")


def assert_record_close(ours: dict, oracle: dict):
    for key in ("train_loss", "val_loss", "lr"):
        assert ours[key] == pytest.approx(oracle[key], rel=1e-5, abs=1e-7), (ours["epoch"], key)
    assert ours["epoch"] == oracle["epoch"]
    assert (ours["val_top1"], ours["val_top5"]) == (oracle["val_top1"], oracle["val_top5"]), ours["epoch"]


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "audit.inc"
    path.write_text(SPEC)
    return path


# case -> (recipe, its overrides, other flags)
CASES = {
    "default": ("default", [], []),
    "googlenet": ("googlenet", ["--decay-every", "1"], []),           # two decays within the run
    "inception_v3": ("inception_v3", ["--clip-grad", "0.5"], []),      # clipping on some steps, not all
    "inception_v4": ("inception_v4", [], []),
    "adamw": ("default", ["--optimizer", "adamw", "--lr", "0.01", "--momentum", "0.8", "--rms-decay", "0.99",
                          "--eps", "1e-6", "--weight-decay", "0.05", "--schedule", "step", "--decay-every", "0.5",
                          "--decay-rate", "0.5", "--warmup-epochs", "0.5", "--ema-decay", "0.5"], []),
    "sgd_plain": ("googlenet", ["--momentum", "0", "--nesterov", "no", "--schedule", "constant",
                                "--label-smoothing", "0.3", "--ema-decay", "0"], []),
    "five_classes": ("inception_v4", [], ["--classes", "5"]),          # no top-5
    "optimize_train": ("inception_v3", ["--clip-grad", "0.5"], ["--optimize", "train"]),  # mixed's 1x1s fused
    "optimize_infer": ("default", [], ["--optimize", "infer"]),        # and batch norm folded in evaluation
    "channels_last": ("googlenet", [], ["--channels-last"]),
}


@pytest.mark.parametrize("case", CASES)
def test_training_matches_the_oracle(case, spec, tmp_path, monkeypatch, capsys):
    recipe, overrides, flags = CASES[case]
    out = tmp_path / "run"
    seen = run_incdsl_train(monkeypatch, capsys, spec, out, recipe, overrides + flags)
    h = hyper_parameters(recipe, overrides)
    classes = {"classes": int(flags[flags.index("--classes") + 1])} if "--classes" in flags else None
    oracle = oracle_train(incdsl.load(str(spec), params=classes), h)
    if h["clip_grad"]:
        assert any(oracle["clipped"]) and not all(oracle["clipped"]), "the case must exercise clipping"

    assert seen["lrs"] == pytest.approx(oracle["lrs"], rel=1e-12, abs=0)
    assert seen["losses"] == pytest.approx(oracle["losses"], rel=1e-5)  # float32 against float64: 2e-7 seen
    state = ckpt.load(str(out / "final.pt"))
    assert_states_close(state["model"], oracle["model"].state_dict(), "weights")
    if oracle["average"] is not None:
        assert_states_close(state["ema"]["module"], oracle["average"].state_dict(), "averaged weights")
    else:
        assert state["ema"] is None
    for ours, theirs in zip(state["history"], oracle["records"], strict=True):
        assert_record_close(ours, theirs)
    assert_reports_agree(out, state, oracle)
    assert_eval_agrees(capsys, out, oracle["eval"], "averaged" if oracle["average"] is not None else "trained")
    assert_eval_agrees(capsys, out, oracle["raw_eval"], "trained", "--raw")


def sha256_of(state: dict) -> str:
    """The documented weights digest: for each key in sorted order, `name:dtype:shape;` then the
    tensor's bytes in C order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_reports_agree(out, state: dict, oracle: dict):
    """metrics.jsonl is the checkpoint's history; summary.json's figures follow from it."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == state["history"]
    summary = json.loads((out / "summary.json").read_text())
    tops = [r["val_top1"] for r in oracle["records"]]
    best = tops.index(max(tops))
    assert summary["epochs"] == EPOCHS and summary["finished"] is True
    assert (summary["val_top1"], summary["val_top5"]) == (tops[-1], oracle["records"][-1]["val_top5"])
    assert (summary["best_val_top1"], summary["best_epoch"]) == (tops[best], best + 1)
    assert summary["seconds"] == pytest.approx(sum(r["seconds"] for r in lines))
    assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in lines)
    assert summary["weights_sha256"] == [sha256_of(state["model"])] == [state["weights_sha256"]]
    if state["ema"] is not None:
        assert summary["ema_weights_sha256"] == [sha256_of(state["ema"]["module"])]


def assert_eval_agrees(capsys, out, oracle: dict, weights: str, *flags):
    """`incdsl eval` on the run's final checkpoint: the oracle's figures for those weights."""
    code = main(["eval", "--checkpoint", str(out), "--format", "json", "--device", "cpu", "--threads", "1",
                 "--workers", "0", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert (result["weights"], result["epoch"], result["images"]) == (weights, EPOCHS, oracle["images"])
    assert result["loss"] == pytest.approx(oracle["loss"], rel=1e-5)
    assert (result["top1"], result["top5"]) == (oracle["top1"], oracle["top5"])
    assert result["confusion"] == oracle["confusion"]


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


# resuming ---------------------------------------------------------------------------------

RESUME_SPEC = SPEC.replace("gap -> flatten -> linear classes\n", "gap -> flatten -> dropout 0.3 -> linear classes\n", 1)
RESUME_FLAGS = ["--synthetic-size", str(SIZE), "--batch-size", str(BATCH), "--epochs", str(EPOCHS), "--seed",
                str(SEED), "--device", "cpu", "--threads", "1", "--workers", "0", "--deterministic"]


def cli(capsys, *argv):
    code = main([*map(str, argv)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def saved_states(monkeypatch):
    """Every checkpoint the runs write, in order, as they were written (last.pt is overwritten)."""
    states, save = [], ckpt.save

    def keep(path, state):
        states.append((str(path), copy.deepcopy(state)))
        save(path, state)

    monkeypatch.setattr(ckpt, "save", keep)
    return states


def assert_same_run_state(a: dict, b: dict, what: str):
    """Bit for bit: weights, average, optimiser state, schedule, random states and the records
    (but for the clock's figures)."""
    for part in ("model",):
        assert ckpt.state_digest(a[part]) == ckpt.state_digest(b[part]), (what, part)
    assert (a["ema"] is None) == (b["ema"] is None)
    if a["ema"] is not None:
        assert ckpt.state_digest(a["ema"]["module"]) == ckpt.state_digest(b["ema"]["module"]), what
        assert a["ema"]["updates"] == b["ema"]["updates"], what
    assert a["scheduler"] == b["scheduler"], what
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys(), what
    for key in sa:
        for name, value in sa[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[key][name])), (what, key, name)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"], what
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"]), what
    clock = ("seconds", "images_per_s")
    assert ([{k: v for k, v in r.items() if k not in clock} for r in a["history"]]
            == [{k: v for k, v in r.items() if k not in clock} for r in b["history"]]), what


@pytest.mark.parametrize("recipe", ["inception_v3", "default"])
def test_resuming_from_every_epoch_equals_the_uninterrupted_run(recipe, tmp_path, monkeypatch, capsys):
    spec = tmp_path / "audit.inc"
    spec.write_text(RESUME_SPEC)
    states = saved_states(monkeypatch)
    cli(capsys, "train", spec, "--data", "synthetic", "--recipe", recipe, "--out", tmp_path / "whole", *RESUME_FLAGS)
    whole = [s for path, s in states if path.endswith(ckpt.LAST)]
    states.clear()
    cli(capsys, "train", spec, "--data", "synthetic", "--recipe", recipe, "--out", tmp_path / "parts",
        "--stop-after", 1, *RESUME_FLAGS)
    for _ in range(EPOCHS - 1):
        assert "resumed after epoch" in cli(capsys, "train", "--resume", tmp_path / "parts", "--stop-after", 1,
                                            "--threads", 1, "--workers", 0)
    parts = [s for path, s in states if path.endswith(ckpt.LAST)]
    assert len(whole) == len(parts) == EPOCHS
    for epoch, (a, b) in enumerate(zip(whole, parts), 1):
        assert_same_run_state(a, b, f"epoch {epoch}")
    final_whole = ckpt.load(str(tmp_path / "whole" / "final.pt"))
    final_parts = ckpt.load(str(tmp_path / "parts" / "final.pt"))
    assert final_whole["weights_sha256"] == final_parts["weights_sha256"]


def group_values(state: dict) -> list:
    return [{k: v for k, v in g.items() if k not in ("params", "lr")} for g in state["optimizer"]["param_groups"]]


def test_hyper_parameters_given_again_on_resume_are_the_ones_used(spec, tmp_path, capsys):
    """--weight-decay, --momentum, --nesterov, --eps, --rms-decay given with --resume: the optimiser
    uses them (not the checkpoint's), as the saved recipe and the log line say."""
    run = tmp_path / "run"
    cli(capsys, "train", spec, "--data", "synthetic", "--recipe", "default", "--out", run, "--stop-after", 1,
        *RESUME_FLAGS)
    cli(capsys, "train", "--resume", run, "--weight-decay", 0.25, "--momentum", 0.5, "--nesterov", "no",
        "--threads", 1, "--workers", 0)
    state = ckpt.load(str(run / "final.pt"))
    decayed, plain = group_values(state)
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.25, 0.0)
    assert decayed["momentum"] == plain["momentum"] == 0.5 and not decayed["nesterov"]
    assert state["recipe"]["weight_decay"] == 0.25

    run = tmp_path / "rms"
    cli(capsys, "train", spec, "--data", "synthetic", "--recipe", "inception_v4", "--out", run, "--stop-after", 1,
        *RESUME_FLAGS)
    cli(capsys, "train", "--resume", run, "--eps", 0.5, "--rms-decay", 0.8, "--threads", 1, "--workers", 0)
    decayed, _ = group_values(ckpt.load(str(run / "final.pt")))
    assert (decayed["eps"], decayed["decay"]) == (0.5, 0.8)


@pytest.mark.parametrize("optimizer", ["rmsprop_tf", "adamw"])
def test_another_optimizer_on_resume_starts_its_state_afresh(optimizer, spec, tmp_path, capsys):
    run = tmp_path / "run"
    cli(capsys, "train", spec, "--data", "synthetic", "--recipe", "default", "--out", run, "--stop-after", 1,
        *RESUME_FLAGS)
    out = cli(capsys, "train", "--resume", run, "--optimizer", optimizer, "--threads", 1, "--workers", 0)
    assert f"warning: the optimiser is {optimizer} now, sgd before" in out
    state = ckpt.load(str(run / "final.pt"))
    assert state["recipe"]["optimizer"] == optimizer
    steps = (EPOCHS - 1) * STEPS  # the new optimiser's own count, when it keeps one
    if optimizer == "adamw":
        assert all(float(s["step"]) == steps for s in state["optimizer"]["state"].values())
    else:
        assert all(set(s) == {"mean_square", "momentum"} for s in state["optimizer"]["state"].values())


# the schedule and the decayed parameters, alone ---------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from incdsl.train.optim import build_optimizer, learning_rate  # noqa: E402
from incdsl.train.recipes import Recipe, get_recipe  # noqa: E402

EPOCH_COUNTS = [0.0, 0.1, 0.25, 0.3, 0.5, 1.0, 1.5, 2.0, 2.4, 3.0, 8.0]  # as one writes them on the command line


@settings(max_examples=300, deadline=None)
@given(schedule=st.sampled_from(["step", "cosine", "constant"]), warmup=st.sampled_from(EPOCH_COUNTS),
       every=st.sampled_from(EPOCH_COUNTS[1:]), rate=st.sampled_from([0.94, 0.96, 0.5, 1.0]),
       epochs=st.integers(1, 12), steps_per_epoch=st.integers(1, 40), data=st.data())
def test_the_schedule_matches_the_documented_one_at_every_step(schedule, warmup, every, rate, epochs,
                                                              steps_per_epoch, data):
    r = Recipe(lr=0.045, schedule=schedule, warmup_epochs=warmup, decay_every=every, decay_rate=rate, epochs=epochs)
    h = {**UNSET, "lr": r.lr, "schedule": schedule, "warmup_epochs": warmup, "decay_every": every,
         "decay_rate": rate}
    total = epochs * steps_per_epoch
    steps = {0, total - 1, *data.draw(st.lists(st.integers(0, total - 1), max_size=8))}
    # every epoch boundary and the steps either side of it: where staircases and warm-ups turn
    steps |= {s for e in range(epochs + 1) for s in (e * steps_per_epoch - 1, e * steps_per_epoch) if 0 <= s < total}
    for step in sorted(steps):
        assert learning_rate(r, step, steps_per_epoch) == pytest.approx(
            oracle_lr(h, step, steps_per_epoch, epochs), rel=1e-9, abs=1e-15), step


DECAY_SPEC = """\
network kinds(classes = 5):
    input 3x8x8
    conv 3x3 4 S bn = 0.001
    residual(scale = learned(0.5)):
        conv 3x3 4 S act = relu
    concat:
        branch: conv 1x1 3
        branch: conv 1x1 3 -> conv 3x3 3 S
    conv 1x1 6 -> prelu
    learned_scale 2
    gap -> flatten -> linear 8 act = relu -> linear classes
"""


def decayed_by_incdsl(model, recipe: Recipe) -> set:
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, recipe)
    groups = [({names[id(p)] for p in g["params"]}, g["weight_decay"]) for g in optimizer.param_groups]
    assert {n for g, _ in groups for n in g} == set(names.values()), "every parameter is optimised"
    return {n for g, decay in groups for n in g if decay}


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop_tf", "adamw"])
@pytest.mark.parametrize("optimize", ["none", "train"])
def test_weight_decay_falls_on_conv_and_linear_weights_only(optimizer, optimize):
    """Not on biases, batch norm, PReLU slopes or learned scales (docs/training.md); also when
    `--optimize train` runs sibling convolutions as one."""
    model = incdsl.to_torch(incdsl.load(DECAY_SPEC), optimize=optimize)
    kinds = {type(m).__name__ for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    assert {"PReLU", "LearnedScale", "BatchNorm2d", "Conv2d", "Linear"} <= kinds
    assert decayed_by_incdsl(model, Recipe(optimizer=optimizer, weight_decay=1e-4)) == decayed_names(model)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(str(p) for p in __import__("pathlib").Path(__file__).parent.parent.glob(
    "specs/**/*.inc") if "/lib/" not in str(p) and "/search/" not in str(p)))
def test_weight_decay_set_of_every_shipped_spec(path):
    model = incdsl.to_torch(incdsl.load(path))
    assert decayed_by_incdsl(model, get_recipe("inception_v3")) == decayed_names(model)


# auxiliary heads that do not predict the classes -------------------------------------------

AUX_OTHER = """\
network aux_other(classes = 10):
    input 1x8x8
    conv 3x3 6 S bn = 0.001 as stem
    gap -> flatten -> linear classes
    aux side(weight = 0.3) from stem: gap -> flatten -> linear {outputs}
"""
FIXED_AUX = """\
network fixed_aux:
    input 1x8x8
    conv 3x3 6 S bn = 0.001 as stem
    gap -> flatten -> linear 7
    aux side(weight = 0.3) from stem: gap -> flatten -> linear {outputs}
"""
QUICK = ["--data", "synthetic", "--synthetic-size", "16", "--batch-size", "8", "--epochs", "1", "--device", "cpu",
         "--threads", "1", "--workers", "0"]


@pytest.mark.parametrize("outputs", [7, 12])
def test_an_aux_head_of_another_class_count_is_refused_before_training(outputs, tmp_path, capsys):
    """7 outputs for 10 classes was an internal error at the first label past them (exit 70);
    12 trained a cross-entropy over logits that are no classes, silently."""
    spec = tmp_path / "aux.inc"
    spec.write_text(AUX_OTHER.format(outputs=outputs))
    code = main(["train", str(spec), *QUICK, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: auxiliary head `side` gives {outputs} outputs, but training adds its loss against labels of " \
           "10 classes" in err and "end it in `linear classes`" in err
    assert not (tmp_path / "run").exists()


def test_classes_replaces_the_aux_classifiers_of_the_main_ones_size(tmp_path, capsys):
    spec = tmp_path / "fixed.inc"
    spec.write_text(FIXED_AUX.format(outputs=7))
    assert main(["train", str(spec), *QUICK, "--classes", "3", "--out", str(tmp_path / "ok")]) == 0
    spec.write_text(FIXED_AUX.format(outputs=5))
    assert main(["train", str(spec), *QUICK, "--classes", "3", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "auxiliary head `side` gives 5 outputs" in err and "end it in `linear 7`" in err


def test_bf16_autocast_changes_only_the_precision(spec, tmp_path, monkeypatch, capsys):
    """--amp bf16 on the CPU: the same run to bf16's precision (weights and losses stay float32)."""
    seen = run_incdsl_train(monkeypatch, capsys, spec, tmp_path / "run", "inception_v3", ["--amp", "bf16"])
    oracle = oracle_train(incdsl.load(str(spec)), hyper_parameters("inception_v3", []))
    assert seen["lrs"] == pytest.approx(oracle["lrs"], rel=1e-12, abs=0)
    assert seen["losses"] == pytest.approx(oracle["losses"], rel=2e-3)
    state = ckpt.load(str(tmp_path / "run" / "final.pt"))
    assert all(v.dtype in (torch.float32, torch.int64) for v in state["model"].values())
    for ours, theirs in zip(state["history"], oracle["records"], strict=True):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=2e-3)


@pytest.mark.parametrize("data,says", [("synthetic", "the synthetic images change too"),
                                       ("digits", "validation images may have been trained on")])
def test_another_seed_on_resume_says_what_it_changes(data, says, spec, tmp_path, capsys):
    """The seed draws the digits' split and the synthetic images: a resumed run with another seed
    trains on other data, or on images its validation set held before."""
    if data == "digits":
        pytest.importorskip("sklearn")
    run = tmp_path / "run"
    batch = 128 if data == "digits" else 8  # 11 steps an epoch of the digits
    cli(capsys, "train", spec, "--data", data, "--synthetic-size", 16, "--batch-size", batch, "--epochs", 2,
        "--stop-after", 1, "--device", "cpu", "--threads", 1, "--workers", 0, "--out", run, "--max-memory", "8G")
    assert "warning: seed" not in cli(capsys, "train", "--resume", run, "--seed", 0, "--stop-after", 1,
                                      "--epochs", 3, "--threads", 1, "--workers", 0)
    out = cli(capsys, "train", "--resume", run, "--seed", 7, "--threads", 1, "--workers", 0, "--epochs", 3)
    assert "warning: seed 7 now, 0 before: the order of the training images changes" in out and says in out


def test_adjacent_seeds_do_not_share_data_orders():
    """The sampler draws epoch e's order from its seed + e; given the run's seed, seeds s and s + 1
    saw the same orders one epoch apart, so a seed study's runs were correlated."""
    from incdsl.train.data import make_loaders, open_data, reseed

    data = open_data("synthetic", (1, 8, 8), num_classes=2, synthetic_size=64)

    def orders(seed, epochs=3):
        train, sampler, _ = make_loaders(data, 8, seed=seed, workers=0)
        out = []
        for epoch in range(epochs):
            reseed(train, sampler, seed, epoch)
            out.append(list(sampler))
        return out

    for seed in range(4):
        mine, next_seed = orders(seed), orders(seed + 1)
        assert mine == orders(seed)  # still a function of (seed, epoch) alone
        assert all(a != b for a in mine for b in next_seed)
