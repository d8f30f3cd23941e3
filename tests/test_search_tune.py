"""`incdsl search`: the Pareto front, candidate vetting, the proposers, the results files,
the command without the `search` extra, and (slow) experiments on a local Ray: a worker
killed mid-trial, a driver killed and resumed."""
from __future__ import annotations

import csv
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from incdsl.search.candidates import Vetter
from incdsl.search.pareto import pareto_front
from incdsl.search.proposers import EvolutionProposer, RandomProposer
from incdsl.search.results import median, trial_row, write_results
from incdsl.search.sampling import Budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = os.path.join(ROOT, "examples", "mini_space.inc")


def _dominates(a, b) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and a != b


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=30))
def test_pareto_front_is_exactly_the_undominated_points(points):
    front = pareto_front(points)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
    for i, p in enumerate(points):
        dominated = any(_dominates(q, p) for q in points)
        if i in front:
            assert not dominated
        elif not dominated:  # an equal point earlier in the list stands for it
            assert any(points[j] == p for j in front)


def test_vetter_starts_a_network_once_and_nothing_over_budget():
    vetter = Vetter(SPACE)
    first = tuple(0 for _ in vetter.sizes())
    verdict = vetter.vet(first)
    assert verdict.kind == "new" and verdict.candidate.params > 0
    assert "choice(" not in verdict.candidate.spec
    assert vetter.vet(first).kind == "duplicate"
    assert vetter.known(verdict.key) is None  # still running
    vetter.finish(verdict.key, {"val_top1": 0.5})
    assert vetter.known(vetter.vet(first).key) == {"val_top1": 0.5}

    smallest = verdict.candidate.macs
    tight = Vetter(SPACE, budget=Budget(max_macs=smallest))
    largest = tuple(n - 1 for n in tight.sizes())
    assert tight.vet(largest).kind == "over budget"
    assert tight.vet(first).kind == "new"
    assert tight.counts == {"duplicate": 0, "over budget": 1, "invalid": 0}


TWO_WAYS = """network n(classes = 10):
    input 1x8x8
    choice(wide, plain)
    gap -> flatten -> linear classes

block wide:
    conv 3x3 choice(8, 16) S

block plain:
    conv 3x3 4 S
"""


def test_points_that_build_the_same_network_are_one_candidate():
    vetter = Vetter(TWO_WAYS)  # with `plain` chosen, `wide`'s choice changes nothing
    assert vetter.sizes() == [2, 2]
    keys = {p: vetter.vet(p).key for p in [(0, 0), (0, 1), (1, 0)]}
    assert len(set(keys.values())) == 3
    assert vetter.vet((1, 1)).kind == "duplicate" and vetter.vet((1, 1)).key == keys[(1, 0)]


def test_searcher_finishes_when_the_space_is_used_up():
    pytest.importorskip("ray.tune")
    from incdsl.search.tune import SpaceSearcher
    vetter = Vetter(TWO_WAYS)
    searcher = SpaceSearcher(vetter, RandomProposer(vetter.sizes(), seed=0))
    suggestions = [searcher.suggest(f"t{i}") for i in range(4)]
    assert suggestions[3] == "FINISHED" and searcher.exhausted
    assert len({c["key"] for c in suggestions[:3]}) == 3


def test_evolution_mutates_the_best_of_a_sample_and_ages_out_the_oldest():
    sizes = [2, 3, 4, 5]
    evo = EvolutionProposer(sizes, seed=1, population=3, sample_size=3)
    members = [(0, 0, 0, 0), (1, 1, 1, 1), (1, 2, 3, 4)]
    for k, point in enumerate(members):
        assert evo.propose(f"t{k}") is not None  # random while the population fills
        evo.complete(f"t{k}", point, {"val_top1": 0.1 * (k + 1)})
    for k in range(20):
        child = evo.propose(f"c{k}")
        parent = evo.parents[f"c{k}"]
        assert parent in [m for m, _ in evo.population]
        assert sum(a != b for a, b in zip(child, parent)) == 1
        assert all(0 <= i < n for i, n in zip(child, sizes))
    evo.complete("c0", (0, 1, 2, 3), {"val_top1": 0.9})
    assert [m for m, _ in evo.population] == [(1, 1, 1, 1), (1, 2, 3, 4), (0, 1, 2, 3)]
    evo.discard("c1", (1, 0, 0, 0), None)  # over budget: no step
    assert len(evo.population) == 3 and evo.population[-1][0] == (0, 1, 2, 3)


