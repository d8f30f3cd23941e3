"""Hostile input to the front end (issue 15): what a spec may read, how reads are bounded, the
grammar cache, and diagnostics that are right and safe to print on a terminal.

Golden renderings of some of these cases are in tests/errors/ (include_absolute, invalid_utf8,
comment_separators, control_characters, ...); this module covers what needs a file system,
a process or a property.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.diagnostics import Diagnostic, Span, render

REPO = Path(__file__).resolve().parent.parent
LIB = "block b:\n    conv 1x1 4\n"
USES_B = "network t:\n    input 3x8x8\n    b\n"
PLAIN = "network t:\n    input 3x8x8\n    gap\n"


def run_bounded(*args, cwd=None, input=None, env=None, timeout=30):
    """`python -m incdsl ARGS` in a process that cannot take more than 1 GiB nor `timeout` seconds:
    a read without bound fails the test instead of the machine."""
    environ = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environ.update(env or {})

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-m", "incdsl", *map(str, args)], cwd=cwd or REPO, env=environ,
                          input=input, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def cli(capsys, *args, stdin: str | None = None, monkeypatch=None):
    """`incdsl ARGS` in this process (for what cannot hang): a CompletedProcess-like result."""
    from incdsl.cli import main
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def clean_failure(proc, *needles):
    """Exit 1 with a diagnostic holding each needle; no traceback, no internal error."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def tree(tmp_path, files: dict) -> Path:
    """Write files (name -> text) under tmp_path; returns tmp_path."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


# --- include: only inside the spec's tree and the include path -------------------------------

def test_an_absolute_include_is_refused_even_of_a_valid_library(tmp_path, load_error):
    root = tree(tmp_path, {"other/lib.inc": LIB})
    main = tree(tmp_path, {"proj/main.inc": f'include "{root / "other/lib.inc"}"\n' + USES_B}) / "proj/main.inc"
    err = load_error(main)
    assert "is absolute" in err.diagnostics[0].message and err.span.line == 1


def test_an_include_may_not_climb_out_of_the_spec_tree(tmp_path, load_error):
    tree(tmp_path, {"other/lib.inc": LIB, "proj/main.inc": 'include "../other/lib.inc"\n' + USES_B})
    err = load_error(tmp_path / "proj/main.inc")
    assert "lies outside the spec's directory" in err.diagnostics[0].message
    assert "-I DIR" in err.diagnostics[0].hint


def test_a_symlink_out_of_the_tree_is_refused(tmp_path, load_error):
    tree(tmp_path, {"other/lib.inc": LIB, "proj/main.inc": 'include "lib.inc"\n' + USES_B})
    (tmp_path / "proj/lib.inc").symlink_to(tmp_path / "other/lib.inc")
    err = load_error(tmp_path / "proj/main.inc")
    assert "outside" in err.diagnostics[0].message
    assert err.diagnostics[0].notes == (f"it resolves to {os.path.realpath(tmp_path / 'other/lib.inc')}",)


def test_symlinks_inside_the_tree_and_nested_dotdot_are_fine(tmp_path):
    tree(tmp_path, {"proj/lib/a.inc": 'include "../common/c.inc"\n' + LIB, "proj/common/c.inc": "block c:\n    gap\n",
                    "proj/main.inc": 'include "alias/a.inc"\n' + USES_B})
    (tmp_path / "proj/alias").symlink_to(tmp_path / "proj/lib")
    assert incdsl.load(tmp_path / "proj/main.inc").layers == ["b/conv_0"]


def test_the_include_path_admits_other_directories(tmp_path, monkeypatch, load_error):
    tree(tmp_path, {"other/lib.inc": LIB, "proj/main.inc": 'include "lib.inc"\n' + USES_B,
                    "proj/up.inc": 'include "../other/lib.inc"\n' + USES_B})
    for name in ("main.inc", "up.inc"):
        load_error(tmp_path / "proj" / name)
        assert incdsl.load(tmp_path / "proj" / name, include_path=[tmp_path / "other"]).layers == ["b/conv_0"]
    monkeypatch.setenv("INCDSL_PATH", os.pathsep.join(["", str(tmp_path / "nowhere"), str(tmp_path / "other")]))
    assert incdsl.load(tmp_path / "proj/main.inc").layers == ["b/conv_0"]


def test_cli_takes_include_directories_with_dash_i(tmp_path, capsys, monkeypatch):
    tree(tmp_path, {"other/lib.inc": LIB, "proj/main.inc": 'include "lib.inc"\n' + USES_B})
    clean_failure(cli(capsys, "check", tmp_path / "proj/main.inc"), "cannot read included file `lib.inc`")
    for command in ("check", "cost", "draw"):
        extra = ["--format", "dot", "-o", tmp_path / "t.dot"] if command == "draw" else []
        proc = cli(capsys, command, "-I", tmp_path / "other", tmp_path / "proj/main.inc", *extra)
        assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("INCDSL_PATH", str(tmp_path / "other"))
    proc = cli(capsys, "check", tmp_path / "proj/main.inc")
    assert proc.returncode == 0 and "t: ok" in proc.stdout


def test_every_spec_reading_command_takes_dash_i():
    from incdsl.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        if any(a.dest == "spec" for a in parser._actions):
            assert any("-I" in a.option_strings for a in parser._actions), name


def test_a_root_marker_widens_the_tree_only_when_its_owner_set_it(tmp_path, load_error):
    tree(tmp_path, {"proj/lib/x.inc": LIB, "proj/variants/v.inc": 'include "../lib/x.inc"\n' + USES_B})
    spec = tmp_path / "proj/variants/v.inc"
    assert "outside" in load_error(spec).diagnostics[0].message
    marker = tmp_path / "proj/.incdsl-root"
    marker.write_text("")
    assert incdsl.load(spec).layers == ["b/conv_0"]
    os.chmod(tmp_path / "proj", 0o777)  # anyone could have planted it: it counts for nothing
    try:
        assert "outside" in load_error(spec).diagnostics[0].message
    finally:
        os.chmod(tmp_path / "proj", 0o755)
    marker.unlink()
    marker.mkdir()  # not a regular file
    assert "outside" in load_error(spec).diagnostics[0].message


def test_the_shipped_variants_include_their_library_through_the_marker():
    net = incdsl.load(REPO / "specs/variants/googlenet_torchvision.inc")
    assert net.name == "googlenet_torchvision"
    assert any(f.replace(os.sep, "/").endswith("specs/lib/googlenet.inc") for f in net.sources)


def test_a_file_that_is_not_a_spec_is_never_echoed(tmp_path, load_error):
    secrets = "API_KEY=hunter2\nPASSWORD=swordfish\n"
    tree(tmp_path, {"proj/.env": secrets, "proj/main.inc": 'include ".env"\n' + PLAIN})
    err = load_error(tmp_path / "proj/main.inc")
    assert "is not an incdsl spec" in err.diagnostics[0].message
    text = err.render()
    assert "hunter2" not in text and "swordfish" not in text and "API_KEY" not in text
    assert str(tmp_path / "proj/.env") not in err.sources and os.path.normpath(tmp_path / "proj/.env") not in err.sources


def test_a_binary_file_in_the_tree_is_never_echoed(tmp_path, load_error):
    (tmp_path / "tool.inc").write_bytes(b"block b:  # \x00\x01\x02 SECRET-BYTES\n" + LIB.encode())
    tree(tmp_path, {"main.inc": 'include "tool.inc"\n' + PLAIN})
    err = load_error(tmp_path / "main.inc")
    assert "is not an incdsl spec" in err.diagnostics[0].message and "SECRET" not in err.render()


def test_a_library_with_an_error_further_down_shows_that_one_line_only(tmp_path, load_error):
    tree(tmp_path, {"proj/lib.inc": "block b:\n    conv 1x1 4\nSECOND_LINE = x\nTHIRD_LINE\n",
                    "proj/main.inc": 'include "lib.inc"\n' + USES_B})
    text = load_error(tmp_path / "proj/main.inc").render()
    assert "SECOND_LINE" in text and "THIRD_LINE" not in text and "conv 1x1 4" not in text


def test_include_paths_with_control_characters_are_refused_and_never_printed_raw(tmp_path, load_error):
    tree(tmp_path, {"proj/main.inc": 'include "a\x1b[2Jb.inc"\n' + PLAIN})
    err = load_error(tmp_path / "proj/main.inc")
    assert "control characters" in err.diagnostics[0].message
    assert "\x1b" not in err.render() and "\\x1b[2J" in err.render()


def test_nul_in_an_include_path_is_a_clean_error_in_check(tmp_path, capsys):
    path = tmp_path / "nul.inc"
    path.write_bytes(b'include "x\x00"\nnetwork t:\n    input 3x8x8\n    gap\n')
    clean_failure(cli(capsys, "check", path), f"{path}:1:11: error: spec contains a NUL byte")


def test_include_size_caps(tmp_path, monkeypatch, load_error):
    import incdsl.io.reading
    comments = "# " + "x" * 98 + "\n"
    tree(tmp_path, {"big.inc": comments * 30 + LIB, "a.inc": comments * 15 + LIB,
                    "c.inc": comments * 15 + "block c:\n    gap\n",
                    "one.inc": 'include "big.inc"\n' + USES_B,
                    "two.inc": 'include "a.inc"\ninclude "c.inc"\n' + USES_B})
    monkeypatch.setattr(incdsl.io.reading, "MAX_FILE_BYTES", 2000)
    assert "larger than 2,000 bytes" in load_error(tmp_path / "one.inc").diagnostics[0].message
    monkeypatch.setattr(incdsl.io.reading, "MAX_FILE_BYTES", 1 << 20)
    monkeypatch.setattr(incdsl.io.reading, "MAX_TOTAL_BYTES", 3000)
    err = load_error(tmp_path / "two.inc")
    assert "together exceed" in err.diagnostics[0].message and err.span.line == 2
    monkeypatch.setattr(incdsl.io.reading, "MAX_TOTAL_BYTES", 8 << 20)
    monkeypatch.setattr(incdsl.io.reading, "MAX_INCLUDED_FILES", 1)
    assert "at most 1 files" in load_error(tmp_path / "two.inc").diagnostics[0].message


def test_includes_nest_at_most_so_deep(tmp_path, load_error):
    from incdsl.ir.lower import MAX_INCLUDE_DEPTH
    files = {f"l{k}.inc": f'include "l{k + 1}.inc"\n' for k in range(MAX_INCLUDE_DEPTH + 1)}
    files[f"l{MAX_INCLUDE_DEPTH + 1}.inc"] = LIB
    tree(tmp_path, {**files, "main.inc": 'include "l0.inc"\n' + USES_B})
    assert "nest more than" in load_error(tmp_path / "main.inc").diagnostics[0].message


def test_include_of_a_directory_or_a_device_fails_fast(tmp_path, load_error):
    (tmp_path / "dir.inc").mkdir()
    tree(tmp_path, {"main.inc": 'include "dir.inc"\n' + PLAIN, "dev.inc": 'include "zero"\n' + PLAIN})
    assert "it is a directory" in load_error(tmp_path / "main.inc").diagnostics[0].message
    if os.path.exists("/dev/zero"):
        err = load_error(tmp_path / "dev.inc", include_path=["/dev"])
        assert "character device" in err.diagnostics[0].message


def test_include_of_a_fifo_fails_fast(tmp_path):
    os.mkfifo(tmp_path / "fifo.inc")
    tree(tmp_path, {"main.inc": 'include "fifo.inc"\n' + PLAIN})
    clean_failure(run_bounded("check", tmp_path / "main.inc", timeout=20), "pipe (FIFO)")


def test_sample_never_inlines_a_file_from_outside_the_tree(tmp_path, capsys):
    tree(tmp_path, {"secret.inc": "# TOP SECRET hunter2\n" + LIB,
                    "proj/space.inc": 'include "../secret.inc"\nnetwork t:\n    input 3x8x8\n    conv 1x1 choice(4, 8)\n    b\n'})
    proc = cli(capsys, "sample", tmp_path / "proj/space.inc", "-n", "1", "-o", tmp_path / "out")
    clean_failure(proc, "outside")
    assert not (tmp_path / "out").exists() and "hunter2" not in proc.stderr


def test_check_and_sample_find_choices_through_the_include_path(tmp_path, capsys):
    tree(tmp_path, {"other/lib.inc": "block b:\n    conv 1x1 choice(4, 8)\n",
                    "proj/space.inc": 'include "lib.inc"\n' + USES_B})
    proc = cli(capsys, "check", "-I", tmp_path / "other", tmp_path / "proj/space.inc")
    assert proc.returncode == 0 and "a search space of 2 points" in proc.stdout, proc.stderr
    proc = cli(capsys, "sample", "-I", tmp_path / "other", tmp_path / "proj/space.inc", "-n", "2", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "out/sample_0001.inc").read_text()
    assert "block b:" in written and 'include "lib.inc"' not in written.replace('# include "lib.inc"', "")


# --- reading: regular files, bounded, stdin as `-` -------------------------------------------

def test_a_spec_that_is_not_a_regular_file_fails_fast(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.inc")
    clean_failure(run_bounded("check", tmp_path / "fifo.inc", timeout=20), "pipe (FIFO)", "give `-`")
    clean_failure(cli(capsys, "check", tmp_path), "is a directory")
    if os.path.exists("/dev/zero"):
        clean_failure(run_bounded("check", "/dev/zero", timeout=20), "character device")


def test_against_on_a_fifo_or_a_device_fails_fast(tmp_path):
    spec = tree(tmp_path, {"t.inc": PLAIN}) / "t.inc"
    os.mkfifo(tmp_path / "fifo.csv")
    clean_failure(run_bounded("cost", spec, "--against", tmp_path / "fifo.csv", timeout=20), "pipe (FIFO)")
    if os.path.exists("/dev/zero"):
        clean_failure(run_bounded("cost", spec, "--against", "/dev/zero", timeout=20), "character device")


def test_against_reads_utf8_csv_or_says_where_it_is_not(tmp_path, capsys):
    spec = tree(tmp_path, {"t.inc": PLAIN}) / "t.inc"
    (tmp_path / "latin1.csv").write_bytes(b"scope,params,note\ngap,0,caf\xe9\n")
    clean_failure(cli(capsys, "cost", spec, "--against", tmp_path / "latin1.csv"),
                  f"{tmp_path / 'latin1.csv'}:2:10: error: reference table: invalid UTF-8 (byte 0xe9)")
    (tmp_path / "wide.csv").write_text("scope,params\ngap,\"" + "9" * 200_000 + "\"\n")  # past csv's field limit
    clean_failure(cli(capsys, "cost", spec, "--against", tmp_path / "wide.csv"), "cannot read reference table")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfscope,params\ngap,0\n")
    assert cli(capsys, "cost", spec, "--against", tmp_path / "bom.csv").returncode == 0


def test_dash_reads_the_spec_from_stdin_once(tmp_path, capsys, monkeypatch):
    proc = cli(capsys, "check", "-", stdin=PLAIN, monkeypatch=monkeypatch)
    assert proc.returncode == 0 and "t: ok" in proc.stdout, proc.stderr
    space = "network t:\n    input 3x8x8\n    conv 1x1 choice(4, 8)\n"  # read for the choice scan and the load
    proc = cli(capsys, "check", "-", stdin=space, monkeypatch=monkeypatch)
    assert proc.returncode == 0 and "a search space of 2 points" in proc.stdout, proc.stderr
    proc = cli(capsys, "check", "-", stdin="network t:\n    input 3x8x8\n    conv 1x1 q\n", monkeypatch=monkeypatch)
    clean_failure(proc, "<stdin>:3:14: error: unknown name `q`", "3 |     conv 1x1 q")
    tree(tmp_path, {"lib.inc": LIB})
    monkeypatch.chdir(tmp_path)  # includes of a spec on standard input: from the working directory
    proc = cli(capsys, "check", "-", stdin='include "lib.inc"\n' + USES_B, monkeypatch=monkeypatch)
    assert proc.returncode == 0, proc.stderr


def test_stdin_is_read_with_a_bound(capsys, monkeypatch):
    proc = cli(capsys, "check", "-", stdin=PLAIN + "# " + "x" * (1 << 20) + "\n", monkeypatch=monkeypatch)
    clean_failure(proc, "standard input holds more than 1 MiB")


def test_dev_stdin_on_a_pipe_reads_standard_input_once():
    proc = run_bounded("check", "/dev/stdin", input=PLAIN, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert ": ok" in proc.stdout


# --- the grammar cache -------------------------------------------------------------------------

class _Plant:
    """Unpickling this creates a file: proof that a cache was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_pickle_in_the_grammar_cache_is_never_run(tmp_path):
    cache = tmp_path / "cache"
    proof = tmp_path / "pwned"
    spec = tree(tmp_path, {"t.inc": PLAIN}) / "t.inc"
    assert run_bounded("check", spec, env={"XDG_CACHE_HOME": str(cache)}).returncode == 0
    files = list((cache / "incdsl").iterdir())
    assert files
    for path in files:  # keep each file's first line (a hash, for Lark's own format), then the payload
        first = path.read_bytes().split(b"\n", 1)[0]
        path.write_bytes(first + b"\n" + pickle.dumps(_Plant(str(proof))) * 2)
    proc = run_bounded("check", spec, env={"XDG_CACHE_HOME": str(cache)})
    assert proc.returncode == 0 and "t: ok" in proc.stdout, proc.stderr
    assert not proof.exists()
    assert any(p.read_bytes().startswith(b"incdsl-grammar-cache") for p in (cache / "incdsl").iterdir())  # rebuilt


