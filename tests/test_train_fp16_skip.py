"""fp16 training when the gradient scaler skips a step (inf or NaN gradients), on the CPU.

`incdsl train --amp fp16` needs CUDA, but the step it takes is the same code with a
`torch.amp.GradScaler` of either device: these tests drive `backward_step` and `train_epoch`
with a CPU scaler and inject an inf gradient into chosen steps. A skipped step leaves the
weights as they were, so the weight average must not count it; the learning-rate schedule
still counts it (the schedule follows the batches seen, as docs/training.md says).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch

from incdsl.train import distributed
from incdsl.train.epoch import Run, backward_step, train_epoch
from incdsl.train.optim import WeightAverage, build_optimizer, learning_rate
from incdsl.train.recipes import Recipe

from trainlib import BATCH, CLASSES, FEATURES, InfOn, Tiny


def make_run(*, ema_decay=0.9, warmup_epochs=1.0, clip_grad=0.0, steps_per_epoch=4) -> Run:
    torch.manual_seed(0)
    model = Tiny()
    recipe = Recipe(optimizer="sgd", lr=0.1, momentum=0.9, schedule="cosine", warmup_epochs=warmup_epochs,
                    epochs=2, batch_size=BATCH, ema_decay=ema_decay, clip_grad=clip_grad)
    return Run(distributed.Context(0, 1, 0, torch.device("cpu")), recipe, model, model,
               build_optimizer(model, recipe), WeightAverage(model, ema_decay) if ema_decay else None,
               torch.amp.GradScaler("cpu", init_scale=2.0 ** 8), contextlib.nullcontext,
               torch.contiguous_format, steps_per_epoch, seed=0)


def batches(n: int) -> list:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, FEATURES, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g))
            for _ in range(n)]


def weights(module) -> list:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def one_step(run: Run, images, labels) -> bool:
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(run.model(images), labels)
    return backward_step(run, loss, params)


@pytest.mark.parametrize("clip", [0.0, 1.0])  # clipping unscales first: the skip must be seen either way
def test_a_skipped_step_leaves_the_weights_and_their_average_alone(clip):
    run = make_run(clip_grad=clip)
    run.model.fc.weight.register_hook(InfOn(1))
    (x1, y1), (x2, y2) = batches(2)
    model_before, average_before = weights(run.model), weights(run.ema.module)

    assert one_step(run, x1, y1) is False
    assert run.scaler.get_scale() == 2.0 ** 7  # the scaler saw the inf and backed off
    assert same(weights(run.model), model_before)
    assert run.ema.updates == 0 and same(weights(run.ema.module), average_before)

    assert one_step(run, x2, y2) is True
    assert not same(weights(run.model), model_before)
    assert run.ema.updates == 1 and not same(weights(run.ema.module), average_before)


def test_without_a_scaler_every_step_counts():
    run = make_run()
    run.scaler = None
    (x, y), = batches(1)
    assert one_step(run, x, y) is True and run.ema.updates == 1


def test_an_epoch_with_skipped_steps_averages_only_the_steps_taken_and_keeps_the_schedule():
    """Steps 1 and 3 of 4 overflow. The average must equal one updated after each step the
    optimiser really took (seen by its step hook); the schedule advances on every batch, so
    the steps taken use the warm-up's rates for batches 2 and 4; torch prints no warning."""
    run = make_run(warmup_epochs=1.0, steps_per_epoch=4)
    run.model.fc.weight.register_hook(InfOn(1, 3))
    reference = WeightAverage(run.model, run.recipe.ema_decay)
    rates = []

    def taken(optimizer, args, kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        reference.update(run.model)
    run.optimizer.register_step_post_hook(taken)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, images, _ = train_epoch(run, batches(4), 0, stream=io.StringIO())
    assert [str(w.message) for w in caught] == []
    assert images == 4 * BATCH and loss == loss  # finite: the loss is measured before the step

    assert run.step == 4  # checkpoints save this: epoch x steps_per_epoch, skipped steps included
    assert rates == pytest.approx([learning_rate(run.recipe, i, 4) for i in (1, 3)]) == [0.05, 0.1]
    assert run.ema.updates == reference.updates == 2
    assert same(weights(run.ema.module), weights(reference.module))
