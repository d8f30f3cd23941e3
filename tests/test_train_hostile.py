"""`incdsl train` on hostile input: unreadable images, damaged checkpoints, bad numbers.

Each case must end in a one-line error (exit 1) or a usage error (exit 2), never a traceback
or exit 70. Runs use tests/data/train_tiny.inc on a few synthetic images.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
PIL = pytest.importorskip("PIL")

from incdsl.cli import main  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402

TINY = os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc")
QUICK = ["--device", "cpu", "--threads", "1", "--batch-size", "4", "--epochs", "1"]


def train(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def image_folder(root, classes=("cat", "dog"), per_class=4, size=(20, 24)):
    """A tiny ImageFolder of JPEGs (RGB noise, one shade per class)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((*size, 3), 40 + 150 * k, dtype=np.uint8) + rng.integers(0, 30, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture
def images(tmp_path):
    root = image_folder(tmp_path / "images")
    truncate(root / "train" / "dog" / "1.jpg")
    return root


# unreadable images ----------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_jpeg_is_named_with_a_hint(capsys, tmp_path, images, workers):
    code, _, err = train(capsys, TINY, "--data", images, "--classes", 2, "--input", "3x16x16", "--out",
                         tmp_path / "run", "--workers", workers, *QUICK)
    assert code == 1, err
    assert f"cannot read image {images / 'train' / 'dog' / '1.jpg'}" in err
    assert "--skip-bad-images" in err and "Traceback" not in err and "bug" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unreadable_images_are_skipped_and_counted(capsys, tmp_path, images):
    (images / "val" / "cat" / "2.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "run"
    code, stdout, err = train(capsys, TINY, "--data", images, "--classes", 2, "--input", "3x16x16", "--out", out,
                              "--workers", 0, "--skip-bad-images", *QUICK)
    assert code == 0, err
    assert "skipped 2 unreadable image(s) in epoch 1, e.g." in stdout and "dog/1.jpg" in stdout
    [record] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["skipped_images"] == 2  # one in training, one in validation
    state = ckpt.load(str(out / "last.pt"))
    assert state["settings"]["skip_bad_images"] is True


def test_a_colour_folder_for_a_grayscale_network_is_said_once(capsys, tmp_path):
    root = image_folder(tmp_path / "images")
    code, stdout, err = train(capsys, TINY, "--data", root, "--classes", 2, "--out", tmp_path / "run",
                              "--workers", 0, *QUICK)
    assert code == 0, err
    assert stdout.count("converted to grayscale for the network's 1-channel input") == 1


def test_digits_for_a_colour_network_are_said_to_be_copied(capsys, tmp_path):
    pytest.importorskip("sklearn")
    from incdsl.train.data import open_data
    assert open_data("digits", (3, 8, 8)).notes == [
        "the digits are grayscale: each is copied to the network's 3 input channels"]
    assert open_data("digits", (1, 8, 8)).notes == []


def test_five_classes_or_fewer_report_no_top5(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = train(capsys, TINY, "--data", "synthetic", "--synthetic-size", 16, "--classes", 5,
                              "--out", out, *QUICK)
    assert code == 0, err
    assert "top-1" in stdout and "top-5" not in stdout
    record = json.loads((out / "metrics.jsonl").read_text())
    assert record["val_top5"] is None
    assert json.loads((out / "summary.json").read_text())["val_top5"] is None


# bad numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [
    ("--workers", "-1"), ("--workers", "99999"), ("--threads", "0"), ("--threads", "10" * 20),
    ("--seed", "-3"), ("--seed", "9" * 40), ("--synthetic-size", "0"), ("--classes", "0"),
    ("--stop-after", "-1"), ("--epochs", "0"), ("--epochs", "1" + "0" * 30), ("--batch-size", "-2"),
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "1e400"), ("--lr", "-1"), ("--label-smoothing", "2"),
    ("--momentum", "x"), ("--workers", "٣"),
])
def test_bad_numbers_are_usage_errors(capsys, tmp_path, flag, value):
    with pytest.raises(SystemExit) as info:
        main(["train", TINY, "--data", "synthetic", "--out", str(tmp_path / "run"), flag, value])
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert f"argument {flag}:" in err and "Traceback" not in err


