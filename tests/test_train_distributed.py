"""`incdsl train` under torchrun: two CPU processes with Gloo stay in step."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("sklearn")

import incdsl  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402

# A small Inception network that trains in about a second an epoch on digits at 16x16.
with open(os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc"), encoding="utf-8") as _f:
    TINY = _f.read()

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.slow
def test_two_processes_train_and_hold_identical_weights(tmp_path):
    spec = tmp_path / "tiny.inc"
    spec.write_text(TINY)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "incdsl", "train", str(spec), "--data", "digits", "--device", "cpu", "--epochs", "3",
         "--ema-decay", "0.9", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 process(es) on cpu" in done.stdout
    assert done.stdout.count("epoch 1/3 ") == 1  # only rank 0 reports

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["finished"]
    first, second = summary["weights_sha256"]
    assert first == second  # parameters and batch-norm statistics agree across ranks
    assert len(set(summary["ema_weights_sha256"])) == 1

    final = ckpt.load(str(out / "final.pt"))
    assert len(final["rng"]) == 2  # each rank's random state, for an exact resume
    model = incdsl.to_torch(incdsl.load(str(spec)))
    model.load_state_dict(final["model"])
    assert ckpt.weights_digest(model) == first  # rank 0 saved the weights every rank holds

    with open(out / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]  # it learns
