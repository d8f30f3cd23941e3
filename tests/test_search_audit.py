"""An audit of architecture search against what README and --help promise: `incdsl sample`
(distinct points, budgets, the index against the written specs, grid = the space), the
`Space` API (`mutate`, `sample`, `to_spec`), the budget check of `incdsl search`, and how a
trial stopped by an incdsl error ends (once, not retried). The experiments on a local Ray
are slow, as in tests/test_search_tune.py."""
from __future__ import annotations

import csv
import glob
import itertools
import json
import math
import os
import random
import subprocess
import sys
import types

import pytest

import incdsl
from incdsl.cli import main
from incdsl.ir.network import load
from incdsl.passes.cost import count_costs
from incdsl.search.results import write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI_SPACE = os.path.join(ROOT, "examples", "mini_space.inc")

# Choices of each kind: a network parameter, a repeat count, one shared by a block's
# instances, a block choice, call-site choices (one a range) and one inside a branch.
SMALL_SPACE = """\
network small(classes = 10, w = choice(8, 16)):
    input 3x16x16
    conv 3x3 w S
    repeat choice(1, 2): blk(n = choice(8, 12))
    choice(identity, blk(4)) as mid
    blk
    blk(n = choice(range(4, 13, 4)))
    gap -> flatten -> linear classes

block blk(n = 8):
    concat:
        branch: conv 1x1 n
        branch: conv 3x3 choice(4, 6) S
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.inc"
    path.write_text(SMALL_SPACE)
    return str(path)


def _index(out) -> tuple[dict, list[dict]]:
    with open(os.path.join(out, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    with open(os.path.join(out, "index.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return index, rows


def _check_index(out, space, max_macs=None) -> set[tuple]:
    """index.json, index.csv and the written specs agree; returns the points written."""
    index, rows = _index(out)
    assert len(rows) == len(index["samples"])
    points = set()
    for row, sample in zip(rows, index["samples"]):
        assert (row["file"], int(row["params"]), int(row["macs"])) == (sample["file"], sample["params"], sample["macs"])
        assert {c.name: row[c.name] for c in space.choices} == sample["choices"] == space.values(sample["point"])
        with open(os.path.join(out, sample["file"]), encoding="utf-8") as f:
            network = load(f.read(), file=sample["file"])
        total = count_costs(network).total
        assert (total.params, total.macs) == (sample["params"], sample["macs"])
        assert network == space.network(sample["point"])
        assert max_macs is None or total.macs <= max_macs
        points.add(space.indices(sample["point"]))
    assert len(points) == len(rows)  # distinct
    assert sorted(f for f in os.listdir(out) if f.endswith(".inc")) == sorted(s["file"] for s in index["samples"])
    return points


# --- incdsl sample ----------------------------------------------------------------------------

def test_grid_writes_exactly_the_points_of_the_space(small, tmp_path):
    space = incdsl.space(small)
    assert main(["sample", small, "--strategy", "grid", "-o", str(tmp_path / "g")]) == 0
    points = _check_index(tmp_path / "g", space)
    every = set(itertools.product(*(range(len(c.options)) for c in space.choices)))
    assert points == every and len(every) == space.size == 2 * 2 * 2 * 2 * 3 * 2
    assert _index(tmp_path / "g")[0]["size"] == space.size


def test_random_samples_are_distinct_within_budget_and_repeat_with_the_seed(small, tmp_path):
    space = incdsl.space(small)
    macs = sorted(space.cost(p).macs for p in space.grid())
    budget = macs[len(macs) // 2]
    admitted = sum(m <= budget for m in macs)
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["sample", small, "-n", "20", "--seed", "4", "--max-macs", str(budget), "-o", str(out)]) == 0
        _check_index(out, space, max_macs=budget)
        runs.append([s["point"] for s in _index(out)[0]["samples"]])
    assert runs[0] == runs[1]
    # every admitted point, then one more than there are
    assert main(["sample", small, "-n", str(admitted), "--max-macs", str(budget), "-o", str(tmp_path / "all")]) == 0
    assert len(_check_index(tmp_path / "all", space, max_macs=budget)) == admitted
    assert main(["sample", small, "-n", str(admitted + 1), "--max-macs", str(budget), "-o", str(tmp_path / "x")]) == 3
    assert not (tmp_path / "x").exists()


def test_grid_asked_for_more_points_than_the_space_has_is_a_usage_error(small, tmp_path, capsys):
    # as with --strategy random; it was exit 3, blaming a budget that was not given
    assert main(["sample", small, "--strategy", "grid", "-n", "97", "-o", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "the space has 96 points; cannot draw 97 distinct samples" in err and "budget" not in err
    assert not (tmp_path / "g").exists()


def test_a_budget_short_after_trying_every_point_does_not_suggest_more_tries(small, tmp_path, capsys):
    space = incdsl.space(small)
    cheapest = min(space.cost(p).macs for p in space.grid())
    assert main(["sample", small, "--strategy", "grid", "-n", "2", "--max-macs", str(cheapest),
                 "-o", str(tmp_path / "g")]) == 3
    err = capsys.readouterr().err
    assert "admits only 1 of the 2" in err and "--max-tries" not in err  # it tried all 96


def test_too_few_valid_points_without_a_budget_does_not_blame_a_budget(tmp_path, capsys):
    # repeat 4 of a 3x3 valid conv shrinks 8x8 to nothing: 2 of the 8 points are invalid
    path = tmp_path / "shrink.inc"
    path.write_text("network shrink(classes = 10):\n    input 3x8x8\n"
                    "    repeat choice(1, 2, 3, 4): conv 3x3 choice(4, 8) V\n    gap -> flatten -> linear classes\n")
    assert main(["sample", str(path), "-n", "7", "-o", str(tmp_path / "s")]) == 3
    err = capsys.readouterr().err
    assert "valid points for only 6 of the 7 samples" in err and "2 of them invalid" in err
    assert "budget" not in err.split("= hint:")[-1] and "(none)" not in err
    assert not (tmp_path / "s").exists()


# --- the Space API -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["small", MINI_SPACE])
def test_mutate_changes_one_choice_and_to_spec_reloads_to_the_same_network(path, small):
    space = incdsl.space(small if path == "small" else path)
    rng = random.Random(1)
    for _ in range(15):
        point = space.sample(rng)
        child = space.mutate(point, rng)
        assert sum(point[k] != child[k] for k in point) == 1
        for p in (point, child):
            network = load(space.to_spec(p), file="point.inc")
            assert network == space.network(p)
            total = count_costs(network).total
            assert (total.params, total.macs) == tuple(space.cost(p))


def test_sample_is_uniform_over_each_choices_options(small):
    space = incdsl.space(small)
    rng = random.Random(2)
    draws = 6000
    counts = [[0] * len(c.options) for c in space.choices]
    for _ in range(draws):
        point = space.sample(rng)
        for k, c in enumerate(space.choices):
            counts[k][point[c.id]] += 1
    for k, c in enumerate(space.choices):
        expected = draws / len(c.options)
        chi2 = sum((n - expected) ** 2 / expected for n in counts[k])
        dof = len(c.options) - 1
        # about 6 standard deviations above the mean of chi-square: a biased sampler (one
        # option 10% likelier) lands far beyond it, a fair one essentially never
        assert chi2 < dof + 6 * math.sqrt(2 * dof), (c.name, counts[k])


def test_mutate_of_a_space_without_two_option_choices_says_so(tmp_path):
    path = tmp_path / "one.inc"
    path.write_text("network one(classes = 10):\n    input 3x8x8\n    conv 3x3 choice(4) S\n"
                    "    gap -> flatten -> linear classes\n")
    space = incdsl.space(str(path))
    with pytest.raises(ValueError, match="nothing to mutate"):
        space.mutate(space.first(), random.Random(0))


# --- incdsl search, before Ray --------------------------------------------------------------

def _search_args(spec, **extra):
    from incdsl.cli import build_parser
    args = ["search", spec, "--data", "synthetic", "--trials", "1", "--budget-epochs", "1", "--out", "unused"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return build_parser().parse_args(args)


def test_search_finds_a_rare_point_within_budget_rather_than_exit_3():
    """Only the first point of mini_space (all choices at their smallest) has at most
    4,293,568 MACs; 256 random points miss it (seed 0), which made `incdsl search` exit 3
    with "no point within the budget" while `incdsl sample` found it by local search."""
    from incdsl.commands.search import OverBudget, _check_space
    network = _check_space(_search_args(MINI_SPACE, max_macs=4293568, seed=0),
                           {"max_macs": 4293568, "max_params": None})
    assert count_costs(network).total.macs == 4293568
    with pytest.raises(OverBudget, match="cheapest point tried has 31,778 parameters and 4,293,568 MACs"):
        _check_space(_search_args(MINI_SPACE, seed=0), {"max_macs": 4293567, "max_params": None})


# --- a trial stopped by an incdsl error -----------------------------------------------------

def test_a_trial_that_fails_reports_its_error_once_and_is_not_raised_for_a_retry(tmp_path, monkeypatch):
    pytest.importorskip("ray.tune")
    from incdsl.diagnostics import error
    from incdsl.search import tune as search_tune
    from incdsl.search.results import trial_row

    reports = []
    monkeypatch.setattr(search_tune.tune, "report", lambda metrics, **kw: reports.append(dict(metrics)))

    def fail(config, settings, ledger):
        raise error("out of memory while training `small` in batches of 64")
    monkeypatch.setattr(search_tune, "_train_candidate", fail)
    config = {"key": "k1", "trial": "trial_0001", "macs": 10, "params": 2}
    settings = {"ledger": str(tmp_path)}
    search_tune.train_trial(config, settings)  # raised before: Tune retried it --max-failures times
    assert len(reports) == 1 and "out of memory" in reports[0][search_tune.FAILED]
    assert search_tune.METRIC not in reports[0]
    # a resumed experiment that starts it again replays the failure, trains nothing
    monkeypatch.setattr(search_tune, "_train_candidate", lambda *a: pytest.fail("trained again"))
    search_tune.train_trial(config, settings)
    assert reports[1] == reports[0]
    # the driver's row says what failed
    result = types.SimpleNamespace(config={**config, "spec": ""}, metrics=reports[0], error=None)
    record = search_tune.trial_records([result])[0]
    row = trial_row(record, budget_epochs=1)
    assert row["status"] == "error" and "out of memory" in row["error"] and row["accuracy"] is None


def test_the_searcher_counts_a_failed_trial_as_failed():
    pytest.importorskip("ray.tune")
    from incdsl.search import tune as search_tune
    from incdsl.search.candidates import Vetter
    from incdsl.search.proposers import EvolutionProposer

    vetter = Vetter(MINI_SPACE)
    proposer = EvolutionProposer(vetter.sizes(), seed=0, population=1)
    searcher = search_tune.SpaceSearcher(vetter, proposer)
    config = searcher.suggest("t1")
    searcher.on_trial_complete("t1", {search_tune.FAILED: "error: ...", "macs": config["macs"]})
    assert vetter.finished == {config["key"]: None} and not proposer.population


def test_a_trial_cut_short_by_an_interrupt_is_unfinished_not_stopped_early():
    """Without ASHA, a trial interrupted after its first of two epochs was labelled "stopped
    early" (and, with no other trial unfinished, the command exited 0 as if the experiment
    had ended). Tune marks the last result of a trial that ended `done`."""
    from incdsl.search.results import trial_row
    config = {"trial": "trial_0001", "key": "k", "params": 1, "macs": 2, "choices": {}}
    def status(**metrics):
        return trial_row({"trial": "trial_0001", "config": config, "metrics": {"epoch": 1, "val_top1": 0.5, **metrics},
                          "error": None}, budget_epochs=2)["status"]
    assert status(done=False) == "unfinished"
    assert status(done=True) == "stopped early"  # ASHA
    assert status() == "stopped early"


def test_the_ledger_hears_of_the_last_epoch_before_tune_can_stop_the_trial(tmp_path, monkeypatch):
    """ASHA stops a trial inside its report at max_t (the budget), so the epoch and the
    `done` noted after that report were never written: a resumed experiment could train
    the candidate again."""
    pytest.importorskip("ray.tune")
    from incdsl.search import tune as search_tune

    class Stopped(Exception):
        """What Tune does to a trial it stops inside `tune.report`."""

    def fake_train(network, config, log=None, stream=None):
        done = len(search_tune._history(config.out)) + 1
        with open(os.path.join(config.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"epoch": done, "val_top1": 0.5, "val_top5": 1.0, "train_loss": 1.0,
                                "val_loss": 1.0, "seconds": 0.1}) + "\n")
        open(os.path.join(config.out, "last.pt"), "wb").close()
        return {"epochs": done}

    loop = types.ModuleType("incdsl.train.loop")  # no torch: the loop's contract only
    loop.TrainConfig = lambda **kw: types.SimpleNamespace(**kw)
    loop.train = fake_train
    monkeypatch.setitem(sys.modules, "incdsl.train.loop", loop)
    monkeypatch.setattr(search_tune.tune, "get_checkpoint", lambda: None)
    reports = []

    def report(metrics, work):
        reports.append(metrics["epoch"])
        if metrics["epoch"] == 2:
            raise Stopped
    monkeypatch.setattr(search_tune, "_report", report)
    spec = "network n(classes = 10):\n    input 1x8x8\n    gap -> flatten -> linear classes\n"
    config = {"key": "k1", "trial": "trial_0001", "macs": 10, "params": 2, "spec": spec}
    settings = {"ledger": str(tmp_path), "data": "synthetic", "overrides": {"epochs": 2}}
    with pytest.raises(Stopped):
        search_tune.train_trial(config, settings)
    assert reports == [1, 2]
    with open(tmp_path / "k1.log") as f:
        events = [(e["event"], e.get("epoch")) for e in map(json.loads, f)]
    assert events == [("start", None), ("epoch", 1), ("epoch", 2), ("done", None)]
    assert [m["epoch"] for m in search_tune.Ledger(str(tmp_path), "k1").finished()] == [1, 2]


# --- slow: experiments on a local Ray -------------------------------------------------------

FAILING_SPACE = """\
network failing(classes = 10):
    input 1x8x8
    conv 3x3 choice(4, 8) S
    conv 3x3 choice(4, 6) S
    gap -> flatten -> linear choice(classes, 5)
