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
    code, stdout, err = run(capsys, "eval", TINY, "--checkpoint", trained / "final.pt", "--data", "synthetic",
                            "--raw", "--threads", 1)
    assert code == 0, err
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
