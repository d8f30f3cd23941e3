"""What `incdsl train` does when numbers go bad: fp16 steps the gradient scaler skips are counted
(metrics.jsonl's `skipped_steps`, the epoch line), a loss scale that falls to 0 stops the run,
and no checkpoint is ever written from weights made after a non-finite loss or gradient.

The unit tests drive `train_epoch` with a CPU `GradScaler`; the end-to-end ones run `train` on
the CPU, with fp16 allowed there (the same code as on CUDA) and bad numbers injected at chosen
steps.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import incdsl  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from incdsl.train import distributed, loop  # noqa: E402
from incdsl.train import epoch as epoch_module  # noqa: E402
from incdsl.train.data import Unreadable  # noqa: E402
from incdsl.train.epoch import NonFiniteLoss, Run, train_epoch  # noqa: E402
from incdsl.train.optim import WeightAverage, build_optimizer  # noqa: E402
from incdsl.train.recipes import Recipe  # noqa: E402

from trainlib import BATCH, CLASSES, FEATURES, InfOn, Tiny  # noqa: E402


def make_run(*, ema_decay=0.0, steps_per_epoch=4, init_scale=2.0 ** 8, scaler=True) -> Run:
    torch.manual_seed(0)
    model = Tiny()
    recipe = Recipe(optimizer="sgd", lr=0.1, momentum=0.9, schedule="constant", epochs=2, batch_size=BATCH,
                    ema_decay=ema_decay)
    return Run(distributed.Context(0, 1, 0, torch.device("cpu")), recipe, model, model,
               build_optimizer(model, recipe), WeightAverage(model, ema_decay) if ema_decay else None,
               torch.amp.GradScaler("cpu", init_scale=init_scale) if scaler else None, contextlib.nullcontext,
               torch.contiguous_format, steps_per_epoch, seed=0)


def batches(n: int) -> list:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, FEATURES, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g))
            for _ in range(n)]


def nan_loss_at(monkeypatch, *steps: int) -> None:
    """Make the training loss NaN at the given calls of the loss (1-based, counted over the run)."""
    real, calls = epoch_module.loss_fn, [0]

    def loss_fn(*args, **kwargs):
        calls[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls[0] in steps else loss
    monkeypatch.setattr(epoch_module, "loss_fn", loss_fn)


# fp16: skipped steps ----------------------------------------------------------------------

@pytest.mark.parametrize("ema_decay", [0.0, 0.9])  # without an average the scale was never read
def test_the_steps_the_scaler_skips_are_counted_per_epoch(ema_decay):
    run = make_run(ema_decay=ema_decay)
    run.model.fc.weight.register_hook(InfOn(1, 3, 6))
    train_epoch(run, batches(4), 0, stream=io.StringIO())
    assert run.skipped_steps == 2
    train_epoch(run, batches(4), 1, stream=io.StringIO())
    assert run.skipped_steps == 1  # per epoch, not over the run
    train_epoch(run, batches(4), 1, stream=io.StringIO())
    assert run.skipped_steps == 0


def test_a_disabled_scaler_counts_no_skips():
    """As `GradScaler("cuda")` is without CUDA: it records no check, and must not break the count."""
    run = make_run()
    run.scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_epoch(run, batches(2), 0, stream=io.StringIO())
    assert run.skipped_steps == 0


def test_without_a_scaler_there_is_no_count():
    run = make_run(scaler=False)
    train_epoch(run, batches(2), 0, stream=io.StringIO())
    assert run.skipped_steps is None


@pytest.mark.parametrize("init_scale, overflows", [(2.0 ** -126, (2,)), (0.0, ())], ids=["halved", "zero"])
def test_a_collapsed_scale_stops_the_epoch(init_scale, overflows):
    """Below 2^-126 the scaler's reciprocal of the scale is inf: the unscaled gradients are inf or
    NaN, but it checks the scaled ones (tiny or 0, finite), so it takes the step and the weights
    go bad. Before, the NaN loss that followed was all the run said, if a check came before the
    epoch's end; now the collapse itself is named."""
    run = make_run(init_scale=init_scale)
    run.model.fc.weight.register_hook(InfOn(*overflows))
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(run, batches(4), 0, stream=io.StringIO(), log_every=3)
    assert (info.value.what, info.value.epoch, info.value.step) == ("scale", 1, 3)


# a non-finite loss between two checks -------------------------------------------------------

def test_a_nan_loss_is_named_at_its_own_step(monkeypatch):
    nan_loss_at(monkeypatch, 3)
    run = make_run(scaler=False, steps_per_epoch=7)
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(run, batches(7), 0, stream=io.StringIO())  # checks at step 7 only (log_every 10)
    assert (info.value.what, info.value.epoch, info.value.step) == ("loss", 1, 3)


def test_a_nan_loss_does_not_slip_past_a_last_batch_that_was_skipped(monkeypatch):
    """The last batch's files are all unreadable (skipped): its step held the epoch's only check."""
    nan_loss_at(monkeypatch, 2)
    run = make_run(scaler=False, steps_per_epoch=4)
    run.skip_bad_images = True
    loader = batches(3) + [(None, None, [Unreadable("x.jpg", "truncated")])]
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(run, loader, 0, stream=io.StringIO())
    assert info.value.step == 2