"""


@pytest.mark.slow
def test_failing_trials_end_once_and_the_rest_of_the_experiment_runs(tmp_path):
    """Half the points give 5 outputs for the 10 classes of digits; the point the command
    checks first (seed 0) gives 10. Each failing candidate starts once (it started three
    times: --max-failures 2 retried an error that recurs), and the table says why."""
    pytest.importorskip("sklearn")
    spec = tmp_path / "failing.inc"
    spec.write_text(FAILING_SPACE)
    out = tmp_path / "exp"
    run = subprocess.run([sys.executable, "-m", "incdsl", "search", str(spec), "--data", "digits",
                          "--batch-size", "64", "--budget-epochs", "1", "--trials", "8", "--seed", "0",
                          "--cpus-per-trial", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": ROOT, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"})
    assert run.returncode == 0, run.stdout + run.stderr
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 8
    failed = [t for t in trials if t["status"] == "error"]
    assert len(failed) == 4 and all("5 outputs" in t["error"] for t in failed)
    assert all(t["status"] == "done" for t in trials if t not in failed)
    for t in trials:
        with open(out / "attempts" / f"{t['key']}.log") as f:
            events = [json.loads(line)["event"] for line in f]
        assert events.count("start") == 1, (t["trial"], events)
    assert len(glob.glob(str(out / "specs" / "*.inc"))) == 8


# --- the Pareto plot: coincident and nearby trials stay readable -----------------------------

def _done_row(trial: str, macs: int, accuracy: float) -> dict:
    return {"trial": trial, "status": "done", "accuracy": accuracy, "best_accuracy": accuracy, "epochs": 1,
            "params": 1, "macs": macs, "train_seconds": 0.0, "pareto": False, "spec": "", "key": trial,
            "error": "", "choices": {}}


def _svg_labels(path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The trial labels of a plot's SVG and their ink boxes (x0, y0, x1, y1; y down), measured
    with matplotlib's own font metrics at the SVG's font size."""
    import xml.etree.ElementTree as ET

    from matplotlib.textpath import TextPath
    labels = []
    for text in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text"):
        if "trial_" not in (text.text or ""):
            continue
        style = dict(part.split(":", 1) for part in text.get("style").split(";") if ":" in part)
        assert style[" text-anchor"].strip() == "start"
        size = float(style["font-size"].strip().removesuffix("px"))
        ink = TextPath((0, 0), text.text, size=size).get_extents()
        x, y = float(text.get("x")), float(text.get("y"))
        labels.append((text.text, (x + ink.x0, y - ink.y1, x + ink.x1, y - ink.y0)))
    return labels


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _plot(tmp_path, rows) -> list:
    document = write_results(str(tmp_path), rows, {}, {"budget_epochs": 1, "space_name": "t"}, "macs")
    return document, _svg_labels(tmp_path / "pareto.svg")