def test_random_proposer_is_seeded():
    a, b = RandomProposer([3, 4, 5], seed=7), RandomProposer([3, 4, 5], seed=7)
    assert [a.propose(str(i)) for i in range(10)] == [b.propose(str(i)) for i in range(10)]


def test_searcher_hands_out_each_network_once_within_budget():
    pytest.importorskip("ray.tune")
    from incdsl.search.tune import SpaceSearcher
    vetter = Vetter(SPACE, budget=Budget(max_macs=6_000_000))
    searcher = SpaceSearcher(vetter, RandomProposer(vetter.sizes(), seed=0))
    configs = [searcher.suggest(f"t{i}") for i in range(40)]
    keys = [c["key"] for c in configs]
    assert len(set(keys)) == len(keys)
    assert all(c["macs"] <= 6_000_000 for c in configs)
    assert vetter.counts["over budget"] > 0  # the budget did reject points
    searcher.on_trial_complete("t0", {"val_top1": 0.7, "macs": configs[0]["macs"]})
    assert vetter.known(keys[0])["val_top1"] == 0.7


def test_a_failed_trial_is_reported_by_its_incdsl_message():
    pytest.importorskip("ray.tune")
    from incdsl.search.tune import TrialFailed, error_text
    wrapped = RuntimeError("ray::ImplicitFunc.train()\n  traceback lines")
    wrapped.__cause__ = TrialFailed("error: the network gives 10 outputs, but the data has 2 classes")
    assert error_text(wrapped) == "error: the network gives 10 outputs, but the data has 2 classes"
    assert error_text(ValueError("first\n\nlast line\n")) == "ValueError: last line"


def test_nsga2_searcher_learns_from_finished_and_rejected_points():
    pytest.importorskip("optuna")
    pytest.importorskip("ray.tune")
    from incdsl.search.proposers import make_proposer
    from incdsl.search.tune import SpaceSearcher
    vetter = Vetter(SPACE, budget=Budget(max_macs=7_000_000))
    searcher = SpaceSearcher(vetter, make_proposer("nsga2", vetter.sizes(), 0, "macs", population=4))
    keys = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        keys.append(config["key"])
        assert config["macs"] <= 7_000_000
        searcher.on_trial_complete(f"t{i}", {"val_top1": config["params"] / 1e5, "macs": config["macs"]})
    assert len(set(keys)) == 12
    study = searcher.proposer.search._ot_study
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") >= 12  # finished trials (and finished duplicates) are told
    assert "FAIL" in states  # over-budget proposals are told as failed


def test_results_table_front_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rng = random.Random(0)
    records = []
    for k in range(6):
        config = {"trial": f"trial_{k + 1:04d}", "key": f"k{k}", "params": 1000 + k, "macs": rng.randrange(10**6, 10**7),
                  "choices": {"width": str(k)}, "spec": f"network n{k}:\n    input 1x8x8\n"}
        metrics = {"epoch": 2 if k else 1, "val_top1": rng.random(), "train_seconds": 1.5}
        records.append({"trial": config["trial"], "config": config, "metrics": metrics, "error": None})
    records.append({"trial": "trial_0007", "config": {**records[0]["config"], "trial": "trial_0007"},
                    "metrics": None, "error": "RuntimeError: boom"})
    rows = [trial_row(r, budget_epochs=2) for r in records]
    assert [r["status"] for r in rows] == ["stopped early"] + ["done"] * 5 + ["error"]
    document = write_results(str(tmp_path), rows, {r["trial"]: r["config"]["spec"] for r in records},
                             {"budget_epochs": 2}, "macs")
    done = [r for r in rows if r["status"] == "done"]
    front = [r for r in done if r["pareto"]]
    assert document["pareto"] == [r["trial"] for r in sorted(front, key=lambda r: r["macs"])]
    for r in done:
        assert r["pareto"] == (not any((o["macs"], o["accuracy"]) != (r["macs"], r["accuracy"])
                                       and o["macs"] <= r["macs"] and o["accuracy"] >= r["accuracy"] for o in done))
    with open(tmp_path / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["trial"] for t in table] == [r["trial"] for r in rows] and table[0]["width"] == "0"
    assert json.loads((tmp_path / "trials.json").read_text())["trials"][6]["error"] == "RuntimeError: boom"
    assert (tmp_path / "specs" / "trial_0003.inc").read_text().startswith("network n2")
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "pareto.svg").read_text()
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5


