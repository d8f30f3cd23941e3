"""Search experiments on Ray Tune: the searcher, the trainable and the progress lines (the
driver is `incdsl.search.experiment`).

Imports Ray at import time: only `incdsl search` imports this module, after checking that
the `search` extra is installed.

    driver (this process)                     Ray workers (local, or a cluster's nodes)
    SpaceSearcher.suggest -> config  ------>  train_trial(config): incdsl.train, one epoch
      (proposer, budget, duplicates)          at a time, tune.report(metrics, checkpoint)
    Progress: one line per change   <------   per-epoch metrics

A trial's config carries its concrete spec text, so a worker needs incdsl and the data,
not the space's files. A retried trial resumes from its last reported checkpoint.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
import time

from ray import tune
from ray.tune.search import Searcher

from ..diagnostics import IncdslError
from .results import trial_order

METRIC = "val_top1"
FAILED = "incdsl_error"  # the result of a trial stopped by an incdsl error: the rendered message
MAX_PROPOSALS = 2000  # proposals per suggestion before the searcher decides the space is used up


class SpaceSearcher(Searcher):
    """A Tune searcher over a `Space`: a proposer names points, a `Vetter` keeps invalid,
    over-budget and duplicate points from ever starting."""

    def __init__(self, vetter, proposer):
        super().__init__(metric=METRIC, mode="max")
        self.vetter = vetter
        self.proposer = proposer
        self.trials: dict[str, tuple] = {}  # Tune trial id -> (key, indices)
        self.count = 0
        self.exhausted = False

    def suggest(self, trial_id: str):
        for _ in range(MAX_PROPOSALS):
            indices = self.proposer.propose(trial_id)
            verdict = self.vetter.vet(indices)
            if verdict.kind == "new":
                cand = verdict.candidate
                self.count += 1
                self.trials[trial_id] = (cand.key, cand.indices)
                return {"trial": f"trial_{self.count:04d}", "key": cand.key, "point": list(cand.indices),
                        "params": cand.params, "macs": cand.macs, "choices": cand.choices, "spec": cand.spec,
                        "skipped": dict(self.vetter.counts)}  # so far (the driver reports the searcher's own)
            self.proposer.discard(trial_id, indices, self.vetter.known(verdict.key))
        self.exhausted = True
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        key, indices = self.trials[trial_id]
        metrics = None if error or not result or result.get(METRIC) is None else {
            k: result[k] for k in (METRIC, "macs", "params") if k in result}
        self.vetter.finish(key, metrics)
        self.proposer.complete(trial_id, indices, metrics)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def saved_skips(experiment_dir: str) -> dict | None:
    """The searcher's counts of proposals not trained, by kind, as Tune last saved its state in
    `experiment_dir` (Tune saves it once more when the experiment ends); None without one."""
    state = saved_searcher_state(experiment_dir)
    return state["skipped"] if state is not None else None


def saved_searcher_state(experiment_dir: str) -> dict | None:
    """What the searcher last saved in `experiment_dir`: {"skipped": counts by kind,
    "exhausted": whether it found no new candidate to propose}; None without a saved state."""
    searcher = SpaceSearcher(None, None)
    try:
        searcher.restore_from_dir(experiment_dir)
        return {"skipped": dict(searcher.vetter.counts), "exhausted": bool(searcher.exhausted)}
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError):
        return None


# the trainable --------------------------------------------------------------------------

def train_trial(config: dict, settings: dict) -> None:
    """Train one candidate with incdsl's training code for the budget's epochs,
    reporting after each (metrics and a checkpoint, so a retried trial resumes)."""
    ledger = Ledger(settings.get("ledger"), config["key"])
    finished = ledger.finished()
    if finished is not None:  # trained before the driver last saved its state: report, do not retrain
        for metrics in finished:
            tune.report(metrics)
        return
    ledger.note("start")
    try:
        _train_candidate(config, settings, ledger)
    except IncdslError as exc:
        # The same network fails the same way again (bad data for it, out of memory, a
        # diverging loss), so the trial ends with the error as its result: a raised error
        # would be retried --max-failures times, which is for workers that die. The text is
        # rendered here: Ray would not rebuild our exception in the driver.
        failed = {FAILED: exc.render(), "macs": config["macs"], "params": config["params"]}
        ledger.finish([failed])
        tune.report(failed)


class TrialFailed(Exception):
    """A trial stopped by an incdsl error (bad data for this network, a diverging loss)."""


def _train_candidate(config: dict, settings: dict, ledger: "Ledger") -> None:
    from ..ir.network import load
    from ..train.loop import TrainConfig, train

    network = load(config["spec"], file=config["trial"] + ".inc")
    work = tempfile.mkdtemp(prefix="incdsl-trial-")
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as saved:
                for name in ("last.pt", "metrics.jsonl"):
                    shutil.copy(os.path.join(saved, name), os.path.join(work, name))
        budget, reported = settings["overrides"]["epochs"], []
        epochs = len(_history(work))
        with open(os.devnull, "w") as quiet:
            while epochs < budget:
                train_config = TrainConfig(
                    data=settings["data"], out=work, recipe=settings.get("recipe"), overrides=settings["overrides"],
                    amp=settings.get("amp"), channels_last=settings.get("channels_last"),
                    seed=settings.get("seed", 0), threads=settings.get("threads"),
                    resume=work if epochs else None, stop_after=1,
                    synthetic_size=settings.get("synthetic_size", 1024))
                summary = train(network, train_config, log=lambda *a, **k: None, stream=quiet)
                if summary["epochs"] <= epochs:
                    break  # nothing trained: never loop
                epochs = summary["epochs"]
                reported.append(_epoch_metrics(work, config))
                if epochs >= budget:
                    # the last report: Tune may end the trial inside it (ASHA stops a trial at
                    # max_t), so the ledger hears first; a retry replays the finished result
                    ledger.note("epoch", epoch=epochs)
                    ledger.finish(reported)
                    _report(reported[-1], work)
                    return
                _report(reported[-1], work)
                ledger.note("epoch", epoch=epochs)  # after the report: the checkpoint is Tune's now
        if not reported and epochs:  # a retry of a trial whose last epoch was reported before it died
            reported.append(_epoch_metrics(work, config))
            tune.report(reported[-1])
        ledger.finish(reported)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _history(work: str) -> list[dict]:
    try:
        with open(os.path.join(work, "metrics.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _epoch_metrics(work: str, config: dict) -> dict:
    history = _history(work)
    last = history[-1]
    return {"epoch": last["epoch"], METRIC: last["val_top1"], "val_top5": last["val_top5"],
            "best_val_top1": max(r["val_top1"] for r in history), "train_loss": last["train_loss"],
            "val_loss": last["val_loss"], "train_seconds": sum(r["seconds"] for r in history),
            "macs": config["macs"], "params": config["params"]}


def _report(metrics: dict, work: str) -> None:
    keep = tempfile.mkdtemp(prefix="incdsl-ckpt-")
    try:
        for name in ("last.pt", "metrics.jsonl"):
            shutil.copy(os.path.join(work, name), os.path.join(keep, name))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(keep))
    finally:
        shutil.rmtree(keep, ignore_errors=True)


class Ledger:
    """Per-candidate notes in OUT/attempts/ when the workers share the driver's disk (a
    local Ray): `<key>.log` gets a line per start and per epoch trained (with the process
    id), `<key>.done.json` the reported metrics once the candidate has finished."""

    def __init__(self, folder: str | None, key: str):
        self.folder, self.key = folder, key

    def note(self, event: str, **extra) -> None:
        if self.folder:
            line = json.dumps({"event": event, "pid": os.getpid(), "time": time.time(), **extra})
            with open(os.path.join(self.folder, self.key + ".log"), "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def finished(self) -> list | None:
        if not self.folder:
            return None
        try:
            with open(os.path.join(self.folder, self.key + ".done.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def finish(self, reported: list) -> None:
        if self.folder:
            from ..io import write_atomic
            write_atomic(os.path.join(self.folder, self.key + ".done.json"), json.dumps(reported))
            self.note("done")


# progress ---------------------------------------------------------------------------------

class Progress(tune.Callback):
    """One line whenever the count of done, running or pending trials or the best changes."""

    def __init__(self, trials: int, cost: str, stream=None):
        self.total, self.cost = trials, cost
        self.last = None
        self.began = time.monotonic()
        self.stream = stream

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment
        return {k: v for k, v in self.__dict__.items() if k != "stream"}

    def __setstate__(self, state: dict) -> None:  # restored by --resume, in another process
        self.__dict__.update(state, stream=None, last=None, began=time.monotonic())

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self.report(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self.report(trials)

    def report(self, trials: list) -> None:
        done = sum(ended(t) for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        # the most accurate; of equally accurate trials the cheapest, as the Pareto front has it
        best = max((t for t in trials if (t.last_result or {}).get(METRIC) is not None),
                   key=lambda t: (t.last_result[METRIC], -t.config[self.cost]), default=None)
        state = (done, running, best.config["trial"] if best else None, best.last_result[METRIC] if best else None)
        if state == self.last:
            return
        self.last = state
        line = f"[{time.monotonic() - self.began:6.0f} s] {done}/{self.total} done, {running} running, " \
               f"{max(0, self.total - done - running)} pending"
        if best is not None:
            line += (f"; best {100 * best.last_result[METRIC]:.2f}% ({best.config['trial']}, "
                     f"{best.config[self.cost]:,} {'MACs' if self.cost == 'macs' else 'params'})")
        print(line, file=self.stream or sys.stdout, flush=True)


def ended(trial) -> bool:
    """Whether a Tune trial has ended for good: failed, or trained to its end (Tune marks the
    last result `done`; ASHA's early stop too). A trial an interrupt terminated is not done:
    `--resume` trains it on."""
    return trial.status == "ERROR" or (trial.status == "TERMINATED" and bool((trial.last_result or {}).get("done")))


def trial_dirname(trial) -> str:
    return trial.config.get("trial", trial.trial_id)


def trial_records(grid) -> list[dict]:
    """Plain records of a `ResultGrid`'s trials, for `incdsl.search.results`."""
    records = []
    for result in grid:
        if not result.config or "key" not in result.config:
            continue
        metrics = result.metrics or {}
        error = error_text(result.error) if result.error is not None else metrics.get(FAILED)
        records.append({"trial": result.config["trial"], "config": result.config, "metrics": result.metrics,
                        "error": error})
    return sorted(records, key=lambda r: trial_order(r["trial"]))


def error_text(error: BaseException) -> str:
    """What went wrong in a trial, without Ray's wrapping and tracebacks."""
    current, seen = error, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TrialFailed) and current.args:
            return str(current.args[0])
        current = getattr(current, "cause", None) or current.__cause__
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip()}" if lines else type(error).__name__
