"""`incdsl search SPACE --data DATA --trials N --budget-epochs E --out DIR`: a search
experiment on Ray Tune (the `search` extra), imported only when the command runs."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

EXIT_BUDGET = 3
EXTRA_MODULES = ("ray", "optuna", "matplotlib")

DESCRIPTION = """\
Search a space (a spec with `choice(...)`): train each candidate for --budget-epochs epochs
with incdsl's training code on Ray Tune, and write every trial (spec, parameters, MACs,
accuracy, training time, status) to OUT/trials.csv and OUT/trials.json, each trial's spec to
OUT/specs/, and accuracy against MACs (or parameters) with the Pareto front marked to
OUT/pareto.png and OUT/pareto.svg.

Candidates over budget are never started and a network is trained once, however often the
algorithm proposes it. Ray starts locally inside the command; --address joins a running
cluster (`ray start --head` on one machine, `ray start --address HEAD:6379` on the others).
An interrupted experiment continues with `incdsl search --resume OUT`: finished trials are
not run again, a trial cut short resumes from its last epoch.

Exit 0 when every trial has ended, 1 on a spec error or when every trial failed, 2 on bad
usage, 3 when no point within the budget is found (among random points and a search for
the cheapest), 69 without the `search` extra (Ray Tune), 130 when interrupted."""


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


MAX_RESOURCE = 4096  # CPUs or GPUs per trial: more than any machine has


def _amount(text: str) -> float:
    """A trial's GPUs: a finite number from 0 (nan or inf would reach Ray, and fail there)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= MAX_RESOURCE:  # false for nan too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to {MAX_RESOURCE}, got {text!r}")
    return value