def test_equal_trials_share_one_combined_label_on_the_pareto_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [_done_row("trial_0003", 10_000, 0.5), _done_row("trial_0001", 2_000_000, 0.9),
            _done_row("trial_0007", 10_000, 0.5), _done_row("trial_0002", 400_000, 0.7)]
    document, labels = _plot(tmp_path, rows)
    assert document["pareto"] == ["trial_0003", "trial_0007", "trial_0002", "trial_0001"]  # both on the front
    assert sorted(text for text, _ in labels) == ["trial_0001", "trial_0002", "trial_0003, trial_0007"]


def test_labels_of_nearby_pareto_trials_do_not_overlap(tmp_path):
    pytest.importorskip("matplotlib")
    # a cluster of cheap trials a hair apart, then the expensive ones: on a log axis the
    # cluster's points nearly coincide, and labels placed at one fixed offset pile up
    cluster = [_done_row(f"trial_{i:04d}", 10_000 + 50 * i, 0.5 + 0.002 * i) for i in range(1, 7)]
    rows = cluster + [_done_row("trial_0010", 3_000_000, 0.95), _done_row("trial_0011", 2_900_000, 0.94),
                      _done_row("trial_0012", 9_000, 0.1)]
    document, labels = _plot(tmp_path, rows)
    assert sorted(text for text, _ in labels) == sorted(document["pareto"])  # every front trial labelled
    for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
        assert not _overlap(box_a, box_b), (a, b)


