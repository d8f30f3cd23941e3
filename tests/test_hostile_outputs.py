"""Output files: never clobbered, never half-written, every failure a one-line error (exit 1).

Covers `incdsl.io.write_atomic` through the commands that write (compile -o/--onnx, cost -o,
draw -o, sample -o, train --out), `sample`'s output directory, and `draw`'s --font and size
guard. Runs as whatever user runs the tests; where root's bypass of permission bits matters the
test says so (a file with no write bit is refused even for root: our decision, see incdsl/io.py).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speclib import run_cli as run

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "specs" / "search" / "inception_space.inc")
HAVE_DOT = shutil.which("dot") is not None
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

SPEC = """include "lib.inc"

network tiny(classes = 10):
    input 3x16x16
    conv 3x3 8 S
    pair
    gap -> flatten -> linear classes
"""
LIB = """block pair:
    concat:
        branch: conv 1x1 4
        branch: conv 1x1 4 -> conv 3x3 4 S
"""


@pytest.fixture
def spec(tmp_path) -> Path:
    (tmp_path / "lib.inc").write_text(LIB)
    path = tmp_path / "tiny.inc"
    path.write_text(SPEC)
    return path


def assert_one_line_error(code: int, err: str, path) -> None:
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("incdsl: note:")]
    assert len(lines) == 1 and lines[0].startswith(f"incdsl: error: cannot write {path}: "), err
    assert "internal error" not in err and "Traceback" not in err


def device(tmp_path: Path, name: str) -> str | None:
    """A character device that works as /dev/NAME (null or full). Our own node where we may make
    one, so that a broken writer running as root replaces a copy, not the system's device; else
    the system's, which only root could replace. None when neither is safe to use."""
    path = tmp_path / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, {"null": 3, "full": 7}[name]))
        os.close(os.open(path, os.O_WRONLY))  # a file system mounted nodev refuses to open it
        return str(path)
    except OSError:
        return None if IS_ROOT or not os.path.exists(f"/dev/{name}") else f"/dev/{name}"


def leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".incdsl")]


# --- item 8: every output-path error is one line, exit 1 ----------------------------------

def writers(spec: Path, target: str) -> dict[str, list]:
    return {
        "compile -o": ["compile", spec, "-o", target],
        "compile --onnx": ["compile", spec, "--onnx", target],
        "cost -o": ["cost", spec, "-o", target],
        "draw -o": ["draw", spec, "--format", "dot", "-o", target],
    }


def bad_targets(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "plain").write_text("x")
    (tmp_path / "adir").mkdir()
    targets = {"missing directory": str(tmp_path / "missing" / "out.txt"),
               "a directory": str(tmp_path / "adir"),
               "a file as directory": str(tmp_path / "plain" / "out.txt")}
    if os.path.isdir("/proc/self"):
        targets["under /proc"] = "/proc/incdsl-test-output"
    full = device(tmp_path, "full")
    if full:
        targets["a full disk (/dev/full)"] = full
    return targets


@pytest.mark.parametrize("command", ["compile -o", "compile --onnx", "cost -o", "draw -o"])
def test_output_path_errors_are_one_line_exit_1(spec, tmp_path, capsys, command):
    for what, target in bad_targets(tmp_path).items():
        if command == "compile --onnx" and what.startswith("a full disk"):
            continue  # a device is only found full by writing, after the (slow) export
        code, _, err = run(capsys, *writers(spec, target)[command])
        assert_one_line_error(code, err, target)
    assert not leftovers(tmp_path)