def _cpus(text: str) -> float:
    """A trial's CPUs: above 0, since a trial asking for nothing lets Ray start every trial at once."""
    value = _amount(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0 (0.5 shares a CPU), got {text!r}")
    return value


def register(sub) -> None:
    from ..cli import ParagraphHelpFormatter, add_spec_arguments
    from ..search.proposers import ALGORITHMS
    p = sub.add_parser("search", help="run a search experiment on Ray Tune (needs the `search` extra)",
                       description=DESCRIPTION, formatter_class=ParagraphHelpFormatter)
    add_spec_arguments(p, spec_help="the space: a .inc spec with choices (not needed with --resume)")
    p.add_argument("--data", metavar="DIR|digits|synthetic", help="training data, as `incdsl train --data`")
    p.add_argument("--trials", type=_positive, metavar="N", help="candidates to train")
    p.add_argument("--budget-epochs", type=_positive, metavar="E", help="epochs per candidate")
    p.add_argument("--max-macs", metavar="N", help="never start a candidate over N multiply-adds, e.g. 50M")
    p.add_argument("--max-params", metavar="N", help="never start a candidate over N parameters, e.g. 1M")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="random",
                   help="random (within budget), evolution (regularised evolution), nsga2 (Optuna's "
                        "NSGA-II: accuracy against the --objective cost) (default: random)")
    p.add_argument("--objective", choices=("macs", "params"), default="macs",
                   help="the cost axis of the Pareto front and of nsga2 (default: macs)")
    p.add_argument("--asha", action="store_true", help="stop weak trials early (ASHA, one epoch grace)")
    p.add_argument("--population", type=_positive, default=8, metavar="P",
                   help="evolution's population and nsga2's generation size (default 8)")
    from ..train import MAX_SYNTHETIC
    from .train import bounded_int
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1, "a seed"), default=0,
                   help="seed of the algorithm and of every trial (default 0)")
    p.add_argument("--recipe", metavar="NAME", help="training recipe, as `incdsl train --recipe` (default: default)")
    p.add_argument("--batch-size", type=_positive, metavar="N", help="images per step (default: the recipe's)")
    p.add_argument("--lr", type=float, metavar="X", help="base learning rate (default: the recipe's)")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision in each trial (fp16 needs CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout in each trial (default: on, as for `incdsl train`)")
    p.add_argument("--synthetic-size", type=bounded_int(1, MAX_SYNTHETIC, "an image count"), default=1024,
                   metavar="N", help="images of --data synthetic")
    p.add_argument("--address", metavar="ADDR", help="join this Ray cluster (e.g. auto, or HEAD:6379)")
    p.add_argument("--cpus-per-trial", type=_cpus, default=1, metavar="C", help="CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=_amount, default=0, metavar="G", help="GPUs per trial (default 0)")
    p.add_argument("--max-failures", type=bounded_int(0, 1000, "a retry count"), default=2, metavar="K",
                   help="retry a trial whose worker dies up to K times (default 2)")
    p.add_argument("--out", metavar="DIR", help="the experiment's folder (new or empty)")
    p.add_argument("--resume", nargs="?", const="", metavar="DIR",
                   help="continue the experiment in DIR (alone: --out's)")
    p.set_defaults(func=run)


def missing_extra() -> str | None:
    """The first package of the `search` extra that is not installed (found without
    importing it: Ray takes seconds to import, and usage errors should not wait for it)."""
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def run(args) -> int:
    missing = missing_extra()
    if missing is not None:
        from ..cli import MissingExtra
        raise MissingExtra(f"`incdsl search` needs Ray Tune, Optuna and matplotlib; missing: {missing}",
                           "pip install 'incdsl[search]'")
    from ..search.experiment import load_settings, run_experiment, save_settings, start_ray

    if args.resume is not None:
        settings = _resumed(args, load_settings)
        print(f"resuming the experiment in {settings.out}", flush=True)
        return _finished(run_experiment(settings, resume=True), settings.out)
    try:
        settings = _fresh(args)
    except OverBudget as exc:
        from ..diagnostics import terminal_safe
        print(f"incdsl: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return EXIT_BUDGET
    start_ray(settings.address)  # an unreachable cluster leaves no experiment folder behind
    os.makedirs(settings.out, exist_ok=True)
    save_settings(settings)
    return _finished(run_experiment(settings, resume=False), settings.out)


def _finished(document: dict, out: str) -> int:
    """0; 130 (as for Ctrl-C) when Tune stopped on an interrupt (trials unfinished or not yet
    started); 1 when every trial failed (bad data for these networks, say)."""
    trials = document["trials"]
    if document.get("experiment", {}).get("interrupted") or any(t["status"] == "unfinished" for t in trials):
        print(f"incdsl: interrupted; continue with: incdsl search --resume {out}", file=sys.stderr)
        return 130
    if trials and all(t["status"] == "error" for t in trials):
        from ..diagnostics import terminal_safe  # a trial's error may quote a file name or a spec's text
        first = terminal_safe(f"{trials[0]['trial']}: {trials[0]['error']}", newlines=False)
        print(f"incdsl: error: every trial failed; {first}", file=sys.stderr)
        return 1
    return 0


def _fresh(args):
    from ..cli import UsageError
    from ..report.tables import parse_amount
    from ..search.experiment import SETTINGS_FILE, Settings
    for flag, value in (("SPACE", args.spec), ("--data", args.data), ("--trials", args.trials),
                        ("--budget-epochs", args.budget_epochs), ("--out", args.out)):
        if value is None:
            raise UsageError(f"{flag} is required (or continue an experiment with --resume DIR)")
    if os.path.exists(os.path.join(args.out, SETTINGS_FILE)):
        raise UsageError(f"{args.out} holds an experiment already; continue it with --resume {args.out} "
                         "or choose another --out")
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise UsageError(f"--out {args.out} exists and is not an empty folder; choose a new or empty one")
    budget = {}
    for key in ("max_macs", "max_params"):
        text = getattr(args, key)
        try:
            budget[key] = parse_amount(text) if text is not None else None
        except ValueError as exc:
            raise UsageError(f"--{key.replace('_', '-')}: {exc}") from None
    if args.amp == "fp16" and not args.gpus_per_trial:
        raise UsageError("--amp fp16 needs GPUs: pass --gpus-per-trial, or use --amp bf16")
    _check_recipe(args)
    if args.data not in ("digits", "synthetic") and not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data}: not digits, synthetic or a folder")
    point = _check_space(args, budget)
    from .train import check_dependencies
    check_dependencies(args.data, "search")  # imports torch: after the cheap checks
    _check_classes(point, args)
    data = args.data if args.data in ("digits", "synthetic") else os.path.abspath(args.data)
    return Settings(spec=os.path.abspath(args.spec), data=data, out=os.path.abspath(args.out), trials=args.trials,
                    budget_epochs=args.budget_epochs, sets=list(args.set),
                    input=list(args.input) if args.input else None, algorithm=args.algorithm,
                    objective=args.objective, asha=args.asha, seed=args.seed, population=args.population,
                    recipe=args.recipe, batch_size=args.batch_size, lr=args.lr, amp=args.amp, channels_last=args.channels_last,
                    synthetic_size=args.synthetic_size,
                    include_path=[os.path.abspath(d) for d in args.include_path], max_layers=args.max_layers,
                    cpus_per_trial=args.cpus_per_trial,
                    gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures, address=args.address,
                    **budget)


def _resumed(args, load_settings):
    from dataclasses import replace

    from ..cli import UsageError
    from ..search.experiment import SETTINGS_FILE
    out = args.resume or args.out
    if not out:
        raise UsageError("--resume needs the experiment's folder: --resume DIR")
    if not os.path.isfile(os.path.join(out, SETTINGS_FILE)):
        raise UsageError(f"{out} holds no experiment ({SETTINGS_FILE} is missing)")
    if args.resume and args.out and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError(f"--resume {args.resume} and --out {args.out} name two folders; give one")
    settings = load_settings(out)
    changed = _changed_on_resume(args, settings)
    if changed:
        them = "them" if len(changed) > 1 else "it"
        raise UsageError(f"{' and '.join(changed)} cannot change when an experiment resumes: {out} keeps the "
                         f"settings it was started with ({SETTINGS_FILE}); drop {them}, "
                         "or start a new experiment with another --out")
    # the cluster may have moved; everything else is the experiment's own
    return replace(settings, out=os.path.abspath(out), address=args.address or settings.address)


# options given with --resume are compared with the experiment's settings under these names
_SETTING_OF = {"set": "sets"}
_NOT_SETTINGS = ("resume", "out", "address", "func", "command", "debug", "help")


def _changed_on_resume(args, settings) -> list[str]:
    """The options given beside --resume (those not at their defaults) whose values differ from
    the experiment's: Tune restores the experiment as it was, so they would be ignored silently."""
    scratch = argparse.ArgumentParser(add_help=False).add_subparsers()
    register(scratch)
    changed = []
    for action in scratch.choices["search"]._actions:
        if action.dest in _NOT_SETTINGS or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value == action.default or value is None:
            continue
        if _as_setting(action.dest, value) != getattr(settings, _SETTING_OF.get(action.dest, action.dest), None):
            changed.append(action.option_strings[-1] if action.option_strings else "SPACE")
    return changed


def _as_setting(dest: str, value):
    """An option's value as `Settings` holds it (absolute paths, parsed budgets, lists)."""
    from ..report.tables import parse_amount
    if dest == "spec":
        return os.path.abspath(value)
    if dest == "data":
        return value if value in ("digits", "synthetic") else os.path.abspath(value)
    if dest == "include_path":
        return [os.path.abspath(d) for d in value]
    if dest in ("max_macs", "max_params"):
        try:
            return parse_amount(value)
        except ValueError:
            return value
    if dest in ("set", "input"):
        return list(value)
    return value


def _check_recipe(args) -> None:
    from ..cli import UsageError
    from ..diagnostics import did_you_mean
    from ..train.recipes import RECIPES
    if args.recipe is not None and args.recipe not in RECIPES:
        raise UsageError(f"unknown recipe `{args.recipe}`; "
                         + (did_you_mean(args.recipe, RECIPES) or f"the recipes are {', '.join(RECIPES)}"))
    if args.lr is not None:  # checked here, not in every trial
        from ..train.recipes import check_value
        try:
            check_value("lr", args.lr)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


class OverBudget(Exception):
    """No point of the space found within the budget (exit 3, as `incdsl sample`)."""


def _check_space(args, budget: dict):
    """Load the space and find one point within budget now, so spec errors and impossible
    budgets are reported before Ray starts; returns that point's network."""
    import random

    from ..cli import UsageError, overrides
    from ..search import load_space
    from ..search.sampling import Budget, draw_random
    space = load_space(args.spec, params=overrides(args), input=args.input, include_path=args.include_path,
                       max_layers=args.max_layers)
    if not space.choices:
        raise UsageError(f"{args.spec} has no `choice(...)`: there is nothing to search "
                         "(train it with `incdsl train`)")
    draw = draw_random(space, 1, random.Random(args.seed), Budget(**budget), max_tries=256)
    if draw.samples:
        return space.network(draw.samples[0].indices)
    if draw.first_invalid is not None and draw.invalid == draw.tried:
        raise draw.first_invalid
    cheapest = _cheapest(space, draw, Budget(**budget))
    if cheapest is not None and Budget(**budget).admits(cheapest.cost):
        return space.network(cheapest.indices)  # rare within the budget, but there
    given = " and ".join(f"--{k.replace('_', '-')}" for k in ("max_macs", "max_params") if budget.get(k) is not None)
    seen = (f"; the cheapest point tried has {cheapest.cost.params:,} parameters and {cheapest.cost.macs:,} MACs"
            f" (raise {given} to admit it)" if cheapest else "")
    raise OverBudget(f"no point of {args.spec} within {given} found among {draw.tried:,} "
                     f"random points and a search for the cheapest{seen}")


def _cheapest(space, draw, budget):
    """The cheapest point a local search finds from the cheapest drawn (by MACs, then by
    parameters, as the budget asks): a budget that admits a few points of a large space
    is found within it, not reported impossible after a few hundred random misses."""
    from ..search.sampling import descend
    found = None
    for start, key in ((draw.fewest_macs, lambda cost: cost.macs), (draw.fewest_params, lambda cost: cost.params)):
        if start is None:
            continue
        point = descend(space, start, key=key)
        if budget.admits(point.cost):
            return point
        found = found or point
    return found


def _check_classes(network, args) -> None:
    """The data's classes against the network's outputs (one point stands for all: the
    classifier's width rarely varies), so a mismatch stops before Ray starts, not per trial."""
    from ..diagnostics import error
    from ..train.data import open_data
    shape = network.output_shape
    if len(shape) != 1:
        return
    data = open_data(args.data, network.input_shape, num_classes=shape[0], synthetic_size=args.synthetic_size)
    if len(data.classes) != shape[0]:
        hint = (f"pass --set classes={len(data.classes)}" if "classes" in network.params
                else f"end the network with `linear {len(data.classes)}`")
        raise error(f"the networks give {shape[0]} outputs, but the data has {len(data.classes)} classes",
                    notes=[f"data: {data.description}"], hint=hint)