def test_many_equal_trials_name_a_few_and_count_the_rest():
    from incdsl.search.pareto import point_labels
    names = [f"trial_{i}" for i in range(6)]
    assert point_labels([(1, 0.5)] * 6, names) == [((1, 0.5), "trial_0, trial_1, +4 more")]


def _exit_and_last_line(argv, capsys) -> tuple[int, str]:
    """The exit code of `incdsl ARGV` (argparse's own errors raise SystemExit, ours return) and
    the last line it wrote to stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.splitlines()[-1]


# --- sample: what it says about a small space ------------------------------------------------

ONE_POINT = "network one:\n    input 3x8x8\n    conv 3x3 choice(4) S\n    gap -> flatten -> linear 10\n"


def test_a_one_point_space_is_counted_in_the_singular_without_a_range(tmp_path, capsys):
    path = tmp_path / "one.inc"
    path.write_text(ONE_POINT)
    code = main(["sample", str(path), "-n", "1", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "wrote 1 sample of one" in out and "tried 1 point," in out
    assert "parameters 162, MACs 6,952" in out  # not "162 to 162"


def test_more_samples_than_the_space_has_names_the_most_it_can_give(small, tmp_path, capsys):
    code, err = _exit_and_last_line(["sample", small, "-n", "97", "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and err.endswith("cannot draw 97 distinct samples; ask for at most -n 96")
    assert not (tmp_path / "out").exists()


# --- search: options checked before Ray starts, --resume, the closing lines ------------------

@pytest.fixture
def no_ray(monkeypatch):
    """Fail fast, rather than start Ray and train, should a command get past its checks."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command went on to start Ray")
    monkeypatch.setattr("incdsl.search.experiment.start_ray", refuse)
    monkeypatch.setattr("incdsl.search.experiment.run_experiment", refuse)