def test_a_tampered_or_corrupt_cache_is_rebuilt(tmp_path):
    from incdsl.lang.parse import build_parser
    build_parser(str(tmp_path))
    (path,) = tmp_path.iterdir()
    header, body = path.read_bytes().split(b"\n", 1)
    good = path.read_bytes()
    for damaged in (header + b"\n" + body[:-10],  # truncated: the hash no longer matches
                    header + b"\n" + json.dumps({"d": []}).encode(),  # valid JSON, wrong hash
                    b"\n".join([b" ".join(header.split(b" ")[:-1] + [__import__("hashlib").sha256(b"[1]").hexdigest().encode()]), b"[1]"]),  # right hash, nonsense
                    b"", b"\x80\x04K\x01."):
        path.write_bytes(damaged)
        parser = build_parser(str(tmp_path))
        assert parser.parse(PLAIN).data == "start"
        assert path.read_bytes() == good or path.read_bytes().startswith(b"incdsl-grammar-cache")


def test_a_cache_folder_others_may_write_is_not_used(tmp_path, monkeypatch):
    from incdsl.lang.parse import cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == str(tmp_path / "incdsl")
    os.chmod(tmp_path / "incdsl", 0o777)
    assert cache_dir() is None


# --- diagnostics: the right line, nothing raw on the terminal, bounded size ------------------