def test_sample_output_path_errors_are_one_line_exit_1(tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    targets = [tmp_path / "plain", tmp_path / "plain" / "out"]
    if os.path.isdir("/proc/self"):
        targets.append("/proc/incdsl-test-output")
    for target in targets:
        code, _, err = run(capsys, "sample", SPACE, "-n", 1, "-o", target)
        assert_one_line_error(code, err, target)
    assert (tmp_path / "plain").read_text() == "x"


def test_train_out_is_checked_before_training(tmp_path):
    from incdsl.io import OutputError, prepare_output_dir
    (tmp_path / "plain").write_text("x")
    for target in (tmp_path / "plain", tmp_path / "plain" / "run"):
        with pytest.raises(OutputError, match=f"^cannot write {target}: "):
            prepare_output_dir(str(target))
    prepare_output_dir(str(tmp_path / "new" / "run"))
    assert (tmp_path / "new" / "run").is_dir()


def test_train_out_checked_without_creating_it(tmp_path):
    from incdsl.io import OutputError, prepare_output_dir
    (tmp_path / "plain").write_text("x")
    for target in (tmp_path / "plain", tmp_path / "plain" / "run" / "deeper"):
        with pytest.raises(OutputError, match=f"^cannot write {target}: .*not a directory"):
            prepare_output_dir(str(target), create=False)
    prepare_output_dir(str(tmp_path / "new" / "run"), create=False)
    assert not (tmp_path / "new").exists()


def test_train_with_bad_data_leaves_no_out_folder(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    out = tmp_path / "runs" / "one"
    code, _, err = run(capsys, "train", ROOT / "tests" / "data" / "train_tiny.inc", "--data", tmp_path / "nowhere",
                       "--out", out, "--device", "cpu")
    assert code == 1 and "no such data folder" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # imports torch
def test_train_out_errors_are_one_line_exit_1(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    (tmp_path / "plain").write_text("x")
    spec = ROOT / "tests" / "data" / "train_tiny.inc"
    for target in (tmp_path / "plain", tmp_path / "plain" / "run"):
        code, _, err = run(capsys, "train", spec, "--data", "synthetic", "--out", target)
        assert_one_line_error(code, err, target)


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs sysfs, which takes no new files")
def test_read_only_file_system_is_one_line(spec, capsys):
    code, _, err = run(capsys, "compile", spec, "-o", "/sys/incdsl-test.py")
    assert_one_line_error(code, err, "/sys/incdsl-test.py")


@pytest.mark.skipif(IS_ROOT, reason="root may write into a directory without write permission")
def test_permission_denied_is_one_line(spec, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, "compile", spec, "-o", locked / "m.py")
        assert_one_line_error(code, err, locked / "m.py")
    finally:
        locked.chmod(0o700)


def test_a_full_disk_leaves_the_old_file_and_no_temp_file(spec, tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.py"
    target.write_text("old")
    real_fsync = os.fsync

    def full(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)  # where delayed allocation reports a full disk
    code, _, err = run(capsys, "compile", spec, "-o", target)
    assert_one_line_error(code, err, target)
    assert "no space left" in err and target.read_text() == "old" and not leftovers(tmp_path)


def test_data_reaches_the_disk_before_the_rename(spec, tmp_path, capsys, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    assert run(capsys, "compile", spec, "-o", tmp_path / "m.py")[0] == 0
    assert "fsync" in calls and calls.index("fsync") < calls.index("replace")


# --- item 9: what is at the target ---------------------------------------------------------

def test_an_input_is_never_overwritten(spec, tmp_path, capsys):
    lib = tmp_path / "lib.inc"
    (tmp_path / "link.inc").symlink_to(spec)
    os.link(lib, tmp_path / "hard.inc")
    table = tmp_path / "table.csv"
    table.write_text("scope,params\ntiny,1\n")
    cases = [["compile", spec, "-o", spec], ["compile", spec, "-o", lib],
             ["compile", spec, "-o", tmp_path / "link.inc"], ["compile", spec, "-o", tmp_path / "hard.inc"], ["cost", spec, "-o", spec],
             ["cost", spec, "--against", table, "-o", table], ["draw", spec, "--format", "dot", "-o", spec],
             ["compile", spec, "--onnx", lib]]
    for argv in cases:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, argv[-1])
        assert "input of this command" in err
    assert spec.read_text() == SPEC and lib.read_text() == LIB and table.read_text().startswith("scope")
    assert (tmp_path / "link.inc").is_symlink()


def test_onnx_and_source_to_one_file_is_refused(spec, tmp_path, capsys):
    target = tmp_path / "m.py"
    code, _, err = run(capsys, "compile", spec, "-o", target, "--onnx", target)
    assert_one_line_error(code, err, target)
    assert not target.exists()


def test_an_existing_file_keeps_its_mode(spec, tmp_path, capsys):
    target = tmp_path / "model.py"
    target.write_text("old")
    target.chmod(0o600)
    assert run(capsys, "compile", spec, "-o", target)[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and "class Tiny" in target.read_text()
    target.chmod(0o751)
    assert run(capsys, "cost", spec, "-o", target)[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o751


def test_a_new_file_gets_the_usual_mode(spec, tmp_path, capsys):
    mask = os.umask(0o027)
    try:
        assert run(capsys, "compile", spec, "-o", tmp_path / "new.py")[0] == 0
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.py").stat().st_mode) == 0o640


def test_a_read_only_file_is_refused_even_for_root(spec, tmp_path, capsys):
    # root could write it; the missing write bits say "keep", and we keep it for everyone
    target = tmp_path / "frozen.py"
    target.write_text("keep me")
    target.chmod(0o444)
    code, _, err = run(capsys, "compile", spec, "-o", target)
    assert_one_line_error(code, err, target)
    assert "read-only" in err and target.read_text() == "keep me"
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


@pytest.mark.skipif(IS_ROOT, reason="root may write a file it does not own")
def test_a_file_the_user_cannot_write_is_refused(spec, tmp_path, capsys):
    target = tmp_path / "theirs.py"
    target.write_text("keep me")
    target.chmod(0o044)  # write bits for nobody we are, read for others
    code, _, err = run(capsys, "compile", spec, "-o", target)
    assert code == 1 and target.read_text() == "keep me"


def test_a_symlink_is_followed_and_stays_a_link(spec, tmp_path, capsys):
    real = tmp_path / "real.py"
    real.write_text("old")
    link = tmp_path / "link.py"
    link.symlink_to("real.py")
    dangling = tmp_path / "dangling.py"
    dangling.symlink_to("made.py")
    assert run(capsys, "compile", spec, "-o", link)[0] == 0
    assert run(capsys, "compile", spec, "-o", dangling)[0] == 0
    assert link.is_symlink() and os.readlink(link) == "real.py" and "class Tiny" in real.read_text()
    assert dangling.is_symlink() and "class Tiny" in (tmp_path / "made.py").read_text()
    assert not leftovers(tmp_path)


def test_a_fifo_is_written_directly(spec, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the output fits the pipe's buffer
    try:
        assert run(capsys, "draw", spec, "--format", "dot", "-o", fifo)[0] == 0
        data = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and data.startswith(b"digraph")


def test_a_fifo_without_a_reader_is_an_error_not_a_hang(spec, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "compile", spec, "-o", fifo)
    assert_one_line_error(code, err, fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_character_device_is_written_not_replaced(spec, tmp_path, capsys):
    null = device(tmp_path, "null")
    if null is None:
        pytest.skip("no /dev/null that is safe to write as root")
    assert run(capsys, "compile", spec, "-o", null)[0] == 0
    assert run(capsys, "cost", spec, "-o", null)[0] == 0
    assert run(capsys, "draw", spec, "--format", "dot", "-o", null)[0] == 0
    assert stat.S_ISCHR(os.lstat(null).st_mode) and not leftovers(tmp_path)


def test_dash_is_standard_output(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "compile", spec, "-o", "-")
    assert code == 0 and "class Tiny" in out
    code, out, _ = run(capsys, "draw", spec, "--format", "dot", "-o", "-")
    assert code == 0 and out.startswith("digraph")
    assert not (tmp_path / "-").exists()


@pytest.mark.skipif(not os.path.exists("/dev/fd/1"), reason="no /dev/fd")
def test_dev_fd_writes_to_the_open_stream(spec, tmp_path):
    target = tmp_path / "out.py"
    with open(target, "w") as f:
        f.write("# before\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "incdsl", "compile", str(spec), "-o", "/dev/fd/1"],
                              stdout=f, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.startswith("# before\n") and "class Tiny" in text  # the shell's stream, not a new file
    assert os.path.exists("/dev/fd") and not os.path.isfile("/dev/fd")


# --- item 10: sample -o DIR removes only what an earlier run wrote -------------------------

def test_sample_keeps_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "sample", SPACE, "-n", 3, "-o", out)[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    assert run(capsys, "sample", SPACE, "-n", 1, "--seed", 4, "-o", out)[0] == 0
    assert sorted(os.listdir(out)) == ["index.csv", "index.json", "notes.txt", "sample_0001.inc", "sub"]
    assert (out / "notes.txt").read_text() == "mine" and not leftovers(out) and not leftovers(tmp_path)


def test_sample_trusts_no_names_from_an_index(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "sample", SPACE, "-n", 2, "-o", out)[0] == 0
    (tmp_path / "victim.txt").write_text("keep")
    (out / "notes.txt").write_text("keep")
    index = json.loads((out / "index.json").read_text())
    index["samples"] += [{"file": "../victim.txt"}, {"file": "notes.txt"}, {"file": str(tmp_path / "victim.txt")}]
    (out / "index.json").write_text(json.dumps(index))
    assert run(capsys, "sample", SPACE, "-n", 1, "-o", out)[0] == 0
    assert (tmp_path / "victim.txt").read_text() == "keep" and (out / "notes.txt").read_text() == "keep"
    assert not (out / "sample_0002.inc").exists()


def test_sample_refuses_an_index_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.json").write_text('{"mine": true}')
    code, _, err = run(capsys, "sample", SPACE, "-n", 1, "-o", out)
    assert_one_line_error(code, err, out)
    assert os.listdir(out) == ["index.json"] and (out / "index.json").read_text() == '{"mine": true}'


def test_sample_never_replaces_its_input(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "sample", SPACE, "-n", 2, "-o", out)[0] == 0
    spec = out / "sample_0001.inc"
    before = spec.read_text()
    code, _, err = run(capsys, "sample", spec, "-n", 1, "-o", out)
    assert_one_line_error(code, err, out)
    assert "input of this command" in err and spec.read_text() == before
    assert sorted(os.listdir(out)) == ["index.csv", "index.json", "sample_0001.inc", "sample_0002.inc"]


def test_sample_on_a_full_disk_changes_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run(capsys, "sample", SPACE, "-n", 2, "-o", out)[0] == 0
    (out / "notes.txt").write_text("mine")
    before = {name: (out / name).read_text() for name in os.listdir(out)}
    real_fsync = os.fsync

    def full(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run(capsys, "sample", SPACE, "-n", 3, "--seed", 9, "-o", out)
    assert_one_line_error(code, err, out)
    assert {name: (out / name).read_text() for name in os.listdir(out)} == before
    assert not leftovers(tmp_path)


# --- item 15: --font and label text never reach the SVG as markup -------------------------

@pytest.mark.parametrize("font", ['x"/><script>alert(1)</script>', "Sans<b>", "a\nb", "", " Sans", "a" * 101,
                                  "Sans;rm"])
def test_draw_rejects_a_font_that_is_not_a_font_name(spec, tmp_path, capsys, font):
    target = tmp_path / "d.dot"
    code, _, err = run(capsys, "draw", spec, "--font", font, "-o", target)
    assert code == 2 and "not a font name" in err and not target.exists()


@pytest.mark.parametrize("font", ["Helvetica", "DejaVu Sans Mono", "Times-Roman", "Helvetica,Arial,sans-serif",
                                  "Noto_Sans 2.0"])
def test_draw_accepts_font_names(spec, tmp_path, capsys, font):
    assert run(capsys, "draw", spec, "--font", font, "-o", tmp_path / "d.dot")[0] == 0
    text = (tmp_path / "d.dot").read_text()
    assert f'fontname="{font}"' in text or f"fontname={font} " in text


def test_the_library_checks_the_font_too(spec):
    import incdsl
    from incdsl.render.graphviz import DrawError, DrawOptions, build_dot
    with pytest.raises(DrawError, match="not a font name"):
        build_dot(incdsl.load(str(spec)), DrawOptions(font='"><script>'))


label_text = st.text(st.characters(blacklist_categories=("Cs", "Co", "Cn")), min_size=1, max_size=30)


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` is not installed")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=label_text, line=label_text, cluster=label_text, note=label_text)
def test_label_text_reaches_the_svg_as_text(title, line, cluster, note):
    from incdsl.render.graphviz import run_dot, to_dot
    from incdsl.render.scene import Edge, Node, Scene
    scene = Scene("t", [Node("a", "conv", title, (line,), cluster="c"), Node("b", "conv", "B", cluster="c")],
                  [Edge("a", "b", (8, 4, 4), note)], {"c": cluster})
    svg = run_dot(to_dot(scene), "svg")
    root = ET.fromstring(svg)  # well-formed: nothing broke out of its element or attribute
    assert not [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] not in SVG_TAGS]
    texts = " ".join(e.text or "" for e in root.iter() if e.tag.endswith("}text"))
    def squash(text):  # dot collapses runs of spaces; control characters show as U+FFFD
        return " ".join("".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in text).split())

    for text in (title, line, cluster, note):
        assert squash(text) in squash(texts) or not squash(text)


SVG_TAGS = {"svg", "g", "title", "polygon", "path", "ellipse", "text", "polyline", "a", "defs"}


# --- item 16: draw refuses drawings dot cannot lay out in reasonable time and memory -------

BIG = """network big:
    input 3x32x32
    repeat 450: unit

block unit:
    concat:
        branch: conv 1x1 8
        branch: conv 1x1 8 -> conv 3x3 8 S
    conv 1x1 16
"""


def test_draw_refuses_a_drawing_over_the_box_limit(tmp_path, capsys):
    spec = tmp_path / "big.inc"
    spec.write_text(BIG)
    target = tmp_path / "big.dot"
    code, _, err = run(capsys, "draw", spec, "--level", "layer", "-o", target)
    assert code == 1 and "more than the limit of 2,000" in err and "--level network" in err
    assert "--max-nodes" in err and not target.exists()
    # the overview is small, and --max-nodes lets the big one through
    assert run(capsys, "draw", spec, "-o", target)[0] == 0
    assert run(capsys, "draw", spec, "--level", "layer", "--max-nodes", "5000", "-o", target)[0] == 0
    assert target.read_text().count("label=<") > 2000


def test_max_nodes_must_be_a_positive_number(spec, capsys):
    for bad in ("0", "-3", "many"):
        assert run(capsys, "draw", spec, "--max-nodes", bad, "--format", "dot")[0] == 2


def test_dot_runs_under_a_time_limit(spec, tmp_path, capsys, monkeypatch):
    from incdsl.render import graphviz
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + os.environ.get("PATH", ""))
    with pytest.raises(graphviz.DotTimeout):
        graphviz.run_dot("digraph { a }", "svg", timeout=0.2)
    monkeypatch.setattr(graphviz, "DOT_TIMEOUT", 0.2)
    code, _, err = run(capsys, "draw", spec, "-o", tmp_path / "d.svg")
    assert code == 1 and "did not finish" in err and not (tmp_path / "d.svg").exists()