def _search(tmp_path, *extra):
    return ["search", MINI_SPACE, "--data", "digits", "--trials", "2", "--budget-epochs", "1",
            "--out", str(tmp_path / "run"), *extra]


@pytest.mark.parametrize("option, value, said", [
    ("--cpus-per-trial", "nan", "expected a number from 0 to 4096, got 'nan'"),
    ("--cpus-per-trial", "inf", "expected a number from 0 to 4096, got 'inf'"),
    ("--cpus-per-trial", "0", "expected a number above 0"),
    ("--gpus-per-trial", "nan", "expected a number from 0 to 4096, got 'nan'"),
    ("--gpus-per-trial", "-1", "expected a number from 0 to 4096, got '-1'"),
    ("--max-failures", "-1", "expected a retry count from 0 to 1,000, got '-1'"),  # Ray: -1 retries for ever
    ("--synthetic-size", "100000000000", "expected an image count from 1 to 10,000,000"),
])
def test_trial_resources_out_of_range_are_usage_errors(tmp_path, capsys, no_ray, option, value, said):
    code, err = _exit_and_last_line(_search(tmp_path, f"{option}={value}"), capsys)
    assert code == 2 and err.startswith(f"incdsl: error: argument {option}: ") and said in err
    assert not (tmp_path / "run").exists()  # nan once crashed (exit 70) after experiment.json was written


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """A saved experiment (settings only); Ray is not needed to refuse a resume."""
    from incdsl.commands import search
    from incdsl.search.experiment import Settings, save_settings
    monkeypatch.setattr(search, "missing_extra", lambda: None)
    out = tmp_path / "run"
    out.mkdir()
    save_settings(Settings(spec=MINI_SPACE, data="digits", out=str(out), trials=2, budget_epochs=1,
                           max_macs=50_000_000))
    return str(out)


