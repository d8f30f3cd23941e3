"""`incdsl train` end to end: metrics, checkpoints, exact resume, errors (runs on the CPU)."""
from __future__ import annotations

import json
import math
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("sklearn")

from incdsl.cli import main  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "mini_inception.inc")

# A small Inception network that trains in about a second an epoch on digits at 16x16.
with open(os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc"), encoding="utf-8") as _f:
    TINY = _f.read()

# No `classes` parameter: the classifier is fixed at 7 units.
FIXED = """\
network fixed:
    input 1x16x16
    conv 3x3 8 /2 S bn = 0.001
    gap -> flatten -> linear 7
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.inc"
    path.write_text(TINY)
    return str(path)


def train(capsys, *argv):
    """Run `incdsl train` in this process; returns (exit code, stdout, stderr).

    One CPU thread: on a machine shared with other jobs, torch's default of one thread per
    core spends most of its time waiting for descheduled threads."""
    code = main(["train", "--threads", "1", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def read_metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def load_model_state(path):
    return ckpt.load(path)["model"]


@pytest.mark.slow
def test_example_trains_on_digits(capsys, tmp_path):
    """The example's command for two epochs: metrics.jsonl, checkpoints and the summary."""
    out = tmp_path / "run"
    code, stdout, err = train(capsys, EXAMPLE, "--data", "digits", "--device", "cpu", "--out", out,
                              "--epochs", 2)
    assert code == 0, err
    first, record = read_metrics(out)
    assert first["epoch"] == 1 and first["lr"] > record["lr"]
    for key in ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "images_per_s", "seconds"):
        assert isinstance(record[key], (int, float)) and math.isfinite(record[key]), key
    assert record["epoch"] == 2
    assert 0 <= record["val_top1"] <= record["val_top5"] <= 1
    assert record["val_top1"] > 0.4  # far above chance (0.1) after two epochs
    assert record["images_per_s"] > 0 and record["seconds"] > 0
    assert "epoch 2/2" in stdout and "val top-1" in stdout and "mini_inception: 2 epochs in" in stdout

    last, final = ckpt.load(str(out / "last.pt")), ckpt.load(str(out / "final.pt"))
    assert last["epoch"] == final["epoch"] == 2
    with open(EXAMPLE) as f:
        assert f.read() in last["spec"]["sources"].values()
    assert last["recipe"]["epochs"] == 2 and last["history"] == [first, record]
    assert {"python", "numpy", "torch", "cuda"} <= set(last["rng"][0])
    assert last["optimizer"]["state"]  # momentum buffers were saved
    summary = json.loads((out / "summary.json").read_text())
    import incdsl
    model = incdsl.to_torch(incdsl.load(EXAMPLE))
    model.load_state_dict(final["model"])
    assert summary["weights_sha256"] == [ckpt.weights_digest(model)]
    assert summary["finished"] and summary["val_top1"] == record["val_top1"]


def test_interrupted_and_resumed_equals_uninterrupted(capsys, tmp_path, tiny):
    common = ["--data", "digits", "--device", "cpu", "--deterministic", "--epochs", 3, "--ema-decay", 0.9,
              "--seed", 5]
    code, _, err = train(capsys, tiny, *common, "--out", tmp_path / "whole")
    assert code == 0, err
    code, stdout, err = train(capsys, tiny, *common, "--out", tmp_path / "parts", "--stop-after", 1)
    assert code == 0, err
    assert "stopped after epoch 1 of 3" in stdout
    assert not (tmp_path / "parts" / "final.pt").exists()
    code, stdout, err = train(capsys, tiny, "--data", "digits", "--device", "cpu", "--deterministic",
                              "--out", tmp_path / "parts", "--resume")
    assert code == 0, err
    assert "resumed after epoch 1" in stdout

    whole, parts = ckpt.load(str(tmp_path / "whole" / "final.pt")), ckpt.load(str(tmp_path / "parts" / "final.pt"))
    assert whole["model"].keys() == parts["model"].keys()
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], parts["model"][key]), key
    for key in whole["ema"]["module"]:
        assert torch.equal(whole["ema"]["module"][key], parts["ema"]["module"][key]), key
    assert whole["scheduler"] == parts["scheduler"]
    strip = [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")}
             for r in read_metrics(tmp_path / "whole")]
    assert strip == [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")}
                     for r in read_metrics(tmp_path / "parts")]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(capsys, tmp_path, tiny):
    out = tmp_path / "run"
    code, _, err = train(capsys, tiny, "--data", "digits", "--device", "cpu", "--out", out, "--epochs", 3,
                         "--stop-after", 1)
    assert code == 0, err
    before = (out / "last.pt").read_bytes()
    code, _, err = train(capsys, tiny, "--data", "digits", "--device", "cpu", "--out", out, "--resume",
                         "--lr", 1e30)
    assert code == 1
    assert "training loss is no longer finite" in err and "last good checkpoint" in err
    assert "Traceback" not in err
    assert (out / "last.pt").read_bytes() == before
    kept = ckpt.load(str(out / "last.pt"))
    assert kept["epoch"] == 1 and all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())
    assert len(read_metrics(out)) == 1


