"""`incdsl check`: summary, exit codes 0/1/2, diagnostics on stderr, help and version, no tracebacks."""
import os
import re

import pytest

import incdsl
from incdsl.cli import main
from speclib import run_cli as run

GOOD = """\
network tiny(classes = 10):
    input 3x32x32
    conv 3x3 16 /2 S bn = 0.001 as stem
    concat:
        branch: conv 1x1 8
        branch: conv 1x1 8 -> conv 3x3 8 S
    aux side(weight = 0.3) from stem: gap -> flatten -> linear classes
    gap -> flatten -> linear classes
"""
BAD = """\
network tiny:
    input 3x32x32
    conv 3x3 16 /2 S
    concat:
        branch: conv 1x1 8
        branch: conv 3x3 8
"""


@pytest.fixture
def good(write_spec):
    return write_spec("tiny.inc", GOOD)


@pytest.fixture
def bad(write_spec):
    return write_spec("bad.inc", BAD)


def test_ok_prints_the_summary(good, capsys):
    code, out, err = run(capsys, "check", good)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "tiny: ok"
    summary = dict(re.match(r"\s+(\w[\w ]*?)\s{2,}(.*)", line).groups() for line in lines[1:])
    # conv 3x3 3->16 (no bias, BN): 432 + 32; 1x1 16->8: 136; 1x1 16->8: 136; 3x3 8->8: 584; linear 16->10: 170
    assert summary["parameters"] == f"{432 + 32 + 136 + 136 + 584 + 170:,}"
    assert summary["layers"] == "8 (conv 4, concat 1, flatten 1, gap 1, linear 1)"
    assert summary["input"] == "3x32x32" and summary["output"] == "10"
    assert summary["aux heads"] == "side (weight 0.3, output 10)"
    net = incdsl.load(good)
    assert summary["parameters"] == f"{incdsl.count_costs(net).total.params:,}"


def test_spec_error_exits_1_with_diagnostics_on_stderr_only(bad, capsys):
    code, out, err = run(capsys, "check", bad)
    assert code == 1 and out == ""
    assert err.startswith(f"{bad}:6:9: error: concat branches disagree in spatial size\n")
    assert "6 |         branch: conv 3x3 8" in err and "Traceback" not in err


def test_warnings_go_to_stderr_and_keep_exit_0(write_spec, capsys):
    path = write_spec("w.inc", "network w:\n    input 3x32x32\n    conv 3x3 8 /2\n")
    code, out, err = run(capsys, "check", path)
    assert code == 0 and out.startswith("w: ok\n") and "  warnings    1" in out
    assert err.startswith(f"{path}:3:5: warning: valid padding drops 1 row(s) and 1 column(s)")


def test_set_and_input_override(good, capsys):
    code, out, _ = run(capsys, "check", good, "--set", "classes=5", "--input", "3x64x48")
    assert code == 0
    assert re.search(r"input\s+3x64x48", out) and re.search(r"output\s+5\n", out)


def test_ir_flag_prints_every_node(good, capsys):
    code, out, _ = run(capsys, "check", good, "--ir")
    assert code == 0
    assert "network tiny" in out
    assert "stem = conv(input)" in out and "side/linear_0 = linear(side/flatten_0)" in out
    assert out.count(" = ") == len(incdsl.load(good).graph)


@pytest.mark.parametrize("argv", [
    ["check"],                                   # no spec
    ["check", "x.inc", "--input", "3x32"],       # bad --input
    ["check", "x.inc", "--frobnicate"],          # unknown option
    ["chekc", "x.inc"],                          # unknown command
    [],                                          # no command
])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: incdsl" in err


def test_bad_set_is_a_usage_error(good, capsys):
    code, out, err = run(capsys, "check", good, "--set", "classes")
    assert code == 2 and out == "" and "--set expects NAME=VALUE" in err