@pytest.mark.parametrize("extra, named", [
    (["--trials", "4"], "--trials cannot change"),
    (["--budget-epochs", "3", "--algorithm", "evolution"], "--budget-epochs and --algorithm cannot change"),
    (["--max-macs", "1G"], "--max-macs cannot change"),
    (["--seed", "7"], "--seed cannot change"),
])
def test_resume_refuses_options_it_would_ignore(experiment, capsys, no_ray, extra, named):
    code, err = _exit_and_last_line(["search", "--resume", experiment, *extra], capsys)
    assert code == 2 and err.startswith(f"incdsl: error: {named} when an experiment resumes")
    assert "start a new experiment with another --out" in err


def test_resume_accepts_the_experiments_own_values(experiment, monkeypatch, capsys):
    from incdsl.commands import search
    ran = []
    monkeypatch.setattr("incdsl.search.experiment.run_experiment",
                        lambda settings, resume: ran.append(settings) or {"trials": []})
    assert main(["search", MINI_SPACE, "--resume", experiment, "--trials", "2", "--max-macs", "50M",
                 "--data", "digits", "--address", "auto"]) == 0
    assert ran[0].trials == 2 and ran[0].address == "auto"  # the cluster may move


def test_resume_and_out_naming_two_folders_is_a_usage_error(experiment, tmp_path, capsys, no_ray):
    code, err = _exit_and_last_line(["search", "--resume", experiment, "--out", str(tmp_path / "other")], capsys)
    assert code == 2 and err.endswith("name two folders; give one")


