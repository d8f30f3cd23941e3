"""Search fixes: the search's own count of proposals not trained (not the last trial's
snapshot), every one of equal undominated trials on the Pareto front, and `incdsl check`'s
cost ranges of a space saying which points they cover."""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from incdsl.cli import main
from incdsl.search.pareto import pareto_front
from incdsl.search.results import mark_front, write_results
from incdsl.search.space import load_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI_SPACE = os.path.join(ROOT, "examples", "mini_space.inc")

TWO_NETWORKS = """\
network two(classes = 10):
    input 1x8x8
    conv 3x3 choice(4, 8) S
    gap -> flatten -> linear classes
"""


# --- B: skipped proposals over the whole search -----------------------------------------------

def test_the_skipped_proposals_are_the_searchers_own_count_not_the_last_trials_snapshot(tmp_path):
    """A space of two networks asked for three trials: the searcher hands out both, then tries
    MAX_PROPOSALS duplicates before it gives up. The last trial's config was taken before
    those, so it reported (nearly) none of them."""
    pytest.importorskip("ray.tune")
    from incdsl.search import tune as search_tune
    from incdsl.search.candidates import Vetter
    from incdsl.search.experiment import skipped_proposals
    from incdsl.search.proposers import RandomProposer

    spec = tmp_path / "two.inc"
    spec.write_text(TWO_NETWORKS)
    vetter = Vetter(str(spec))
    searcher = search_tune.SpaceSearcher(vetter, RandomProposer(vetter.sizes(), seed=0))
    configs = [searcher.suggest("t1"), searcher.suggest("t2")]
    assert searcher.suggest("t3") is search_tune.Searcher.FINISHED
    searcher.save_to_dir(str(tmp_path), session_str="s")  # as Tune does at the end of the experiment
    records = [{"trial": c["trial"], "config": c} for c in configs]

    total = vetter.counts["duplicate"]
    assert total >= search_tune.MAX_PROPOSALS
    assert configs[-1]["skipped"]["duplicate"] < total  # what was reported
    saved = search_tune.saved_skips(str(tmp_path))
    assert skipped_proposals(saved, records) == vetter.counts == saved
    assert search_tune.saved_skips(str(tmp_path / "nothing")) is None


def test_without_the_searchers_state_the_largest_snapshot_counts():
    from incdsl.search.experiment import skipped_proposals

    def record(trial, duplicate, invalid):
        return {"trial": trial, "config": {"skipped": {"duplicate": duplicate, "over budget": 0, "invalid": invalid}}}
    # trial_10000 sorts before trial_9999: the last record is not the latest snapshot
    records = [record("trial_10000", 7, 3), record("trial_9999", 5, 3)]
    assert skipped_proposals(None, records) == {"duplicate": 7, "over budget": 0, "invalid": 3}
    assert skipped_proposals(None, []) == {}


@pytest.mark.slow
def test_an_experiment_reports_the_proposals_skipped_after_its_last_trial(tmp_path):
    pytest.importorskip("ray.tune")
    from incdsl.search.tune import MAX_PROPOSALS
    spec = tmp_path / "two.inc"
    spec.write_text(TWO_NETWORKS)
    out = tmp_path / "exp"
    run = subprocess.run([sys.executable, "-m", "incdsl", "search", str(spec), "--data", "synthetic",
                          "--synthetic-size", "64", "--batch-size", "16", "--budget-epochs", "1", "--trials", "3",
                          "--cpus-per-trial", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": ROOT, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"})
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads((out / "trials.json").read_text())
    assert len(document["trials"]) == 2
    skipped = document["experiment"]["skipped_proposals"]
    assert skipped["duplicate"] >= MAX_PROPOSALS
    assert f"proposals not trained: {skipped['duplicate']:,} duplicate" in run.stdout


# --- C: equal points on the Pareto front ------------------------------------------------------

def _dominates(a, b) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and a != b


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_the_front_is_exactly_the_undominated_points_equal_ones_included(points):
    front = pareto_front(points)
    assert sorted(front) == [i for i, p in enumerate(points) if not any(_dominates(q, p) for q in points)]
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)  # cheapest first