@pytest.mark.parametrize("item", ["classes=10,dropout=0.5", "classes=10, dropout=0.5", "classes=10 dropout=0.5"])
def test_several_settings_in_one_set_are_a_usage_error(good, capsys, item):
    """They used to reach the spec as one odd value and fail there, at an unrelated `let`."""
    code, out, err = run(capsys, "check", good, "--set", item)
    assert code == 2 and out == ""
    assert "--set takes one NAME=VALUE" in err and "--set classes=10" in err


def test_unknown_override_is_a_spec_error(good, capsys):
    code, out, err = run(capsys, "check", good, "--set", "clases=5")
    assert code == 1 and out == ""
    assert "network `tiny` has no parameter `clases`" in err and "did you mean `classes`?" in err


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.inc", "no such spec file"),
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: tmp / "notes.txt", "no such spec file"),  # any path, .inc or not
])
def test_unreadable_spec_is_a_clean_error(tmp_path, capsys, make, message):
    code, out, err = run(capsys, "check", make(tmp_path))
    assert code == 1 and out == "" and message in err


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: incdsl check") and "--set NAME=VALUE" in out and "--input CxHxW" in out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"incdsl {incdsl.__version__}"


# --- the real process --------------------------------------------------------------------------

def test_process_ok_and_summary(good, run_incdsl):
    proc = run_incdsl("check", good)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("tiny: ok\n") and "parameters  1,490" in proc.stdout


def test_process_spec_error(bad, run_incdsl):
    proc = run_incdsl("check", bad)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "error: concat branches disagree in spatial size" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, code, stream, text", [
    (["--help"], 0, "stdout", "usage: incdsl"),
    (["--version"], 0, "stdout", "incdsl "),
    ([], 2, "stderr", "usage: incdsl"),
    (["check"], 2, "stderr", "the following arguments are required: spec"),
])
def test_process_usage(run_incdsl, argv, code, stream, text):
    proc = run_incdsl(*argv)
    assert proc.returncode == code
    assert text in getattr(proc, stream) and "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage",
    b"network t:\n    input 3x8x8\n    gap \x00\n",
    b"network t:\n    input 3x8x8\n    repeat 99999999999999: gap\n",
    b"network t:\n    input 3x8x8\n    conv 1x1 (" + b"9" * 5000 + b")\n",
    b"include \"nothing.inc\"\n",
], ids=["not-utf8", "nul-byte", "huge-repeat", "5000-digit-number", "missing-include"])
def test_process_never_shows_a_traceback(write_spec, run_incdsl, content):
    path = write_spec("x.inc", "")
    path.write_bytes(content)
    proc = run_incdsl("check", path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_every_cli_error_without_a_place_starts_with_the_program_name(capsys, tmp_path):
    """A spec diagnostic with no location (a missing file, an unknown --set) reads like the CLI's
    other one-line errors (`incdsl: error: ...`, usage and output problems), not `error: ...`."""
    spec = tmp_path / "good.inc"
    spec.write_text(GOOD)
    for argv in (("check", tmp_path / "gone.inc"), ("cost", spec, "--set", "nope=1"),
                 ("check", spec, "--input", "3x0x0")):
        try:
            code, _, err = run(capsys, *argv)
        except SystemExit as exit:  # argparse's own complaints leave through sys.exit
            code, err = exit.code, capsys.readouterr().err
        assert code in (1, 2)
        first = [line for line in err.splitlines() if "error:" in line][0]
        assert first.startswith("incdsl: error: "), err


def test_a_whole_float_given_with_set_is_named_in_the_hint(capsys):
    # `1e3` is a float (as in a spec); where a layer needs an integer, the hint names the setting
    nin = os.path.join(os.path.dirname(__file__), "..", "specs", "zoo", "cifar", "nin.inc")
    assert main(["check", nin, "--set", "classes=1e3"]) == 1
    err = capsys.readouterr().err
    assert "= hint: `classes` is given as the float 1000.0: give it as the whole number 1000; `conv` takes" in err
    assert "integer division" not in err  # no `/` was written
    assert main(["check", nin, "--set", "classes=1000"]) == 0