def test_no_point_within_budget_names_the_budget_to_raise(tmp_path, monkeypatch, capsys, no_ray):
    from incdsl.commands import search
    monkeypatch.setattr(search, "missing_extra", lambda: None)
    assert main(_search(tmp_path, "--max-macs", "1K")) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("incdsl: error: no point of ")
    assert "within --max-macs found" in err and err.endswith("(raise --max-macs to admit it)")
    assert not (tmp_path / "run").exists()


def test_closing_lines_count_in_the_singular():
    from incdsl.search.experiment import closing_lines
    rows = [{"status": "done"}]
    lines = closing_lines(rows, 3, {"duplicate": 2000, "invalid": 0}, True, 7.2, "out")
    assert lines == ["note: the algorithm found only 1 distinct candidate within the budget",
                     "proposals not trained: 2,000 duplicate",
                     f"1 trial in 7 s; results in {os.path.join('out', 'trials.csv')}, trials.json, "
                     "pareto.png and pareto.svg"]


def test_progress_does_not_count_trials_an_interrupt_terminated_as_done():
    pytest.importorskip("ray.tune")
    import io

    from incdsl.search.tune import Progress

    def trial(status, result):
        return types.SimpleNamespace(status=status, last_result=result, config={"trial": "t", "macs": 1})
    stream = io.StringIO()
    Progress(4, "macs", stream=stream).report([
        trial("TERMINATED", {"done": True, "val_top1": 0.5}),  # trained to its end
        trial("ERROR", {}),                                      # failed: ended too
        trial("TERMINATED", {"done": False, "val_top1": 0.4}),  # cut short by Ctrl-C
        trial("TERMINATED", {}),                                 # stopped before its first epoch
    ])
    assert "2/4 done, 0 running, 2 pending" in stream.getvalue()


# --- search: Ctrl-C before or between trials -------------------------------------------------

def test_an_interrupt_before_any_trial_is_an_interrupt_not_a_used_up_space(capsys):
    from incdsl.commands import search
    from incdsl.search.experiment import closing_lines, was_interrupted
    done = [{"status": "done"}]
    assert was_interrupted([], 3, exhausted=False)            # Ctrl-C before the first trial started
    assert was_interrupted(done, 3, exhausted=False)          # ... or between trials
    assert not was_interrupted(done, 3, exhausted=True)       # the space had one network
    assert not was_interrupted(done * 3, 3, exhausted=False)  # all trials ran
    assert was_interrupted([{"status": "unfinished"}], 1, exhausted=False)
    lines = closing_lines([], 3, {}, False, 2.0, "out", interrupted=True)
    assert not any("found only" in line for line in lines)  # it said "found only 0 distinct candidates"
    document = {"experiment": {"interrupted": True}, "trials": []}
    assert search._finished(document, "out") == 130  # it exited 0
    assert capsys.readouterr().err == "incdsl: interrupted; continue with: incdsl search --resume out\n"


def test_the_saved_searcher_state_says_whether_the_space_was_used_up(tmp_path):
    pytest.importorskip("ray.tune")
    from incdsl.search import tune as search_tune
    from incdsl.search.candidates import Vetter
    from incdsl.search.proposers import RandomProposer
    path = tmp_path / "one.inc"
    path.write_text(ONE_POINT)
    vetter = Vetter(str(path))
    searcher = search_tune.SpaceSearcher(vetter, RandomProposer(vetter.sizes(), seed=0))
    searcher.suggest("t1")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    searcher.save_to_dir(str(tmp_path / "a"), session_str="s")
    assert search_tune.saved_searcher_state(str(tmp_path / "a"))["exhausted"] is False
    assert searcher.suggest("t2") is search_tune.Searcher.FINISHED
    searcher.save_to_dir(str(tmp_path / "b"), session_str="s")
    assert search_tune.saved_searcher_state(str(tmp_path / "b"))["exhausted"] is True
    assert search_tune.saved_searcher_state(str(tmp_path / "none")) is None


