"""`incdsl sample` and `incdsl check` on a space, through the CLI."""
import csv
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.cli import main
from incdsl.report.tables import parse_amount
from speclib import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCEPTION_SPACE = os.path.join(ROOT, "specs", "search", "inception_space.inc")

SPACE = """# a small space
include "lib/blocks.inc"

network small(classes = 10):
    input 3x32x32
    with conv(bn = 0.001):
        conv 3x3 choice(16, 24, 32) S as stem
        repeat choice(1, 2, 3): mixed(n = choice(8, 16))
        choice(mixed, wide)
    gap -> flatten -> linear classes
"""
LIB = """block mixed(n = 8):
    concat:
        branch: conv 1x1 n
        branch: conv 1x1 n -> conv 3x3 choice(8, 16) S
block wide:
    conv 1x1 64
"""
SIZE = 3 * 3 * 2 * 2 * 2


@pytest.fixture
def space(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.inc").write_text(LIB)
    path = tmp_path / "small.inc"
    path.write_text(SPACE)
    return str(path)


def read_index(out):
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    with open(os.path.join(out, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    return index, rows


def cost_of(path):
    total = incdsl.count_costs(incdsl.load(path)).total
    return total.params, total.macs


# --- incdsl sample

def test_samples_are_checked_specs_with_an_index(space, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "sample", space, "-n", 5, "--seed", 3, "-o", out)
    assert code == 0 and "wrote 5 samples" in stdout
    index, rows = read_index(out)
    assert sorted(os.listdir(out)) == ["index.csv", "index.json"] + [f"sample_000{k}.inc" for k in range(1, 6)]
    assert index["size"] == SIZE and index["seed"] == 3 and len(index["samples"]) == 5
    assert [r["file"] for r in rows] == [s["file"] for s in index["samples"]]
    points = set()
    for sample, row in zip(index["samples"], rows):
        path = out / sample["file"]
        assert cost_of(str(path)) == (sample["params"], sample["macs"]) == (int(row["params"]), int(row["macs"]))
        assert main(["check", str(path)]) == 0  # each sample passes `incdsl check` on its own
        assert "choice(" not in path.read_text().split("\n\n", 1)[1]  # past the header that lists the choices
        assert {c["name"]: row[c["name"]] for c in index["choices"]} == sample["choices"]
        points.add(tuple(sorted(sample["point"].items())))
    assert len(points) == 5  # no duplicates


def test_same_seed_same_samples(space, tmp_path, capsys):
    for name in ("a", "b"):
        assert run(capsys, "sample", space, "-n", 4, "--seed", 11, "-o", tmp_path / name)[0] == 0
    for file in os.listdir(tmp_path / "a"):
        assert (tmp_path / "a" / file).read_text() == (tmp_path / "b" / file).read_text()
    run(capsys, "sample", space, "-n", 4, "--seed", 12, "-o", tmp_path / "c")
    assert read_index(tmp_path / "c")[0]["samples"] != read_index(tmp_path / "a")[0]["samples"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), budget=st.sampled_from(["2.5K", "4K", "6K", "9K"]), n=st.integers(1, 6))
def test_samples_are_within_budget(space, tmp_path_factory, capsys, seed, budget, n):
    out = tmp_path_factory.mktemp("budget") / "out"
    code, _, err = run(capsys, "sample", space, "-n", n, "--seed", seed, "--max-params", budget, "-o", out)
    from incdsl.search import load_space
    small = load_space(space)
    admitted = sum(1 for p in small.grid() if small.cost(p).params <= parse_amount(budget))
    if admitted < n:  # the budget admits fewer than n points: then say how small a point gets
        assert code == 3 and "admits only" in err and "the fewest parameters found: 2,394" in err
        assert not out.exists()
        return
    assert code == 0
    for sample in read_index(out)[0]["samples"]:
        assert sample["params"] <= parse_amount(budget)
        assert cost_of(str(out / sample["file"]))[0] == sample["params"]


def test_a_budget_that_admits_nothing_is_a_clear_error(space, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "sample", space, "-n", 2, "--max-macs", "1K", "-o", out)
    assert code == 3
    assert "the budget (MACs 1,000) admits only 0 of the 2 samples" in err
    smallest = int(err.split("the fewest MACs found: ")[1].split()[0].replace(",", ""))
    # the smallest point of this space: every choice at its smallest option
    grid = tmp_path / "grid"
    run(capsys, "sample", space, "--strategy", "grid", "-o", grid)
    assert smallest == min(s["macs"] for s in read_index(grid)[0]["samples"])
    assert not out.exists()


def test_grid_enumerates_small_spaces(space, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, _ = run(capsys, "sample", space, "--strategy", "grid", "-o", out)
    index, rows = read_index(out)
    assert code == 0 and len(rows) == SIZE == index["tried"]
    assert len({tuple(sorted(s["point"].items())) for s in index["samples"]}) == SIZE
    code, _, err = run(capsys, "sample", INCEPTION_SPACE, "--strategy", "grid", "-o", tmp_path / "big")
    assert code == 2 and "grid enumerates at most" in err and not (tmp_path / "big").exists()


def test_output_directory_is_replaced_whole_or_left_alone(space, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "sample", space, "-n", 6, "-o", out)[0] == 0
    before = {f: (out / f).read_text() for f in os.listdir(out)}
    # a failing run leaves the earlier output as it was
    assert run(capsys, "sample", space, "-n", 3, "--max-params", "1", "-o", out)[0] == 3
    assert {f: (out / f).read_text() for f in os.listdir(out)} == before
    # a new run replaces it, stale samples included
    assert run(capsys, "sample", space, "-n", 2, "--seed", 5, "-o", out)[0] == 0
    assert sorted(os.listdir(out)) == ["index.csv", "index.json", "sample_0001.inc", "sample_0002.inc"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".incdsl")]
    # other files in the directory are left alone; one named like ours is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run(capsys, "sample", space, "-n", 1, "-o", other)[0] == 0
    assert sorted(os.listdir(other)) == ["index.csv", "index.json", "notes.txt", "sample_0001.inc"]
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "sample_0001.inc").write_text("mine")
    code, _, err = run(capsys, "sample", space, "-n", 1, "-o", clash)
    assert code == 1 and "which no earlier `incdsl sample` wrote" in err
    assert os.listdir(clash) == ["sample_0001.inc"] and (clash / "sample_0001.inc").read_text() == "mine"


def test_set_and_input_are_written_into_the_samples(space, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "sample", space, "-n", 3, "--set", "classes=7", "--input", "3x64x64", "-o", out)[0] == 0
    for sample in read_index(out)[0]["samples"]:
        net = incdsl.load(str(out / sample["file"]))
        assert net.output_shape == (7,) and net.input_shape == (3, 64, 64)
        assert cost_of(str(out / sample["file"])) == (sample["params"], sample["macs"])


@pytest.mark.parametrize("argv, message", [
    (["-n", "0"], "-n must be at least 1"),
    ([], "-n is required"),
    (["-n", "500"], "cannot draw 500 distinct samples"),
    (["-n", "1", "--max-macs", "lots"], "--max-macs"),
])
def test_bad_usage(space, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "sample", space, *argv, "-o", tmp_path / "out")
    assert code == 2 and message in err


def test_spec_errors_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.inc"
    bad.write_text("network t:\n    input 3x8x8\n    conv 1x1 choice(4, 4)\n")
    code, _, err = run(capsys, "sample", bad, "-n", 1, "-o", tmp_path / "out")
    assert code == 1 and "bad.inc:3:" in err and "listed twice" in err


# --- incdsl check on a space

def test_check_reports_the_size_and_checks_every_point_of_a_small_space(space, capsys):
    code, out, _ = run(capsys, "check", space)
    assert code == 0
    assert f"a search space of {SIZE} points, 5 choices" in out
    assert f"checked     all {SIZE} points: all valid" in out
    assert "lib/blocks.inc:4:" in out  # the shared choice inside the included block


def test_check_on_a_large_space_says_what_it_checked(capsys):
    code, out, _ = run(capsys, "check", INCEPTION_SPACE)
    assert code == 0
    assert "22,594,362,918,480 points (2.26e+13), 27 choices" in out
    assert "each option of every choice with the others at their first option (59)" in out
    assert "and 64 random points (seed 0): all valid" in out


def test_check_finds_an_invalid_point(tmp_path, capsys):
    path = tmp_path / "r.inc"
    path.write_text("network t:\n    input 3x8x8\n    residual:\n        conv 1x1 choice(3, 4, 5) act = off\n")
    code, out, err = run(capsys, "check", path)
    assert code == 1
    assert "checked     all 3 points: 2 invalid" in out
    assert "residual sum with mismatched shapes" in err and "at the point conv.1 = 4" in err


def test_plain_specs_are_checked_as_before(tmp_path, capsys):
    path = tmp_path / "t.inc"
    path.write_text("network t:\n    input 3x8x8\n    conv 1x1 4 as choice_a\n")  # a name is not a choice
    code, out, _ = run(capsys, "check", path)
    assert code == 0 and out.startswith("t: ok")


def test_check_and_sample_do_not_import_torch(space, tmp_path):
    probe = ("import sys\nfrom incdsl.cli import main\ncode = main(sys.argv[1:])\n"
             "print('HEAVY', *sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))\n"
             "sys.exit(code)\n")
    for argv in (["check", space], ["sample", space, "-n", "2", "-o", str(tmp_path / "o")]):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "HEAVY"


def test_one_sample_is_reported_in_the_singular(space, tmp_path, capsys):
    code, stdout, _ = run(capsys, "sample", space, "-n", 1, "--seed", 3, "-o", tmp_path / "one")
    assert code == 0 and "wrote 1 sample of" in stdout