def test_resume_with_nothing_left_to_do(capsys, tmp_path, tiny):
    out = tmp_path / "run"
    data = ["--data", "synthetic", "--synthetic-size", 64, "--device", "cpu", "--out", out]
    assert train(capsys, tiny, *data, "--batch-size", 16, "--epochs", 1)[0] == 0
    final, summary = (out / "final.pt").read_bytes(), (out / "summary.json").read_bytes()
    code, stdout, _ = train(capsys, tiny, *data, "--resume")
    assert code == 0 and "nothing to do: 1 of 1 epoch already trained" in stdout
    assert (out / "final.pt").read_bytes() == final and (out / "summary.json").read_bytes() == summary
    code, stdout, _ = train(capsys, tiny, *data, "--resume", "--epochs", 2)  # the batch size is the checkpoint's
    assert code == 0 and "resumed after epoch 1" in stdout and "warning" not in stdout
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_classifier_must_fit_the_data(capsys, tmp_path, tiny):
    code, _, err = train(capsys, tiny, "--set", "classes=5", "--data", "digits", "--device", "cpu",
                         "--out", tmp_path / "a")
    assert code == 1
    assert "gives 5 outputs, but the data has 10 classes" in err and "--classes 10" in err and "Traceback" not in err

    fixed = tmp_path / "fixed.inc"
    fixed.write_text(FIXED)
    code, _, err = train(capsys, fixed, "--data", "digits", "--device", "cpu", "--out", tmp_path / "b")
    assert code == 1 and "--classes 10" in err and "no `classes` parameter" in err
    code, _, err = train(capsys, fixed, "--data", "digits", "--device", "cpu", "--out", tmp_path / "b",
                         "--classes", 10, "--epochs", 1)
    assert code == 0, err
    assert ckpt.load(str(tmp_path / "b" / "final.pt"))["num_classes"] == 10


def test_classes_and_input_overrides_reach_the_network(capsys, tmp_path, tiny):
    out = tmp_path / "run"
    code, stdout, err = train(capsys, tiny, "--classes", 3, "--input", "3x20x20", "--data", "synthetic",
                              "--synthetic-size", 48, "--batch-size", 16, "--device", "cpu", "--out", out,
                              "--epochs", 1)
    assert code == 0, err
    assert "3 classes, 3x20x20" in stdout
    state = ckpt.load(str(out / "final.pt"))
    assert state["spec"]["params"]["classes"] == 3 and state["spec"]["input"] == [3, 20, 20]