# damaged checkpoints --------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", TINY, "--data", "synthetic", "--synthetic-size", "16", "--out", str(out), "--epochs", "2",
                 "--stop-after", "1", "--ema-decay", "0.9", *QUICK[:-2]]) == 0
    return out


def resume(capsys, path):
    return train(capsys, "--resume", path, "--threads", 1)


def rewrite(good_run, tmp_path, change):
    """A copy of the good run whose last.pt is `change(checkpoint dict)`, saved normally."""
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    state = ckpt.load(str(run / "last.pt"))
    change(state)
    ckpt.save(str(run / "last.pt"), state)
    return run


def test_the_good_run_resumes(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    code, stdout, err = resume(capsys, run)
    assert code == 0, err
    assert "resumed after epoch 1" in stdout


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_checkpoints_are_one_line_errors(capsys, tmp_path, good_run, damage):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    last = run / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"empty": b"", "truncated": data[:len(data) // 2], "garbage": b"\x00" * 100}[damage])
    code, _, err = resume(capsys, run)
    assert code == 1
    assert err.startswith("incdsl: error: ") and "Traceback" not in err
    assert ("is empty" if damage == "empty" else "cannot read checkpoint") in err
    assert len(err.strip().splitlines()) <= 2  # the error and its hint


@pytest.mark.parametrize("field", sorted(ckpt.FIELDS))
def test_a_checkpoint_missing_a_field_is_named(capsys, tmp_path, good_run, field):
    run = rewrite(good_run, tmp_path, lambda s: s.pop(field))
    code, _, err = resume(capsys, run)
    assert code == 1
    assert f"is incomplete: no `{field}`" in err and "KeyError" not in err and "Traceback" not in err


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(epoch=-5), "`epoch` is not a count of epochs >= 0"),
    (lambda s: s.update(epoch=7), "epoch 7 but 1 epoch records"),
    (lambda s: s.update(epoch="1"), "`epoch` is not"),
    (lambda s: s.update(seed=-1), "`seed` is not"),
    (lambda s: s["scheduler"].update(steps_per_epoch=0), "`scheduler` is not"),
    (lambda s: s["spec"].update(input=[1, 16]), "`spec` is not"),
    (lambda s: s.update(rng=[]), "`rng` is not"),
    (lambda s: s.update(model={}), "`model` is not"),
    (lambda s: s["recipe"].update(lr="fast"), "the checkpoint's recipe is damaged"),
    (lambda s: s["recipe"].update(epochs=0), "the checkpoint's recipe is damaged"),
    (lambda s: s["rng"][0].update(python=None), "random or scaler state is damaged"),
])
def test_malformed_fields_are_one_line_errors(capsys, tmp_path, good_run, change, message):
    run = rewrite(good_run, tmp_path, change)
    code, _, err = resume(capsys, run)
    assert code == 1, err
    assert message in err and "Traceback" not in err


def test_flipped_weight_bytes_fail_the_stored_digest(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    last = run / "last.pt"
    raw = bytearray(last.read_bytes())
    weight = ckpt.load(str(last))["model"]["linear_0.weight"]
    at = raw.find(weight.numpy().tobytes()[:32])
    assert at > 0
    raw[at + 5] ^= 0x40
    last.write_bytes(bytes(raw))
    code, _, err = resume(capsys, run)
    assert code == 1
    assert "its weights do not match their stored SHA-256" in err


def test_flipped_average_weights_fail_too(capsys, tmp_path, good_run):
    def damage(state):
        state["ema"]["module"]["linear_0.bias"] += 1.0  # saved with the old digest
    run = rewrite(good_run, tmp_path, damage)
    code, _, err = resume(capsys, run)
    assert code == 1 and "averaged weights do not match" in err


def test_the_digest_matches_the_summary(good_run):
    state = ckpt.load(str(good_run / "last.pt"))
    summary = json.loads((good_run / "summary.json").read_text())
    assert summary["weights_sha256"] == [state["weights_sha256"]] == [ckpt.state_digest(state["model"])]
