"""`incdsl train`: throughput figures below one image a second, and the order and atomicity of
the files written after each epoch (the checkpoint, then metrics.jsonl)."""
from __future__ import annotations

import io
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incdsl.train.progress import Progress, format_rate

TINY = os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc")
QUICK = ["--device", "cpu", "--threads", "1", "--batch-size", "4", "--data", "synthetic", "--synthetic-size", "8",
         "--classes", "2"]


# --- throughput

@pytest.mark.parametrize("rate, shown", [
    (0.3123, "0.31"), (0.042, "0.042"), (0.00042, "0.00042"), (1.5, "1.50"), (12.34, "12.3"), (99.94, "99.9"),
    (99.96, "100"), (1234.5, "1,234"), (0.0, "0"),
])
def test_rates_keep_their_significant_digits(rate, shown):
    assert format_rate(rate) == shown


@given(st.floats(min_value=1e-6, max_value=1e9))
def test_a_positive_rate_never_shows_as_zero_and_stays_close(rate):
    text = format_rate(rate)
    assert float(text.replace(",", "")) > 0
    assert abs(float(text.replace(",", "")) - rate) <= 0.03 * rate + 0.5 * (rate >= 99.95)


def test_the_progress_line_shows_a_slow_rate():
    stream = io.StringIO()
    bar = Progress(stream, total=3, prefix="epoch 1/1", interval=0.0)
    bar.start -= 100.0  # 31 images in about 100 s
    bar.update(1, 31, 2.0, 0.1)
    bar.close()
    assert " 0.31 img/s" in stream.getvalue()


def test_the_epoch_line_shows_a_slow_rate():
    from incdsl.train.loop import _epoch_line
    record = {"epoch": 1, "train_loss": 2.0, "val_top1": 0.5, "val_top5": None, "lr": 0.1, "images_per_s": 0.31,
              "seconds": 120.0}
    assert "  0.31 img/s  " in _epoch_line(record, 3, ema=False)


# --- what each epoch writes

torch = pytest.importorskip("torch")

from incdsl.cli import main  # noqa: E402
from incdsl.io import writing  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402


def _train(capsys, *argv):
    code = main(["train", TINY, *map(str, argv), *QUICK])
    out, err = capsys.readouterr()
    return code, out, err


def _record_writes(monkeypatch) -> list[str]:
    """The base names write_atomic is asked to write, in order (the files are still written)."""
    written, real = [], writing.write_atomic

    def spy(path, data, **kwargs):
        written.append(os.path.basename(path))
        return real(path, data, **kwargs)
    monkeypatch.setattr("incdsl.io.write_atomic", spy)
    return written


def test_each_epoch_writes_the_checkpoint_then_the_metrics(capsys, tmp_path, monkeypatch):
    written = _record_writes(monkeypatch)
    code, _, err = _train(capsys, "--epochs", 2, "--out", tmp_path / "run")
    assert code == 0, err
    assert written == ["last.pt", "metrics.jsonl", "last.pt", "metrics.jsonl", "final.pt", "summary.json"]


def test_a_failed_metrics_write_leaves_no_partial_file(capsys, tmp_path, monkeypatch):
    """The disk fills while the epoch's metrics.jsonl is written: the epoch's checkpoint is
    whole, the earlier metrics.jsonl is unchanged and no temp file is left behind."""
    run = tmp_path / "run"
    assert _train(capsys, "--epochs", 2, "--stop-after", 1, "--out", run)[0] == 0
    before = (run / "metrics.jsonl").read_bytes()
    real, metrics_writes = writing.write_atomic, []

    def no_space(fd):
        raise OSError(28, "No space left on device")

    def spy(path, data, **kwargs):
        if os.path.basename(path) == "metrics.jsonl":
            metrics_writes.append(path)
            if len(metrics_writes) == 2:  # the first is the resume's catch-up, the second the epoch's
                with monkeypatch.context() as m:
                    m.setattr(writing.os, "fsync", no_space)
                    return real(path, data, **kwargs)
        return real(path, data, **kwargs)
    monkeypatch.setattr("incdsl.io.write_atomic", spy)
    code, _, err = _train(capsys, "--resume", run)
    assert code == 1 and "cannot write" in err and "metrics.jsonl: no space left" in err, err
    assert (run / "metrics.jsonl").read_bytes() == before
    assert ckpt.load(str(run / "last.pt"))["epoch"] == 2  # written before the metrics, whole
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def test_resume_catches_the_metrics_up_with_the_checkpoint(capsys, tmp_path, monkeypatch):
    """A run that died between the two writes: metrics.jsonl lacks the checkpoint's last epoch
    until a resume rewrites it from the checkpoint's history."""
    run = tmp_path / "run"
    assert _train(capsys, "--epochs", 3, "--stop-after", 2, "--out", run)[0] == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n")  # as if the process died before the second write
    written = []
    real = writing.write_atomic

    def fail_after_metrics(path, data, **kwargs):
        real(path, data, **kwargs)
        written.append(os.path.basename(path))
        raise KeyboardInterrupt  # stop right after the first write
    monkeypatch.setattr("incdsl.io.write_atomic", fail_after_metrics)
    code, _, _ = _train(capsys, "--resume", run)
    assert code == 130 and written == ["metrics.jsonl"]
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run / "metrics.jsonl").read_text().splitlines() == lines
