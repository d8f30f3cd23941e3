"""`incdsl eval`: a checkpoint's top-1/top-5 and confusion matrix, as text and JSON."""
from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from incdsl.cli import main  # noqa: E402
from incdsl.commands.eval import confusion_table, top_confusions  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from speclib import FRACTAL_BLOCK  # noqa: E402

TINY = os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc")


def run(capsys, command, *argv):
    code = main([command, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished two-epoch run on synthetic data, with a weight average."""
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", TINY, "--data", "synthetic", "--synthetic-size", "40", "--batch-size", "8", "--epochs", "2",
                 "--ema-decay", "0.5", "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_json_report_matches_the_last_epoch(capsys, trained):
    code, stdout, err = run(capsys, "eval", "--checkpoint", trained, "--format", "json", "--device", "cpu")
    assert code == 0, err
    report = json.loads(stdout)
    last = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    assert report["images"] == 10 and report["weights"] == "averaged" and report["epoch"] == 2
    assert report["top1"] == pytest.approx(last["val_top1"]) and report["top5"] == pytest.approx(last["val_top5"])
    assert report["loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    matrix = report["confusion"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == 10
    assert sum(matrix[i][i] for i in range(10)) / 10 == pytest.approx(report["top1"])
    assert [sum(row) for row in matrix] == [1] * 10  # synthetic labels cycle through the classes


def test_text_report_with_spec_and_raw_weights(capsys, trained):
    threads = torch.get_num_threads()
    asked = 1 if threads != 1 else 2
    code, stdout, err = run(capsys, "eval", TINY, "--checkpoint", trained / "final.pt", "--data", "synthetic",
                            "--raw", "--threads", asked)
    assert code == 0, err
    assert torch.get_num_threads() == threads  # --threads holds for the run, not for its caller
    lines = stdout.splitlines()
    assert "(epoch 2, trained weights) on synthetic: 40 training and 10 validation images" in lines[0]
    assert lines[1].startswith("10 images  loss ") and "top-1" in lines[1] and "top-5" in lines[1]
    assert "confusion matrix (rows: true class, columns: predicted; last column: recall)" in stdout
    assert lines[-1].startswith("9 ")


def test_eval_of_a_five_class_run_has_no_top5(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", TINY, "--data", "synthetic", "--synthetic-size", "20", "--batch-size", "5", "--epochs",
                 "1", "--classes", "3", "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    code, stdout, _ = run(capsys, "eval", "--checkpoint", out, "--format", "json")
    assert code == 0 and json.loads(stdout)["top5"] is None
    code, stdout, _ = run(capsys, "eval", "--checkpoint", out)
    assert code == 0 and "top-5" not in stdout


@pytest.mark.parametrize("argv, message, exit", [
    (["--checkpoint", "nowhere"], "no checkpoint at nowhere", 1),
    (["--checkpoint", "RUN", "--input", "1x20x20", "--set", "classes=4"], "does not fit this network", 1),
    (["--checkpoint", "RUN", "--data", "digits", "--set", "classes=4"], "does not fit", 1),
    (["--checkpoint", "RUN", "--batch-size", "0"], "argument --batch-size", 2),
])
def test_eval_errors(capsys, trained, argv, message, exit):
    argv = [str(trained) if a == "RUN" else a for a in argv]
    try:
        code, _, err = run(capsys, "eval", *argv)
    except SystemExit as stop:
        code, err = stop.code, capsys.readouterr().err
    assert code == exit
    assert message in err and "Traceback" not in err


def test_a_damaged_checkpoint_is_refused(capsys, tmp_path, trained):
    state = ckpt.load(str(trained / "final.pt"))
    state["model"]["linear_0.bias"] += 1
    ckpt.save(str(tmp_path / "bad.pt"), state)
    code, _, err = run(capsys, "eval", "--checkpoint", tmp_path / "bad.pt")
    assert code == 1 and "do not match their stored SHA-256" in err


def test_confusion_renderings():
    table = confusion_table(["cat", "dog"], [[3, 1], [0, 4]])
    assert table[0].split() == ["cat", "dog", "recall"]
    assert table[1].split() == ["cat", "3", "1", "75.0%"] and table[2].split() == ["dog", "0", "4", "100.0%"]
    assert top_confusions(["a", "b", "c"], [[5, 2, 0], [0, 5, 7], [1, 0, 5]]) == ["  b -> c: 7", "  a -> b: 2",
                                                                                 "  c -> a: 1"]


# --- --column: FractalNet's single-column subnetworks ---------------------------------------

FRACTAL = """\
network fractal_run(classes = 4):
    input 3x8x8
    with conv(bn = 1e-5, act = relu, bias = no, pad = 1), mean(drop_path = 0.15, global_path = 0.5):
        fractal(3, 4) -> maxpool 2x2 /2
    gap -> flatten -> linear classes
""" + FRACTAL_BLOCK


@pytest.fixture(scope="module")
def fractal_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fractal")
    spec = root / "fractal.inc"
    spec.write_text(FRACTAL)
    assert main(["train", str(spec), "--data", "synthetic", "--synthetic-size", "32", "--batch-size", "8",
                 "--epochs", "1", "--device", "cpu", "--threads", "1", "--out", str(root / "run")]) == 0
    return root / "run"


def test_eval_column_scores_that_column_alone(capsys, fractal_run):
    """Each column is its own subnetwork: the three losses differ from each other and from the whole
    network's; the report says which column it scored."""
    reports = {}
    for column in (None, 0, 1, 2):
        extra = [] if column is None else ["--column", column]
        code, stdout, err = run(capsys, "eval", "--checkpoint", fractal_run, "--format", "json", "--device", "cpu", *extra)
        assert code == 0, err
        reports[column] = json.loads(stdout)
        assert reports[column]["column"] == column
    assert len({r["loss"] for r in reports.values()}) == 4
    code, stdout, _ = run(capsys, "eval", "--checkpoint", fractal_run, "--device", "cpu", "--column", "0")
    assert code == 0 and "column 0 alone" in stdout.splitlines()[0]


@pytest.mark.parametrize("column, run_name, message", [
    ("3", "fractal", "0..2"),
    ("0", "tiny", "global_path"),
])
def test_eval_column_the_network_lacks_is_a_usage_error(capsys, fractal_run, trained, column, run_name, message):
    path = fractal_run if run_name == "fractal" else trained
    code, _, err = run(capsys, "eval", "--checkpoint", path, "--device", "cpu", "--column", column)
    assert code == 2 and "--column:" in err and message in err and "Traceback" not in err


@pytest.mark.slow  # a real epoch of the README's example: about 6 s
def test_eval_gives_the_runs_own_validation_loss_to_the_last_bit(capsys, tmp_path):
    """Evaluated in the layout the run trained in (channels_last, the CPU default now), the
    checkpoint's loss is the one the run reported, not one a rounding away."""
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "mini_inception.inc")
    out = tmp_path / "run"
    assert main(["train", example, "--data", "digits", "--epochs", "1", "--device", "cpu", "--threads", "1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert ckpt.load(str(out / "final.pt"))["settings"]["channels_last"] is True
    code, stdout, err = run(capsys, "eval", "--checkpoint", out, "--format", "json", "--device", "cpu", "--threads", "1")
    assert code == 0, err
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert json.loads(stdout)["loss"] == last["val_loss"]