def _python(code: str, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env or {**os.environ, "PYTHONPATH": ROOT})


WITHOUT_RAY = """
import sys
for name in ("ray", "ray.tune", "optuna"):
    sys.modules[name] = None   # `import ray` now fails, as when the extra is not installed
from incdsl.cli import main
code = main(sys.argv[1:])
assert not any(m.startswith(("ray.", "optuna.")) for m in sys.modules if sys.modules[m] is not None)
sys.exit(code)
"""


def test_without_the_extra_search_says_how_to_install_and_others_work(tmp_path):
    run = _python(WITHOUT_RAY, "search", SPACE, "--data", "digits", "--trials", "2", "--budget-epochs", "1",
                  "--out", str(tmp_path / "x"))
    assert run.returncode == 69, run.stderr
    assert "pip install 'incdsl[search]'" in run.stderr and "ray" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "x").exists()
    for args in (["check", SPACE], ["cost", os.path.join(ROOT, "examples", "mini_inception.inc")],
                 ["sample", SPACE, "-n", "2", "-o", str(tmp_path / "s")], ["search", "--help"]):
        run = _python(WITHOUT_RAY, *args)
        assert run.returncode == 0, (args, run.stderr)


def test_search_refuses_bad_usage_before_starting_ray(tmp_path, capsys):
    from incdsl.commands.search import missing_extra
    if missing_extra():
        pytest.skip("the search extra is not installed")
    from incdsl.cli import main
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "experiment.json").write_text("{}")
    common = ["--trials", "2", "--budget-epochs", "1"]
    assert main(["search", SPACE, "--data", "digits", *common, "--out", str(tmp_path / "busy")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert main(["search", SPACE, "--data", "digits", "--out", str(tmp_path / "o")]) == 2  # no --trials
    assert main(["search", SPACE, "--data", str(tmp_path / "none"), *common, "--out", str(tmp_path / "o")]) == 2
    plain = os.path.join(ROOT, "examples", "mini_inception.inc")
    assert main(["search", plain, "--data", "digits", *common, "--out", str(tmp_path / "o")]) == 2
    assert "nothing to search" in capsys.readouterr().err
    assert main(["search", SPACE, "--data", "digits", *common, "--max-macs", "1M", "--out", str(tmp_path / "o")]) == 3
    assert "cheapest point tried" in capsys.readouterr().err
    assert main(["search", SPACE, "--data", "digits", *common, "--recipe", "defualt", "--out", str(tmp_path / "o")]) == 2
    assert "`default`" in capsys.readouterr().err
    assert main(["search", SPACE, "--data", "digits", *common, "--amp", "fp16", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()  # nothing written, no Ray started


@pytest.mark.slow  # imports torchvision and scikit-learn: seconds on a busy machine
def test_search_checks_the_data_before_starting_ray(tmp_path, capsys):
    from incdsl.cli import main
    from incdsl.commands.search import missing_extra
    if missing_extra():
        pytest.skip("the search extra is not installed")
    common = ["--trials", "2", "--budget-epochs", "1"]
    imgs = tmp_path / "imgs"
    for split in ("train", "val"):
        for label in ("a", "b"):
            (imgs / split / label).mkdir(parents=True)
            (imgs / split / label / "0.pgm").write_bytes(b"P5 4 4 255\n" + bytes(16))
    assert main(["search", SPACE, "--data", str(imgs), *common, "--out", str(tmp_path / "o")]) == 1
    assert "pass --set classes=2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- slow: a local Ray ---------------------------------------------------------------------

def _search(out, *extra):
    return [sys.executable, "-m", "incdsl", "search", SPACE, "--data", "synthetic", "--synthetic-size", "256",
            "--batch-size", "32", "--cpus-per-trial", "1", "--out", str(out), *extra]


def _events(out) -> dict:
    """Per candidate key: the ledger's events (start, epoch, done) in order."""
    found = {}
    for path in glob.glob(os.path.join(out, "attempts", "*.log")):
        with open(path) as f:
            found[os.path.basename(path)[:-4]] = [json.loads(line) for line in f]
    return found


def _wait(predicate, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _env():
    return {**os.environ, "PYTHONPATH": ROOT, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_experiment_completes(tmp_path):
    out = tmp_path / "exp"
    proc = subprocess.Popen(_search(out, "--trials", "2", "--budget-epochs", "3", "--max-failures", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True, cwd=ROOT)
    try:
        # both trials run at once (two CPUs, one each); kill one's worker after its first epoch
        both = _wait(lambda: len(_events(out)) == 2 and any(
            any(e["event"] == "epoch" for e in ev) for ev in _events(out).values()), proc)
        assert both, proc.stdout.read() if proc.poll() is not None else "timed out"
        key, events = next((k, ev) for k, ev in _events(out).items() if any(e["event"] == "epoch" for e in ev))
        os.kill(events[0]["pid"], signal.SIGKILL)
        output, _ = proc.communicate(timeout=400)
    finally:
        _stop(proc)
    assert proc.returncode == 0, output
    events = _events(out)[key]
    starts = [e["pid"] for e in events if e["event"] == "start"]
    assert len(starts) == 2 and starts[0] != starts[1]  # retried in a new worker
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]  # resumed, not restarted
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["done", "done"]
    assert (out / "pareto.svg").exists() and (out / "pareto.png").exists()


@pytest.mark.slow
def test_an_interrupted_experiment_resumes_without_running_a_trial_twice(tmp_path):
    out = tmp_path / "exp"
    # enough trials that the experiment cannot end in the moments between the first trial's end
    # and the kill, on a fast machine too
    proc = subprocess.Popen(_search(out, "--trials", "8", "--budget-epochs", "1", "--algorithm", "evolution",
                                    "--population", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True, cwd=ROOT)
    try:
        finished = _wait(lambda: len(glob.glob(str(out / "attempts" / "*.done.json"))) >= 1, proc)
        assert finished, proc.stdout.read() if proc.poll() is not None else "timed out"
        time.sleep(1)  # let Tune record it (and, likely, start others)
    finally:
        _stop(proc)  # the driver and the local Ray it started, at once
    assert proc.returncode != 0 and not (out / "trials.json").exists()
    before = {k for k, ev in _events(out).items() if any(e["event"] == "done" for e in ev)}
    assert before

    resumed = subprocess.run([sys.executable, "-m", "incdsl", "search", "--resume", str(out)], capture_output=True,
                             text=True, env=_env(), timeout=600, cwd=ROOT, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    document = json.loads((out / "trials.json").read_text())
    trials = document["trials"]
    assert len(trials) == 8 and all(t["status"] == "done" for t in trials)
    assert set(document["experiment"]["skipped_proposals"]) == {"duplicate", "over budget", "invalid"}
    assert len({t["key"] for t in trials}) == 8
    events = _events(out)
    for key in before:  # finished before the kill: never started again
        assert [e["event"] for e in events[key]] == ["start", "epoch", "done"]
    for key, ev in events.items():  # every candidate trained each epoch once, and finished once
        assert [e["event"] for e in ev].count("done") == 1
        assert [e["epoch"] for e in ev if e["event"] == "epoch"] == [1]
