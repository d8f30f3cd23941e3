"""The driver of `incdsl search`: settings, Ray, Tune's `Tuner` (or its restore), results.

OUT holds experiment.json (the settings, so `--resume OUT` needs nothing else), tune/ (Tune's
experiment state and trial checkpoints), attempts/ (per-candidate notes, local Ray only),
and at the end trials.csv, trials.json, specs/<trial>.inc, pareto.png and pareto.svg.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import MISSING, asdict, dataclass, field, fields

SETTINGS_FILE = "experiment.json"


@dataclass
class Settings:
    """What `incdsl search` was asked to do; saved as OUT/experiment.json."""
    spec: str                      # absolute path of the space
    data: str                      # digits | synthetic | an absolute folder path
    out: str
    trials: int
    budget_epochs: int
    sets: list = field(default_factory=list)   # --set NAME=VALUE, as given
    input: list | None = None
    max_macs: int | None = None
    max_params: int | None = None
    algorithm: str = "random"
    objective: str = "macs"        # the cost axis: macs | params
    asha: bool = False
    seed: int = 0
    population: int = 8            # evolution's population, NSGA-II's generation
    recipe: str | None = None
    batch_size: int | None = None  # recipe overrides
    lr: float | None = None
    amp: str | None = None
    channels_last: bool | None = None  # None: as `incdsl train` (on, off with --deterministic)
    synthetic_size: int = 1024
    include_path: list = field(default_factory=list)  # -I DIR, absolute
    max_layers: int | None = None  # --max-layers; None: the default
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_failures: int = 2
    address: str | None = None


def save_settings(settings: Settings) -> None:
    from ..io import write_atomic
    write_atomic(os.path.join(settings.out, SETTINGS_FILE), json.dumps(asdict(settings), indent=2) + "\n")


def load_settings(out: str) -> Settings:
    """The settings an experiment folder holds.

    Raises:
        IncdslError: experiment.json cannot be read, is not JSON, or a field is missing, unknown,
            or of the wrong type or range (the file was damaged or not written by `incdsl search`).
    """
    from ..diagnostics import error
    from ..io import ReadError, os_reason, read_text
    path = os.path.join(out, SETTINGS_FILE)
    try:
        values = json.loads(read_text(path))
    except (OSError, ReadError, ValueError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else getattr(exc, "reason", None) or str(exc)
        raise error(f"cannot read {path}: {reason}", hint="it was not written by `incdsl search`, or was damaged") from None
    problem = settings_problem(values)
    if problem:
        raise error(f"{path} is damaged: {problem}", hint="it was not written by `incdsl search`; start a new experiment")
    return Settings(**values)


_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,)}
_COUNTS = ("trials", "budget_epochs", "population", "synthetic_size")  # each at least 1


def settings_problem(values) -> str | None:
    """What is wrong with `values` as the fields of `Settings` (a JSON document), or None."""
    if not isinstance(values, dict):
        return "it is not a JSON object"
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        return f"unknown field `{unknown[0]}`"
    for name, f in known.items():
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"no `{name}`"
            continue
        value, kinds = values[name], f.type.split(" | ")
        if not (value is None and "None" in kinds or any(
                isinstance(value, _KINDS[k]) and (k == "bool" or not isinstance(value, bool)) for k in kinds if k != "None")):
            return f"`{name}` is not a {f.type}"
    if any(values.get(name, 1) < 1 for name in _COUNTS) or not 0 <= values.get("seed", 0) < 2**32:
        return "a count or the seed is out of range"
    return None


def start_ray(address: str | None, cpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a small local Ray bound to loopback."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports leave the machine
    import ray
    if ray.is_initialized():
        return
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            _probe(address)  # Ray itself retries an unreachable head for minutes
            ray.init(address=address, **common)
        except (OSError, RuntimeError, ValueError) as exc:
            from ..diagnostics import error
            raise error(f"cannot join the Ray cluster at `{address}`: {str(exc).strip().splitlines()[0]}",
                        hint="start one with `ray start --head`, or leave out --address to run on this "
                             "machine") from None
    else:
        # address="local": a Ray of our own even where one already runs here (`ray start`) or
        # RAY_ADDRESS names one; joining a cluster is what --address is for
        ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False,
                 _node_ip_address="127.0.0.1",
                 object_store_memory=256 * 2**20, **common)


def _probe(address: str, timeout: float = 10.0) -> None:
    """Raise OSError unless something listens at a HOST:PORT address (`auto` is Ray's to find)."""
    import socket
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        socket.create_connection((host, int(port)), timeout=timeout).close()


def run_experiment(settings: Settings, resume: bool, log=print) -> dict:
    """Run (or continue) the experiment to the end and write its results; returns the
    trials.json document."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # save Tune's state often: a kill loses little
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a trial stopped by an incdsl error reports the error instead of the metric (see train_trial)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    start_ray(settings.address)
    # Tune logs each failed trial's traceback; the table and trials.json say what failed
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from ray import tune

    from . import tune as search_tune
    from .results import format_table, trial_row, write_results

    began = time.monotonic()
    trainable = _trainable(settings)
    path = os.path.join(settings.out, "tune")
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = _new_tuner(settings, trainable)
    grid = tuner.fit()
    records = search_tune.trial_records(grid)
    rows = [trial_row(r, settings.budget_epochs) for r in records]
    specs = {r["trial"]: r["config"]["spec"] for r in records}
    state = search_tune.saved_searcher_state(path) or {}
    skipped = skipped_proposals(state.get("skipped"), records)
    interrupted = was_interrupted(rows, settings.trials, state.get("exhausted", False))
    experiment = {**_plain(settings), "space_name": _space_name(records), "skipped_proposals": skipped,
                  "interrupted": interrupted}
    document = write_results(settings.out, rows, specs, experiment, settings.objective)
    log(format_table(rows, settings.objective))
    for line in closing_lines(rows, settings.trials, skipped, bool(document["pareto"]),
                              time.monotonic() - began, settings.out, interrupted):
        log(line)
    return document


def was_interrupted(rows: list[dict], trials: int, exhausted: bool) -> bool:
    """Whether Tune stopped before the experiment's end: a trial is unfinished, or fewer trials
    than asked for ran though the searcher had candidates left (Ctrl-C before or between
    trials leaves no unfinished trial, but `--resume` has trials to run)."""
    return any(r["status"] == "unfinished" for r in rows) or (len(rows) < trials and not exhausted)


def closing_lines(rows: list[dict], trials: int, skipped: dict, plotted: bool, seconds: float, out: str,
                  interrupted: bool = False) -> list[str]:
    """What the command says after the table: a space used up, the proposals not trained, and
    where the results are."""
    from ..report.tables import counted
    lines = []
    if len(rows) < trials and not interrupted:
        lines.append(f"note: the algorithm found only {counted(len(rows), 'distinct candidate')} within the budget")
    if any(skipped.values()):
        lines.append("proposals not trained: " + ", ".join(f"{n:,} {kind}" for kind, n in skipped.items() if n))
    plots = ", pareto.png and pareto.svg" if plotted else " (no finished trial to plot)"
    lines.append(f"{counted(len(rows), 'trial')} in {seconds:.0f} s; results in "
                 f"{os.path.join(out, 'trials.csv')}, trials.json{plots}")
    return lines


def skipped_proposals(saved: dict | None, records: list) -> dict:
    """The proposals the search did not train, by kind, over the whole search: the searcher's own
    counts as Tune saved them at the end (`saved`). A trial's config holds only a snapshot, taken
    when that trial was suggested, which misses every proposal after it (those the searcher
    tried before deciding the space was used up, above all); without `saved`, the largest
    count of each kind in any snapshot (the counts only grow)."""
    if saved is not None:
        return saved
    counts: dict = {}
    for record in records:
        for kind, n in (record["config"].get("skipped") or {}).items():
            counts[kind] = max(counts.get(kind, 0), n)
    return counts


def _new_tuner(settings: Settings, trainable):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from . import tune as search_tune
    from .candidates import Vetter
    from .proposers import make_proposer
    from .sampling import Budget

    vetter = Vetter(settings.spec, _params(settings.sets), tuple(settings.input) if settings.input else None,
                    Budget(settings.max_params, settings.max_macs), include_path=settings.include_path,
                    max_layers=settings.max_layers)
    proposer = make_proposer(settings.algorithm, vetter.sizes(), settings.seed, settings.objective,
                             settings.population)
    scheduler = (ASHAScheduler(time_attr="training_iteration", metric=search_tune.METRIC, mode="max",
                               max_t=settings.budget_epochs, grace_period=1, reduction_factor=2)
                 if settings.asha else None)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search_tune.SpaceSearcher(vetter, proposer), scheduler=scheduler,
                                    num_samples=settings.trials, reuse_actors=True,  # no new process per trial
                                    trial_dirname_creator=search_tune.trial_dirname,
                                    trial_name_creator=search_tune.trial_dirname),
        run_config=tune.RunConfig(
            name="tune", storage_path=os.path.abspath(settings.out), verbose=0,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[search_tune.Progress(settings.trials, settings.objective)]))


def _trainable(settings: Settings):
    from ray import tune

    from .tune import train_trial
    ledger = None
    if not settings.address:  # the workers share this disk
        ledger = os.path.abspath(os.path.join(settings.out, "attempts"))
        os.makedirs(ledger, exist_ok=True)
    worker = {"data": settings.data, "overrides": budget_overrides(settings), "recipe": settings.recipe,
              "amp": settings.amp, "channels_last": settings.channels_last, "seed": settings.seed,
              "threads": max(1, int(settings.cpus_per_trial)), "synthetic_size": settings.synthetic_size,
              "ledger": ledger}
    return tune.with_resources(tune.with_parameters(train_trial, settings=worker),
                               {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})


def budget_overrides(settings: Settings) -> dict:
    """The recipe compressed to the budget: `budget_epochs` epochs, the warm-up shortened in
    proportion (a one-epoch warm-up of a 15-epoch recipe would fill a one-epoch budget)."""
    from ..train.recipes import get_recipe
    recipe = get_recipe(settings.recipe or "default")
    overrides = {"epochs": settings.budget_epochs,
                 "warmup_epochs": recipe.warmup_epochs * min(1.0, settings.budget_epochs / recipe.epochs)}
    for key in ("batch_size", "lr"):
        if getattr(settings, key) is not None:
            overrides[key] = getattr(settings, key)
    return overrides


def _params(sets: list) -> dict:
    from ..lang.values import parse_value
    return {k.strip(): parse_value(v.strip()) for k, _, v in (s.partition("=") for s in sets)}


def _plain(settings: Settings) -> dict:
    keep = ("spec", "data", "trials", "budget_epochs", "max_macs", "max_params", "algorithm", "objective", "asha",
            "seed", "population", "recipe", "batch_size", "lr", "cpus_per_trial", "gpus_per_trial")
    out = {k: getattr(settings, k) for k in keep}
    out["spec"] = os.path.basename(settings.spec)  # no machine paths in shared results
    return out


def _space_name(records: list) -> str:
    import re
    for r in records:
        found = re.search(r"^network\s+(\w+)", r["config"]["spec"], re.MULTILINE)
        if found:
            return found.group(1)
    return "search"