@pytest.mark.parametrize("argv, message", [
    (["--data", "nowhere"], "no such data folder: nowhere"),
    (["--data", "digits", "--recipe", "googlenett"], "did you mean `googlenet`"),
    (["--data", "digits", "--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA device"),
    (["--data", "digits", "--resume", "missing.pt"], "no checkpoint at missing.pt"),
    (["--data", "digits", "--batch-size", "5000", "--device", "cpu"], "smaller than one batch of 5000"),
    (["--data", "digits", "--input", "4x16x16"], "takes 4-channel input, but images have 1 or 3 channels"),
])
def test_bad_requests_are_clear_errors(capsys, tmp_path, tiny, argv, message):
    code, _, err = train(capsys, tiny, *argv, "--out", tmp_path / "run")
    assert code == 1
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_but_absent(capsys, tmp_path, tiny):
    code, _, err = train(capsys, tiny, "--data", "digits", "--device", "cuda", "--out", tmp_path / "run")
    assert code == 1 and "--device cuda was asked for, but PyTorch finds no CUDA device" in err


def _image_folder(root, classes, per_class, splits=("train", "val")):
    from PIL import Image
    import numpy as np
    rng = np.random.default_rng(0)
    for split in splits:
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                noise = rng.integers(0, 30, (24, 30, 3), dtype=np.uint8)
                pixels = np.full((24, 30, 3), 40 + 170 * k, dtype=np.uint8) + noise
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_trains(capsys, tmp_path, tiny):
    data = tmp_path / "images"
    _image_folder(data, ["cat", "dog"], 8)
    out = tmp_path / "run"
    code, stdout, err = train(capsys, tiny, "--input", "3x16x16", "--classes", 2, "--data", data, "--device", "cpu",
                              "--out", out, "--epochs", 2, "--batch-size", 4, "--workers", 0)
    assert code == 0, err
    assert "16 training and 16 validation images, 2 classes, 3x16x16" in stdout
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_image_folder_problems_are_named(capsys, tmp_path, tiny):
    mismatched = tmp_path / "mismatched"
    _image_folder(mismatched, ["cat", "dog"], 1, splits=("train",))
    _image_folder(mismatched, ["cat", "emu"], 1, splits=("val",))
    code, _, err = train(capsys, tiny, "--classes", 2, "--data", mismatched, "--out", tmp_path / "run")
    assert code == 1 and "hold different classes" in err and "only in train: dog" in err and "only in val: emu" in err

    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "val" / "cat").mkdir(parents=True)
    (empty / "train" / "cat" / "notes.txt").write_text("no image")
    code, _, err = train(capsys, tiny, "--classes", 1, "--data", empty, "--out", tmp_path / "run")
    assert code == 1 and "class folder with no images: cat" in err

    no_val = tmp_path / "no_val"
    _image_folder(no_val, ["cat"], 1, splits=("train",))
    code, _, err = train(capsys, tiny, "--data", no_val, "--out", tmp_path / "run")
    assert code == 1 and "has no `val` folder" in err


def test_bf16_autocast_and_channels_last_on_cpu(capsys, tmp_path, tiny):
    code, _, err = train(capsys, tiny, "--data", "synthetic", "--synthetic-size", 64, "--batch-size", 16,
                         "--device", "cpu", "--amp", "bf16", "--channels-last", "--out", tmp_path / "run",
                         "--epochs", 1, "--recipe", "inception_v3")
    assert code == 0, err
    [record] = read_metrics(tmp_path / "run")
    assert math.isfinite(record["train_loss"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision(capsys, tmp_path, amp):
    code, _, err = train(capsys, EXAMPLE, "--data", "digits", "--device", "cuda", "--amp", amp, "--channels-last",
                         "--out", tmp_path / "run", "--epochs", 2)
    assert code == 0, err
    assert read_metrics(tmp_path / "run")[-1]["val_top1"] > 0.5


@pytest.mark.slow
def test_compiled_training_on_cpu(capsys, tmp_path, tiny):
    code, _, err = train(capsys, tiny, "--data", "synthetic", "--synthetic-size", 64, "--batch-size", 16,
                         "--device", "cpu", "--compile", "--out", tmp_path / "run", "--epochs", 2)
    assert code == 0, err
    records = read_metrics(tmp_path / "run")
    assert len(records) == 2 and all(math.isfinite(r["train_loss"]) for r in records)
    state = ckpt.load(str(tmp_path / "run" / "final.pt"))
    assert not any(key.startswith("_orig_mod.") for key in state["model"])  # the module's own keys


@pytest.mark.slow
def test_a_run_killed_by_ctrl_c_resumes_exactly(tmp_path, tiny):
    """A real interruption (SIGINT in the middle of epoch 2 or later), then --resume."""
    import signal
    import subprocess
    import sys
    import time
    args = [sys.executable, "-m", "incdsl", "train", tiny, "--data", "digits", "--device", "cpu", "--deterministic",
            "--threads", "1", "--epochs", "6"]
    env = {**os.environ, "PYTHONPATH": os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
           + os.pathsep + os.environ.get("PYTHONPATH", "")}
    whole = subprocess.run(args + ["--out", str(tmp_path / "whole")], capture_output=True, text=True, timeout=600,
                           env=env)
    assert whole.returncode == 0, whole.stderr
    parts = tmp_path / "parts"
    proc = subprocess.Popen(args + ["--out", str(parts)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 300
    while not (parts / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert not (parts / "final.pt").exists()
    done = subprocess.run(args + ["--out", str(parts), "--resume"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "resumed after epoch" in done.stdout
    a, b = ckpt.load(str(tmp_path / "whole" / "final.pt")), ckpt.load(str(parts / "final.pt"))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
