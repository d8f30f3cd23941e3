"""`--resume DIR` alone, the command printed on Ctrl-C, whole-run summaries, progress ETAs."""
from __future__ import annotations

import io
import json
import os
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from incdsl.cli import main  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from incdsl.train.progress import Progress, estimate_left, format_duration  # noqa: E402

TINY = os.path.join(os.path.dirname(__file__), "data", "train_tiny.inc")
QUICK = ["--device", "cpu", "--threads", "1", "--batch-size", "4"]


def train(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_resume_takes_spec_classes_input_recipe_and_data_from_the_run(capsys, tmp_path):
    spec = tmp_path / "net.inc"
    shutil.copy(TINY, spec)
    run = tmp_path / "run"
    code, stdout, err = train(capsys, spec, "--data", "synthetic", "--synthetic-size", 12, "--classes", 3,
                              "--input", "3x20x20", "--recipe", "inception_v4", "--epochs", 2, "--stop-after", 1,
                              "--out", run, *QUICK)
    assert code == 0, err
    assert "continue with: incdsl train --resume " + str(run) in stdout
    spec.unlink()  # the checkpoint's copy of the spec is used
    code, stdout, err = train(capsys, "--resume", run, "--threads", 1)
    assert code == 0, err
    assert "resumed after epoch 1" in stdout and "warning" not in stdout
    assert "3 classes, 3x20x20" in stdout and "rmsprop_tf lr 0.045" in stdout
    state = ckpt.load(str(run / "final.pt"))
    assert state["epoch"] == 2 and state["num_classes"] == 3 and state["spec"]["input"] == [3, 20, 20]
    assert state["recipe"]["batch_size"] == 4 and state["settings"]["data"] == "synthetic"


def test_resume_reads_a_spec_of_several_files_from_the_checkpoint(capsys, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.inc").write_text("block stem_block(n):\n    conv 3x3 n /2 S bn = 0.001\n")
    spec = tmp_path / "net.inc"
    spec.write_text('include "lib/blocks.inc"\nnetwork two_files(classes = 4):\n    input 1x12x12\n'
                    "    stem_block(8)\n    gap -> flatten -> linear classes\n")
    run = tmp_path / "run"
    assert train(capsys, spec, "--data", "synthetic", "--synthetic-size", 8, "--epochs", 2, "--stop-after", 1,
                 "--out", run, *QUICK)[0] == 0
    shutil.rmtree(tmp_path / "lib")
    spec.unlink()
    code, stdout, err = train(capsys, "--resume", run / "last.pt", "--threads", 1)
    assert code == 0, err
    assert "resumed after epoch 1" in stdout and "two_files: 2 epochs" in stdout


def test_flags_given_again_override_the_checkpoint(capsys, tmp_path):
    run = tmp_path / "run"
    assert train(capsys, TINY, "--data", "synthetic", "--synthetic-size", 8, "--epochs", 1, "--out", run,
                 *QUICK)[0] == 0
    code, stdout, err = train(capsys, TINY, "--resume", run, "--epochs", 2, "--threads", 1)
    assert code == 0, err
    assert "resumed after epoch 1" in stdout and "epoch 2/2" in stdout


def test_the_summary_counts_the_whole_run(capsys, tmp_path):
    run = tmp_path / "run"
    assert train(capsys, TINY, "--data", "synthetic", "--synthetic-size", 8, "--epochs", 3, "--stop-after", 2,
                 "--out", run, *QUICK)[0] == 0
    code, stdout, _ = train(capsys, "--resume", run, "--threads", 1)
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["epochs"] == 3 and summary["finished"]
    assert summary["seconds"] == pytest.approx(sum(r["seconds"] for r in history))
    assert summary["session_seconds"] < summary["seconds"] or summary["session_seconds"] > 0
    assert "tiny: 3 epochs in" in stdout and "(this session:" in stdout


def test_ctrl_c_prints_the_command_that_resumes(capsys, tmp_path, monkeypatch):
    import incdsl.train.loop as loop
    run = tmp_path / "my run"

    def interrupted(network, config, log=print):
        os.makedirs(config.out, exist_ok=True)
        (run / ckpt.LAST).write_bytes(b"")  # an epoch finished before the interruption
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    code, _, err = train(capsys, TINY, "--data", "synthetic", "--out", run)
    assert code == 130
    assert f"incdsl: interrupted; continue with: incdsl train --resume '{run}'" in err


def test_ctrl_c_before_any_checkpoint_says_there_is_nothing_to_resume(capsys, tmp_path, monkeypatch):
    import incdsl.train.loop as loop

    def interrupted(network, config, log=print):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    code, _, err = train(capsys, TINY, "--data", "synthetic", "--out", tmp_path / "run")
    assert code == 130 and "nothing to resume" in err


@pytest.mark.parametrize("argv, message", [
    ([TINY], "give a spec and --data"),
    (["--data", "digits"], "give a spec and --data"),
    (["--resume"], "--resume needs the run folder"),
    (["--resume", "x", "--weights", "w.pt"], "--weights starts a new run"),
])
def test_missing_pieces_are_usage_errors(capsys, argv, message):
    code, _, err = train(capsys, *argv)
    assert code == 2 and message in err


def test_resume_without_settings_needs_data(capsys, tmp_path):
    run = tmp_path / "run"
    assert train(capsys, TINY, "--data", "synthetic", "--synthetic-size", 8, "--epochs", 2, "--stop-after", 1,
                 "--out", run, *QUICK)[0] == 0
    state = ckpt.load(str(run / "last.pt"))
    del state["settings"]  # as written before checkpoints kept them
    ckpt.save(str(run / "last.pt"), state)
    code, _, err = train(capsys, "--resume", run)
    assert code == 1 and "does not say which data" in err and "--data" in err
    code, stdout, err = train(capsys, "--resume", run, "--data", "synthetic", "--synthetic-size", 8, "--threads", 1)
    assert code == 0, err


# progress -------------------------------------------------------------------------------

class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_estimates_cover_the_epoch_and_the_run():
    assert estimate_left(0, 10, 0.0) == (None, None)
    epoch, run = estimate_left(5, 10, 10.0, later_epochs=2)
    assert epoch == pytest.approx(10.0) and run == pytest.approx(10.0 + 2 * 20.0)
    epoch, run = estimate_left(5, 10, 10.0, later_epochs=2, epoch_seconds=30.0)  # measured epochs win
    assert run == pytest.approx(70.0)
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_progress_shows_etas():
    stream = io.StringIO()
    bar = Progress(stream, total=4, prefix="epoch 1/3", interval=0.0, later_epochs=2, epoch_seconds=60.0)
    bar.start -= 10.0  # as if the first step took ten seconds
    bar.update(1, 8, 2.5, 0.1)
    bar.close()
    line = stream.getvalue()
    assert "ETA 30s (run 2m30s)" in line


def test_progress_redraws_every_second_while_a_step_runs():
    import time
    stream = FakeTTY()
    bar = Progress(stream, total=100, prefix="epoch 1/1", tick=0.05)
    bar.update(1, 8, 2.5, 0.1)
    drawn = stream.getvalue().count("\r")
    time.sleep(0.5)  # no update: the timer redraws
    bar.close()
    assert stream.getvalue().count("\r") > drawn + 1


def test_progress_ends_its_line_before_an_error_message():
    stream = FakeTTY()
    bar = Progress(stream, total=4, prefix="epoch 1/2")
    bar.update(1, 8, 2.5, 0.1)
    bar.close(ok=False)
    assert stream.getvalue().endswith("\n") and "epoch 1/2 [" in stream.getvalue()


def test_an_error_inside_an_epoch_ends_the_progress_line(capsys, tmp_path, monkeypatch):
    import sys
    from incdsl.train import epoch as epoch_module
    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)

    real, calls = epoch_module.backward_step, []

    def fail_on_the_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "backward_step", fail_on_the_second_step)
    with pytest.raises(RuntimeError):
        main(["--debug", "train", TINY, "--data", "synthetic", "--synthetic-size", "8", "--epochs", "1",
              "--out", str(tmp_path / "run"), *QUICK])
    assert "epoch 1/1 [" in stream.getvalue() and stream.getvalue().endswith("\n")