def test_two_trials_of_equal_cost_and_accuracy_are_both_marked(tmp_path):
    def row(trial, macs, accuracy):
        return {"trial": trial, "status": "done", "accuracy": accuracy, "best_accuracy": accuracy, "epochs": 1,
                "params": 1, "macs": macs, "train_seconds": 0.0, "pareto": False, "spec": "", "key": trial,
                "error": "", "choices": {}}
    rows = [row("trial_0001", 10, 0.5), row("trial_0002", 20, 0.9), row("trial_0003", 10, 0.5),
            row("trial_0004", 20, 0.9), row("trial_0005", 20, 0.8)]
    assert mark_front([dict(r) for r in rows], "macs") == [0, 2, 1, 3]
    document = write_results(str(tmp_path), rows, {}, {"budget_epochs": 1}, "macs", plot=False)
    assert document["pareto"] == ["trial_0001", "trial_0003", "trial_0002", "trial_0004"]
    assert [r["pareto"] for r in rows] == [True, True, True, True, False]


# --- D: the cost ranges `incdsl check` prints for a space -------------------------------------

RANGE = re.compile(r"^  (parameters|MACs) +([\d,]+) to ([\d,]+)(.*)$", re.MULTILINE)


def check_ranges(path) -> dict:
    """{"parameters" | "MACs": (low, high, what follows)} of `incdsl check PATH`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", str(path)]) == 0
    found = RANGE.findall(out.getvalue())
    return {name: (int(lo.replace(",", "")), int(hi.replace(",", "")), rest) for name, lo, hi, rest in found}


def true_ranges(path) -> dict:
    space = load_space(str(path))
    costs = [space.cost(p) for p in itertools.product(*(range(len(c.options)) for c in space.choices))]
    return {"parameters": (min(c.params for c in costs), max(c.params for c in costs), ""),
            "MACs": (min(c.macs for c in costs), max(c.macs for c in costs), "")}


@settings(max_examples=12, deadline=None)
@given(st.lists(st.lists(st.integers(1, 24), min_size=2, max_size=5, unique=True), min_size=1, max_size=5))
@example([[4, 8], [3, 5, 7]])  # 6 points: all costed
@example([[1, 2, 3, 4, 5]] * 4)  # 625 points: some costed
def test_check_prints_the_spaces_ranges_or_says_they_are_the_checked_points(tmp_path_factory, widths):
    """Every point costed: the ranges are the space's own (checked by brute force). Otherwise
    they are labelled as the checked points'."""
    path = tmp_path_factory.mktemp("space") / "s.inc"
    convs = "".join(f"    conv 3x3 choice({', '.join(map(str, w))}) S\n" for w in widths)
    path.write_text(f"network s(classes = 10):\n    input 3x8x8\n{convs}    gap -> flatten -> linear classes\n")
    printed = check_ranges(path)
    size = 1
    for w in widths:
        size *= len(w)
    if size <= 512:  # `incdsl check` costs every point of such a space
        assert printed == true_ranges(path)
    else:
        assert all(rest.startswith(" (of the ") and rest.endswith(" points checked, not the whole space)")
                   for *_, rest in printed.values()), printed


def test_mini_spaces_ranges_are_labelled_since_its_largest_point_is_not_checked():
    printed = check_ranges(MINI_SPACE)
    assert printed["parameters"][2] == printed["MACs"][2] == " (of the 76 points checked, not the whole space)"
    space = load_space(MINI_SPACE)
    largest = space.cost(tuple(len(c.options) - 1 for c in space.choices))  # mini_inception itself
    assert largest.params > printed["parameters"][1]  # why the label matters


def test_trials_sort_by_number_past_four_digits():
    from types import SimpleNamespace

    from incdsl.search.results import format_table, trial_order
    names = ["trial_10000", "trial_9999", "trial_0002", "trial_10001", "trial_0010"]
    assert sorted(names, key=trial_order) == ["trial_0002", "trial_0010", "trial_9999", "trial_10000", "trial_10001"]
    rows = [{"trial": n, "status": "done", "accuracy": 0.5, "params": 1, "macs": 1, "train_seconds": 1.0,
             "pareto": False} for n in names]
    listed = [line.split()[0] for line in format_table(rows, "macs").splitlines()[1:]]
    assert listed == sorted(names, key=trial_order)  # equal accuracy: in trial order
    tune = pytest.importorskip("incdsl.search.tune", exc_type=ImportError)  # needs Ray
    grid = [SimpleNamespace(config={"trial": n, "key": n}, metrics={}, error=None) for n in names]
    assert [r["trial"] for r in tune.trial_records(grid)] == sorted(names, key=trial_order)