SEPARATORS = ["\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_separators_in_a_comment_do_not_move_the_error_line(sep, load_error):
    err = load_error(f"network t:  # a{sep}b\n    input 3x8x8  # {sep}\n    conv 1x1 q\n")
    assert (err.span.line, err.span.col) == (3, 14)
    assert err.render().split("\n")[2] == "3 |     conv 1x1 q"


def test_a_lone_cr_ends_a_line_in_the_lexer_and_in_diagnostics_alike(tmp_path, load_error):
    mac = tmp_path / "mac.inc"
    mac.write_bytes(b"network t:\r    input 3x8x8\r    conv 1x1 q\r")  # classic Mac line endings
    err = load_error(mac)
    assert (err.span.line, err.span.col) == (3, 14) and err.render().split("\n")[2] == "3 |     conv 1x1 q"
    err = load_error("network t:\r\n    input 3x8x8  # a comment\r    conv 1x1 q\r\n")  # the CR ends the comment
    assert (err.span.line, err.span.col) == (3, 14) and err.render().split("\n")[2] == "3 |     conv 1x1 q"


def test_control_characters_reach_the_terminal_escaped(load_error):
    err = load_error("network t:  # \x1b]0;owned\x07\n    input 3x8x8\n    conv 1x1 q  # \x1b[2J\u202e\n",
                     file="a\x1b[31mb.inc")
    text = err.render()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert text.startswith("a\\x1b[31mb.inc:3:14: error:") and "\\x1b[2J\\u202e" in text


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n\t" for ch in text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.text(max_size=12), name=st.text(max_size=8))
def test_any_comment_text_and_file_name_keep_the_line_and_print_safely(junk, name, load_error):
    junk = junk.replace("\n", "").replace("\r", "")  # line ends: tested above
    assume("\x00" not in junk)
    err = load_error(f"network t:  # {junk}\n    input 3x8x8  # {junk}\n    conv 1x1 q  # {junk}\n", file=f"{name}.inc")
    assert (err.span.line, err.span.col) == (3, 14)
    text = err.render()
    assert _printable(text)
    assert text.split("\n")[2].startswith("3 |     conv 1x1 q")


@pytest.mark.parametrize("digit", ["\uff18", "\u0668", "\u096e", "\uff13x3"])
def test_only_ascii_digits_are_numbers(digit, load_error):
    err = load_error(f"network t:\n    input 3x8x8\n    conv 1x1 {digit}\n")
    assert err.diagnostics[0].message.startswith("unexpected character") and "ASCII digits" in err.diagnostics[0].hint
    assert (err.span.line, err.span.col) == (3, 14)


def test_a_utf8_byte_order_mark_is_skipped(tmp_path, load_error):
    path = tmp_path / "bom.inc"
    path.write_bytes(b"\xef\xbb\xbf" + PLAIN.encode())
    assert incdsl.load(path).name == "t"
    assert incdsl.load("\ufeff" + PLAIN).name == "t"
    err = load_error("\ufeffnetwork t(c = q):\n    input 3x8x8\n    gap\n")
    assert (err.span.line, err.span.col) == (1, 15)  # columns as if there were no mark


def test_invalid_utf8_is_located_by_line_and_column(tmp_path, load_error, capsys):
    path = tmp_path / "bad.inc"
    path.write_bytes(b"network t:\r\n    input 3x8x8  # caf\xe9\n    gap\n")
    err = load_error(path)
    assert err.diagnostics[0].message == "invalid UTF-8 (byte 0xe9)" and (err.span.line, err.span.col) == (2, 23)
    assert "position" not in err.render()
    proc = cli(capsys, "check", path)
    assert proc.returncode == 1 and proc.stderr.startswith(f"{path}:2:23: error: invalid UTF-8")


def test_no_network_points_at_the_end_of_the_file(tmp_path, load_error, capsys):
    path = tree(tmp_path, {"blocks.inc": "# blocks only\nblock b:\n    gap\n\n"}) / "blocks.inc"
    err = load_error(path)
    assert err.span == Span(str(path), 3, 8, 3, 9) and "`network NAME:`" in err.diagnostics[0].hint
    empty = tree(tmp_path, {"empty.inc": ""}) / "empty.inc"
    err = load_error(empty)
    assert err.span == Span(str(empty), 1, 1, 1, 2) and "(the file is empty)" in err.diagnostics[0].message
    space = tree(tmp_path, {"space.inc": "block b:\n    conv 1x1 choice(4, 8)\n"}) / "space.inc"
    proc = cli(capsys, "check", space)
    clean_failure(proc, f"{space}:2:26: error: the spec defines no network")


def test_a_12_mb_line_gives_a_short_message(load_error):
    err = load_error("network t:\n    input 3x8x8\n    conv 1x1 q  # " + "x" * 12_000_000 + "\n")
    text = err.render()
    assert len(text) < 1000 and text.split("\n")[2].endswith("\u2026")


def test_the_window_follows_the_caret_on_a_long_line():
    line = "a" * 6_000_000 + "XYZ" + "b" * 6_000_000
    text = render(Diagnostic("error", "e", Span("f", 1, 6_000_001, 1, 6_000_004)), {"f": line + "\n"})
    head, _, shown, caret = text.split("\n")
    assert head == "f:1:6000001: error: e" and len(shown) < 250
    assert shown.startswith("1 | \u2026") and shown.endswith("\u2026")
    start = caret.index("^")
    assert shown[start:start + 3] == "XYZ" and caret[start:] == "^^^"


def test_wide_and_escaped_characters_keep_the_caret_under_its_character():
    line = "\t\u0634\uff18\x1b conv q"
    text = render(Diagnostic("error", "e", Span("f", 1, 10, 1, 11)), {"f": line})
    _, _, shown, caret = text.split("\n")
    # tab to 8, one column for the Arabic letter, two for the fullwidth digit, four for ESC shown as \x1b
    assert shown == "1 |         \u0634\uff18\\x1b conv q" and caret == "  | " + " " * 20 + "^"


def test_a_huge_name_gives_a_short_message(load_error):
    err = load_error("network t:\n    input 3x8x8\n    conv 1x1 " + "q" * 1_000_000 + "\n")
    assert len(err.render()) < 2000


def test_a_spec_over_the_size_limit_is_located_where_it_passes_it(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.inc"
    path.write_text(PLAIN + "# " + "x" * (1 << 20) + "\n")
    proc = cli(capsys, "check", path)
    clean_failure(proc, f"{path}:{PLAIN.count(chr(10)) + 1}:", "the spec is too large")
    proc = cli(capsys, "check", "-", stdin=path.read_text(), monkeypatch=monkeypatch)
    clean_failure(proc, "<stdin>:", "standard input holds more than 1 MiB")