def test_weights_made_non_finite_by_a_finite_loss_stop_the_epoch():
    """Without fp16's scaler an inf gradient goes into the weights while every loss stays finite."""
    run = make_run(scaler=False, steps_per_epoch=4)
    run.model.fc.weight.register_hook(InfOn(4))
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(run, batches(4), 0, stream=io.StringIO())
    assert (info.value.what, info.value.step) == ("weights", 4)


# end to end ---------------------------------------------------------------------------------

SPEC = """\
network wee(classes = 3):
    input 1x8x8
    conv 3x3 4 S
    gap -> flatten -> linear classes
"""
STEPS = 4  # synthetic 32 images in batches of 8


def run_train(tmp_path, capsys, *, epochs=2, amp=None, resume=None, **overrides):
    net = incdsl.load(SPEC, file="wee.inc")
    config = loop.TrainConfig(data="synthetic", out=str(tmp_path / "run"), device="cpu", amp=amp,
                              synthetic_size=32, threads=1, resume=resume,
                              overrides={"epochs": epochs, "batch_size": 8, **overrides})
    lines = []
    try:
        loop.train(net, config, log=lines.append, stream=io.StringIO())
        return lines, None
    except incdsl.IncdslError as exc:
        return lines, exc


def metrics(tmp_path) -> list:
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def fp16_on_the_cpu(monkeypatch):
    """`--amp fp16` on the CPU (CUDA only for users: CPU float16 is slow); returns a function that
    makes the first weight's gradient inf on the given steps of the run (1-based)."""
    monkeypatch.setattr(loop, "_check_config", lambda config, ctx: None)
    real_build, hooks = loop._build, []

    def build(*args, **kwargs):
        run = real_build(*args, **kwargs)
        for hook in hooks:
            next(run.model.parameters()).register_hook(hook)
        return run
    monkeypatch.setattr(loop, "_build", build)
    return lambda *steps: hooks.append(InfOn(*steps))


def test_fp16_runs_report_skipped_steps_in_every_record_and_on_the_epoch_line(tmp_path, capsys, fp16_on_the_cpu):
    fp16_on_the_cpu(2, 3)
    lines, exc = run_train(tmp_path, capsys, amp="fp16")
    assert exc is None
    assert [r["skipped_steps"] for r in metrics(tmp_path)] == [2, 0]
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert epoch_lines[0].endswith("(2 steps skipped: fp16 overflow)")
    assert "skipped" not in epoch_lines[1]
    assert [r["skipped_steps"] for r in ckpt.load(str(tmp_path / "run" / "final.pt"))["history"]] == [2, 0]


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_runs_without_loss_scaling_have_no_skipped_steps_field(tmp_path, capsys, amp):
    lines, exc = run_train(tmp_path, capsys, epochs=1, amp=amp)
    assert exc is None and "skipped_steps" not in metrics(tmp_path)[0]


@pytest.mark.parametrize("bad_step", [STEPS + 3, 2 * STEPS], ids=["mid-epoch", "last-step"])
def test_no_checkpoint_holds_weights_made_after_a_nan_loss(tmp_path, capsys, monkeypatch, bad_step):
    """The NaN falls in epoch 2, at a step that is no multiple of 10 or at the epoch's last:
    last.pt stays epoch 1's, no final.pt, metrics.jsonl one line, and the error names the step."""
    nan_loss_at(monkeypatch, bad_step)
    lines, exc = run_train(tmp_path, capsys, epochs=2)
    out = tmp_path / "run"
    assert exc is not None
    text = str(exc)
    assert f"the training loss is no longer finite (epoch 2, step {bad_step - STEPS})" in text
    assert "last good checkpoint" in text and "(epoch 1)" in text
    kept = ckpt.load(str(out / "last.pt"))
    assert kept["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())
    assert not (out / "final.pt").exists()
    assert len(metrics(tmp_path)) == 1


def test_an_inf_gradient_at_an_epochs_last_step_writes_no_checkpoint(tmp_path, capsys, monkeypatch):
    """fp32: the loss of the step is finite, its update is not; before, last.pt held NaN weights."""
    real_build = loop._build

    def build(*args, **kwargs):
        run = real_build(*args, **kwargs)
        next(run.model.parameters()).register_hook(InfOn(STEPS))
        return run
    monkeypatch.setattr(loop, "_build", build)
    lines, exc = run_train(tmp_path, capsys, epochs=1)
    assert exc is not None and "the weights are no longer finite (epoch 1, step 4)" in str(exc)
    assert "no checkpoint was written" in str(exc)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_collapsed_scale_is_said_as_such(tmp_path):
    config = loop.TrainConfig(data="synthetic", out=str(tmp_path))
    text = str(loop._diverged(config, NonFiniteLoss(3, 7, "scale"), make_run()))
    assert text.startswith("incdsl: error: the fp16 loss scale collapsed (epoch 3, step 7)") or \
        "the fp16 loss scale collapsed (epoch 3, step 7): too many steps overflowed" in text
    assert "--amp bf16" in text and "no checkpoint was written" in text