@pytest.mark.parametrize("extra, said", [
    (["-n", "1000000000"], "-n 1,000,000,000 is more than one run writes (at most 10,000)"),
    (["-n", "10", "--max-tries", "10000000000"], "--max-tries 10,000,000,000 is more than one run costs"),
])
def test_sample_bounds_one_runs_time_and_memory(tmp_path, capsys, monkeypatch, extra, said):
    # a space of 2.26e13 points admits a billion samples: drawing them ran for days
    def refuse(*args, **kwargs):
        raise AssertionError("the command went on to draw")
    monkeypatch.setattr("incdsl.search.sampling.draw_random", refuse)
    space = os.path.join(ROOT, "specs", "search", "inception_space.inc")
    code, err = _exit_and_last_line(["sample", space, *extra, "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith(f"incdsl: error: {said}")
    assert not (tmp_path / "out").exists()


def test_placed_labels_never_overlap_and_stay_inside():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from incdsl.search.pareto import place_labels
    bounds = (0.0, 0.0, 300.0, 200.0)
    legend = (220.0, 0.0, 300.0, 30.0)
    point = st.tuples(st.floats(0, 300), st.floats(0, 200))
    size = st.tuples(st.floats(10, 80), st.just(7.0))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(point, size), max_size=30))
    def check(labels):
        anchors = [a for a, _ in labels]
        sizes = [s for _, s in labels]
        markers = [(x - 3, y - 3, x + 3, y + 3) for x, y in anchors]
        offsets = place_labels(anchors, sizes, markers + [legend], bounds)
        boxes = [(x + o[0], y + o[1], x + o[0] + w, y + o[1] + h)
                 for (x, y), (w, h), o in zip(anchors, sizes, offsets) if o is not None]
        for i, a in enumerate(boxes):
            assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3]
            assert not any(_overlap(a, b) for b in boxes[i + 1:] + markers + [legend])
    check()
    # a lone point keeps its label at the lower right; one by the right edge goes to the left
    assert place_labels([(150.0, 100.0)], [(40.0, 7.0)], [], bounds) == [(4.0, -11.0)]
    assert place_labels([(290.0, 100.0)], [(40.0, 7.0)], [], bounds) == [(-44.0, -11.0)]


def test_check_of_a_one_choice_space_says_choice(tmp_path, capsys):
    path = tmp_path / "one.inc"
    path.write_text(ONE_POINT)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith("one: a search space of 1 point, 1 choice\n")


def test_a_fresh_search_into_a_used_folder_says_what_to_do(tmp_path, capsys, no_ray):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine\n")
    code, err = _exit_and_last_line(_search(tmp_path), capsys)
    assert code == 2 and err.endswith("exists and is not an empty folder; choose a new or empty one")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine\n"


def test_a_budget_below_the_cheapest_point_suggests_only_raising_it(tmp_path, capsys):
    # asking for fewer samples or more tries cannot help when no point fits at all
    assert main(["sample", MINI_SPACE, "-n", "3", "--max-macs", "1K", "-o", str(tmp_path / "s")]) == 3
    err = capsys.readouterr().err
    assert "admits only 0 of the 3" in err and "the fewest MACs found: 4,293,568" in err
    assert err.rstrip().endswith("= hint: raise the budget to at least the fewest found")
    assert not (tmp_path / "s").exists()


def test_progress_names_the_cheaper_of_two_equally_accurate_trials():
    pytest.importorskip("ray.tune")
    import io

    from incdsl.search.tune import Progress

    def trial(name, macs):
        return types.SimpleNamespace(status="TERMINATED", last_result={"done": True, "val_top1": 0.1875},
                                     config={"trial": name, "macs": macs})
    stream = io.StringIO()
    Progress(2, "macs", stream=stream).report([trial("trial_0003", 7_308_864), trial("trial_0004", 4_566_112)])
    assert stream.getvalue().rstrip().endswith("best 18.75% (trial_0004, 4,566,112 MACs)")
