"""Recipes, the learning-rate schedule, the optimisers and the `train` command line."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incdsl.cli import build_parser
from incdsl.train.recipes import RECIPES, Recipe, get_recipe, recipe_fields, validate, with_overrides


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_valid(name):
    summary, recipe = RECIPES[name]
    validate(recipe)
    assert summary


def test_paper_recipes_say_what_the_papers_say():
    g = get_recipe("googlenet")
    assert (g.optimizer, g.momentum, g.schedule, g.decay_every, g.decay_rate) == ("sgd", 0.9, "step", 8.0, 0.96)
    assert g.ema_decay > 0  # Polyak averaging
    for name in ("inception_v3", "inception_v4"):
        r = get_recipe(name)
        assert (r.optimizer, r.rms_decay, r.eps, r.lr) == ("rmsprop_tf", 0.9, 1.0, 0.045)
        assert (r.schedule, r.decay_every, r.decay_rate) == ("step", 2.0, 0.94)
        assert r.label_smoothing == 0.1 and r.ema_decay > 0
    assert get_recipe("inception_v3").clip_grad == 2.0


def test_overrides_replace_given_values_only():
    base = get_recipe("inception_v3")
    r = with_overrides(base, {"lr": 0.01, "epochs": None, "clip_grad": 0.0})
    assert (r.lr, r.epochs, r.clip_grad, r.eps) == (0.01, base.epochs, 0.0, base.eps)
    with pytest.raises(ValueError, match="--label-smoothing"):
        with_overrides(base, {"label_smoothing": 1.5})
    with pytest.raises(ValueError, match="--optimizer"):
        with_overrides(base, {"optimizer": "lion"})


def test_every_recipe_field_has_a_command_line_option():
    args = build_parser().parse_args(
        ["train", "x.inc", "--data", "digits", "--lr", "0.5", "--nesterov", "no", "--batch-size", "7",
         "--ema-decay", "0.99", "--optimizer", "adamw", "--decay-every", "3"])
    for f in recipe_fields():
        assert hasattr(args, "recipe_" + f.name)
    assert (args.recipe_lr, args.recipe_nesterov, args.recipe_batch_size) == (0.5, False, 7)
    assert (args.recipe_ema_decay, args.recipe_optimizer, args.recipe_decay_every) == (0.99, "adamw", 3.0)
    assert args.recipe_epochs is None  # not given: the recipe decides


def test_train_help_lists_recipes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for name in RECIPES:
        assert name in out
    assert "--label-smoothing" in out and "--resume" in out


def test_command_line_does_not_import_torch():
    code = ("import sys, incdsl.cli; incdsl.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


# the schedule (pure function of the step) -----------------------------------------------

torch = pytest.importorskip("torch")
from incdsl.train.optim import RMSpropTF, WeightAverage, learning_rate  # noqa: E402


def test_step_schedule_is_a_staircase():
    r = get_recipe("googlenet")
    spe = 100
    assert learning_rate(r, 0, spe) == r.lr
    assert learning_rate(r, 8 * spe - 1, spe) == r.lr
    assert learning_rate(r, 8 * spe, spe) == pytest.approx(r.lr * 0.96)
    assert learning_rate(r, 17 * spe, spe) == pytest.approx(r.lr * 0.96 ** 2)
    v3 = get_recipe("inception_v3")
    assert learning_rate(v3, 10 * spe, spe) == pytest.approx(0.045 * 0.94 ** 5)


@settings(max_examples=50, deadline=None)
@given(epochs=st.integers(1, 50), warmup=st.sampled_from([0.0, 0.5, 1.0, 3.0]), spe=st.integers(1, 40))
def test_cosine_warms_up_then_never_increases(epochs, warmup, spe):
    r = Recipe(lr=0.2, schedule="cosine", epochs=epochs, warmup_epochs=warmup)
    rates = [learning_rate(r, s, spe) for s in range(epochs * spe)]
    warm = math.ceil(warmup * spe)
    assert all(0 < x <= r.lr + 1e-12 for x in rates)
    assert all(a < b for a, b in zip(rates[:warm], rates[1:warm]))   # rising during warm-up
    assert all(a >= b - 1e-12 for a, b in zip(rates[warm:], rates[warm + 1:]))  # then falling
    if epochs * spe > warm + 1:
        # the last step starts (S - 1) / S into the last epoch: 2 steps after warm-up end at half
        assert rates[-1] <= 0.5 * r.lr or epochs - warmup <= 1


def test_rmsprop_tf_matches_its_formula():
    w = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    opt = RMSpropTF([w], lr=0.1, decay=0.9, momentum=0.5, eps=1.0)
    ms, mom, ref = torch.ones(3), torch.zeros(3), w.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (w ** 2).sum().backward()
        g = 2 * ref
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.5 * mom + 0.1 * g / torch.sqrt(ms + 1.0)
        ref = ref - mom
        opt.step()
        assert torch.allclose(w.detach(), ref, atol=1e-6)


def test_weight_average_is_a_running_mean_at_first():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg = WeightAverage(model, decay=0.999)
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update(model)
    # decay (1+n)/(10+n): 2/11, 3/12, 4/13 of the old average kept
    expect = 0.0
    for n, value in enumerate((1.0, 2.0, 3.0), start=1):
        d = (1 + n) / (10 + n)
        expect = d * expect + (1 - d) * value
    assert avg.module.weight.item() == pytest.approx(expect)
    state = avg.state_dict()
    other = WeightAverage(model, decay=0.999)
    other.load_state_dict(state)
    assert other.updates == 3 and other.module.weight.item() == pytest.approx(expect)
