"""`incdsl train` and `incdsl eval` given what a demanding user gives them: a checkpoint of another
network, files that are no checkpoint, a data folder one level too deep, data of other classes,
empty arguments (an unset shell variable). Each is a one-line error with a hint, exit 1 or 2,
and leaves every file as it was.
"""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from incdsl.cli import main  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
TINY = os.path.join(ROOT, "tests", "data", "train_tiny.inc")   # network tiny(classes = 10), 1x16x16
MINI = os.path.join(ROOT, "examples", "mini_inception.inc")
QUICK = ["--device", "cpu", "--threads", "1", "--batch-size", "8", "--epochs", "1",
         "--data", "synthetic", "--synthetic-size", "16"]


def cli(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", TINY, *QUICK, "--out", str(out)]) == 0
    return out


def image_folder(root, classes):
    from PIL import Image
    for split in ("train", "val"):
        for name in classes:
            os.makedirs(root / split / name)
            for i in range(2):
                Image.new("RGB", (12, 12), (40 * i, 80, 120)).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_checkpoint_of_another_network_says_which_weights_differ(capsys, good_run, command):
    """Before: the only note was torch's first line, `Error(s) in loading state_dict for MiniInception:`."""
    before = (good_run / "last.pt").read_bytes()
    argv = (["train", MINI, "--resume", good_run, "--threads", "1"] if command == "train"
            else ["eval", MINI, "--checkpoint", good_run, "--threads", "1"])
    code, _, err = cli(capsys, *argv)
    assert code == 1 and err.startswith("incdsl: error: the checkpoint does not fit this network\n")
    assert " = note: the checkpoint holds network `tiny` (from train_tiny.inc), this is `mini_inception`" in err
    assert "of this network's weights are not in the checkpoint, e.g. `" in err
    assert "of the checkpoint's weights are not in this network, e.g. `" in err
    assert "`stem.conv.weight` has shape (8, 1, 3, 3) in the checkpoint, (32, 1, 3, 3) here" in err
    assert "Error(s) in loading" not in err and " = hint: " in err
    assert (good_run / "last.pt").read_bytes() == before


def test_another_class_count_names_the_layer(capsys, good_run):
    code, _, err = cli(capsys, "train", TINY, "--resume", good_run, "--threads", "1", "--set", "classes=5",
                       "--epochs", "2")
    assert code == 1 and "`linear_0.weight` has shape (10, 20) in the checkpoint, (5, 20) here" in err


@pytest.mark.parametrize("content, says, hint", [
    ('{"epoch": 1}\n', "cannot read checkpoint", "it is damaged, or not a last.pt or final.pt"),
    ({"conv.weight": torch.zeros(2)}, "is not an `incdsl train` checkpoint",
     "it holds weights alone: start a run from them with `incdsl train SPEC --weights FILE`"),
    ([1, 2], "is not an `incdsl train` checkpoint", "pass a last.pt or final.pt"),
], ids=["text", "state-dict", "list"])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_files_that_are_no_checkpoint(capsys, tmp_path, content, says, hint, command):
    """Before: a text file gave torch's `UnpicklingError: Weights only load failed. In PyTorch 2.6, ...`,
    a state dict no hint."""
    path = tmp_path / "x.pt"
    if isinstance(content, str):
        path.write_text(content)
    else:
        torch.save(content, path)
    argv = ["train", "--resume", path] if command == "train" else ["eval", "--checkpoint", path]
    code, _, err = cli(capsys, *argv, "--threads", "1")
    assert code == 1 and says in err and f" = hint: {hint}" in err
    assert "weights_only" not in err and len(err.splitlines()) == 2


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_data_folder_one_level_too_deep_is_pointed_up(capsys, tmp_path, split):
    root = image_folder(tmp_path / "flowers", ["a", "b"])
    code, _, err = cli(capsys, "train", TINY, *QUICK[:-4], "--data", root / split, "--out", tmp_path / "run")
    assert code == 1 and "has no `train` folder" in err
    assert f" = hint: pass the folder that holds `train` and `val`: --data {root}" in err
    assert not (tmp_path / "run").exists()


def test_eval_on_data_of_other_classes_says_what_the_checkpoint_wants(capsys, tmp_path, good_run):
    root = image_folder(tmp_path / "three", ["a", "b", "c"])
    code, _, err = cli(capsys, "eval", "--checkpoint", good_run, "--data", root, "--threads", "1")
    assert code == 1 and "the network gives 10 outputs, but the data has 3 classes" in err
    assert " = hint: evaluate on data of the checkpoint's 10 classes (it was trained on synthetic: leave out --data)" \
        in err


@pytest.mark.parametrize("argv, says", [
    (["train", TINY, "--data", "synthetic", "--out", ""], "--out is empty"),
    (["train", TINY, "--data", "", "--out", "x"], "--data is empty"),
    (["eval", "--checkpoint", ""], "--checkpoint is empty"),
    (["eval", "--checkpoint", "run", "--data", " "], "--data is empty"),
    (["train", TINY, "--data", "synthetic", "--set", "classes="], "--set classes=: no value after `=`"),
    (["check", TINY, "--set", "classes= "], "--set classes= : no value after `=`"),
], ids=["out", "data", "checkpoint", "eval-data", "set", "set-blank"])
def test_empty_arguments_are_usage_errors(capsys, tmp_path, monkeypatch, argv, says):
    """An unset shell variable (`--out "$OUT"`) was the default folder, or the run's data, silently."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.rstrip().endswith(f"incdsl: error: {says}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("weights, says", [
    ("missing.pt", "no weights file missing.pt"),
    ("junk.pt", "cannot read weights junk.pt: it is no file torch.save wrote"),
], ids=["missing", "junk"])
def test_bad_weights_files_are_said_before_the_data_open_and_leave_no_folder(capsys, tmp_path, monkeypatch,
                                                                              weights, says):
    """Before: the data were opened, the run's first line printed and an empty --out folder left."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.pt").write_text("not weights")
    code, out, err = cli(capsys, "train", TINY, *QUICK, "--out", "run", "--weights", weights)
    assert code == 1 and err.startswith(f"incdsl: error: {says}\n") and " = hint: " in err
    assert out == "" and not (tmp_path / "run").exists()


def test_resuming_with_fewer_epochs_than_trained_says_so(capsys, tmp_path):
    out = tmp_path / "run"
    assert cli(capsys, "train", TINY, *QUICK[:-6], "--epochs", "2", *QUICK[-4:], "--out", out)[0] == 0
    code, stdout, _ = cli(capsys, "train", "--resume", out, "--epochs", "1", "--threads", "1")
    assert code == 0 and "tiny: nothing to do: 2 epochs already trained, more than the 1 asked for (--epochs)" in stdout


def test_a_new_run_does_not_overwrite_an_earlier_one(capsys, tmp_path, good_run):
    """Before: a second `incdsl train` into the same --out (the default runs/NETWORK included)
    replaced the first run's last.pt and final.pt."""
    before = {name: (good_run / name).read_bytes() for name in ("last.pt", "final.pt", "metrics.jsonl")}
    code, out, err = cli(capsys, "train", TINY, *QUICK, "--out", good_run, "--seed", "5")
    assert code == 1 and out == ""
    assert err.startswith(f"incdsl: error: {good_run} already holds a run (last.pt and final.pt): this one "
                          "would overwrite it\n")
    assert f"continue it with `incdsl train --resume {good_run}`, pass another --out" in err
    assert {name: (good_run / name).read_bytes() for name in before} == before


def test_a_run_resumed_into_another_runs_folder_does_not_overwrite_it(capsys, tmp_path, good_run):
    other = tmp_path / "other"
    assert cli(capsys, "train", TINY, *QUICK, "--out", other, "--seed", "3")[0] == 0
    before = {name: (good_run / name).read_bytes() for name in ("last.pt", "final.pt")}
    code, _, err = cli(capsys, "train", "--resume", other, "--out", good_run, "--epochs", "2", "--threads", "1")
    assert code == 1 and f"{good_run} already holds a run (last.pt and final.pt)" in err
    assert {name: (good_run / name).read_bytes() for name in before} == before
    # in its own folder, from its last.pt or its final.pt, a run replaces its checkpoints by design
    assert cli(capsys, "train", "--resume", other / "final.pt", "--epochs", "2", "--threads", "1")[0] == 0


def test_resuming_on_data_of_other_classes_does_not_suggest_a_dead_end(capsys, tmp_path, good_run):
    """Before: `pass --classes 3`, which then failed: the checkpoint's classifier has 10 outputs."""
    root = image_folder(tmp_path / "three", ["a", "b", "c"])
    code, _, err = cli(capsys, "train", "--resume", good_run, "--data", root, "--threads", "1", "--epochs", "2")
    assert code == 1 and "the network gives 10 outputs, but the data has 3 classes" in err
    assert "pass --classes" not in err
    assert (f" = hint: resume on data of the run's 10 classes (leave out --data for its own), or fine-tune its "
            f"weights in a new run: `incdsl train SPEC --data {root} --weights {good_run / 'last.pt'} --classes 3 "
            "--out NEW`") in err


def test_a_run_whose_data_folder_is_gone_says_so(capsys, tmp_path):
    """Before: `no such data folder: /abs/path` with the hint for a first --data, not naming the checkpoint."""
    import shutil
    root = image_folder(tmp_path / "pets", ["cat", "dog"])
    out = tmp_path / "run"
    assert cli(capsys, "train", TINY, "--data", root, "--classes", "2", "--batch-size", "2", "--epochs", "2",
               "--stop-after", "1", "--device", "cpu", "--threads", "1", "--out", out)[0] == 0
    shutil.rmtree(root)
    for argv in (["train", "--resume", out], ["eval", "--checkpoint", out]):
        code, _, err = cli(capsys, *argv, "--threads", "1")
        assert code == 1 and err == (f"incdsl: error: the run's data folder {root} (named in the checkpoint) is "
                                     "gone\n = hint: pass --data DIR: a folder of the same classes\n")


def test_classes_for_a_network_without_a_classifier_has_a_hint(capsys, tmp_path):
    spec = tmp_path / "feat.inc"
    spec.write_text("network feat:\n    input 1x8x8\n    conv 3x3 4 S\n")
    code, _, err = cli(capsys, "train", spec, *QUICK, "--classes", "3", "--out", tmp_path / "run")
    assert code == 1 and "cannot replace the classifier" in err
    assert " = hint: end the network in a `linear` classifier, or leave out --classes" in err


def test_a_damaged_checkpoint_field_has_a_hint(capsys, tmp_path, good_run):
    state = torch.load(good_run / "last.pt", weights_only=True)
    state["history"] = state["history"] * 2
    torch.save(state, tmp_path / "x.pt")
    code, _, err = cli(capsys, "eval", "--checkpoint", tmp_path / "x.pt", "--threads", "1")
    assert code == 1 and "is damaged: epoch 1 but 2 epoch records" in err
    assert " = hint: it changed after `incdsl train` wrote it; resume from another copy" in err


def test_synthetic_size_for_other_data_is_said_to_be_ignored(capsys, tmp_path):
    root = image_folder(tmp_path / "pets", ["cat", "dog"])
    code, _, err = cli(capsys, "train", TINY, *QUICK[:-4], "--data", root, "--classes", "2", "--batch-size", "2",
                       "--synthetic-size", "64", "--out", tmp_path / "run")
    assert code == 0 and f"incdsl: warning: --synthetic-size sizes --data synthetic only; ignored for --data {root}" \
        in err
