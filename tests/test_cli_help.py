"""The command line's help and its answers to a newcomer's slips: an option misspelt, a stray
argument, a missing extra, a mistyped `--data`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from incdsl.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
V4 = str(ROOT / "specs" / "inception_v4.inc")
MINI = str(ROOT / "examples" / "mini_inception.inc")
COMMANDS = sorted(build_parser().command_parsers)


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, command, suggestion", [
    (["draw", V4, "--levl", "layer"], "draw", "did you mean `--level`"),
    (["cost", V4, "--formt", "csv"], "cost", "did you mean `--format`?"),
    (["train", MINI, "--optimiser", "sgd"], "train", "`--optimizer`"),
    (["sample", V4, "--max-try=3", "-o", "x"], "sample", "did you mean `--max-tries`"),
])
def test_a_misspelt_option_names_the_close_ones(argv, command, suggestion, capsys):
    err = usage_error(argv, capsys)
    assert err.startswith(f"usage: incdsl {command} ")  # the command's usage, not the top level's
    assert "unrecognized arguments: " + argv[2] in err and suggestion in err
    assert "`--help`" not in err


def test_a_stray_argument_is_named_without_a_guess(capsys):
    err = usage_error(["check", V4, "specs/googlenet.inc"], capsys)
    assert err.startswith("usage: incdsl check ")
    assert err.rstrip().endswith("unrecognized arguments: specs/googlenet.inc")


def test_a_usage_error_after_parsing_shows_the_commands_usage(capsys):
    assert main(["draw", V4, "--block", "inception_x", "--format", "dot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: incdsl draw ") and "did you mean `inception_c`" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_an_80_column_terminal(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "--budget-\n" not in out and "-\nepochs" not in out  # an option's name is never split


def test_help_keeps_the_recipes_table(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    recipes = out.split("recipes (--recipe NAME", 1)[1].splitlines()[1:]
    assert [line.split()[0] for line in recipes if line.startswith("  ") and not line.startswith("   ")] == \
        ["default", "googlenet", "inception_v3", "inception_v4"]


@pytest.mark.parametrize("command, argv", [
    ("train", ["train", MINI, "--data", "digits", "--out", "OUT"]),
    ("eval", ["eval", "--checkpoint", "OUT"]),
])
def test_without_pytorch_the_command_says_which_and_how_to_install(command, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as where it is not installed
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert main(argv) == 69  # sysexits' EX_UNAVAILABLE, as `draw` without Graphviz
    err = capsys.readouterr().err
    assert err.startswith(f"incdsl: error: `incdsl {command}` needs PyTorch and torchvision")
    assert "install with: pip install 'incdsl[train]'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("data, hint", [("digit", "did you mean `digits`?"), ("synthetc", "did you mean `synthetic`?"),
                                        ("./no_such_folder", "pass an ImageFolder directory")])
def test_a_mistyped_data_source(data, hint, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    assert main(["train", MINI, "--data", data, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"no such data folder: {data}" in err and hint in err


@pytest.mark.parametrize("argv, hint", [(["chek", V4], "did you mean `check`?"), (["--debug", "drow", V4], "`draw`"),
                                        (["zzz"], None)])
def test_a_misspelt_command_names_the_close_ones(argv, hint, capsys):
    err = usage_error(argv, capsys)
    assert f"unknown command `{[a for a in argv if not a.startswith('-')][0]}`" in err
    assert "(commands: check, cost, draw, compile, train, eval, sample, search)" in err
    assert (hint in err) if hint else "did you mean" not in err


def test_sampling_a_spec_without_choices_says_so(tmp_path, capsys):
    assert main(["sample", str(ROOT / "specs" / "googlenet.inc"), "-n", "2", "-o", str(tmp_path / "s")]) == 2
    assert "the spec has no `choice(...)`: it is one network" in capsys.readouterr().err


def test_a_data_file_is_not_a_folder(tmp_path, capsys):
    pytest.importorskip("torchvision")
    images = tmp_path / "images.zip"
    images.write_bytes(b"PK")
    assert main(["train", MINI, "--data", str(images), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"--data {images} is a file, not a folder" in err and "DIR/train/<class>/*.jpg" in err


def test_eval_without_a_checkpoint_names_its_own_option(tmp_path, capsys):
    pytest.importorskip("torchvision")
    assert main(["eval", "--checkpoint", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "wrote to --checkpoint" in err and "--resume" not in err


@given(st.integers(min_value=0, max_value=10**7))
def test_counted_nouns_agree_with_their_number(n):
    from incdsl.report.tables import counted
    text = counted(n, "epoch")
    assert text.endswith("epoch" if n == 1 else "epochs") and text.startswith(f"{n:,} ")


@pytest.mark.parametrize("option", [["--weights", "w.pt"], ["--seed", "3"], ["--max-memory", "1G"]])
def test_compile_refuses_onnx_options_without_onnx(option, tmp_path, capsys):
    out = tmp_path / "net.py"
    assert main(["compile", MINI, "-o", str(out), *option]) == 2
    assert f"{option[0]} is only used with --onnx" in capsys.readouterr().err
    assert not out.exists()


def test_onnx_without_its_packages_exits_69_naming_them(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as where it is not installed
    out = tmp_path / "net.onnx"
    assert main(["compile", MINI, "--onnx", str(out)]) == 69
    err = capsys.readouterr().err
    assert err.startswith("incdsl: error: ONNX export needs onnxscript") and "install with: pip install onnxscript" in err
    assert not out.exists()


def test_digits_without_scikit_learn_exits_69(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert main(["train", MINI, "--data", "digits", "--out", str(tmp_path / "run")]) == 69
    assert "--data digits needs scikit-learn" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, suggestion", [
    (["cost", V4, "--by", "blok"], "did you mean `block`?"),
    (["draw", V4, "--level", "netwrk"], "did you mean `network`?"),
    (["compile", MINI, "--optimize", "inferr"], "did you mean `infer`?"),
])
def test_a_misspelt_choice_names_the_close_ones(argv, suggestion, capsys):
    err = usage_error(argv, capsys)
    assert f"invalid choice: '{argv[3]}'" in err and err.rstrip().endswith(suggestion)


def test_a_choice_like_nothing_gets_no_guess(capsys):
    err = usage_error(["cost", V4, "--by", "zzz"], capsys)
    assert "invalid choice: 'zzz'" in err and "did you mean" not in err


def test_weights_from_a_missing_library_exits_69(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    out = tmp_path / "run"
    assert main(["train", MINI, "--data", "digits", "--weights", "timm:inception_v4", "--out", str(out)]) == 69
    err = capsys.readouterr().err
    assert "--weights timm:inception_v4 needs timm" in err and "install with: pip install timm" in err
    assert not out.exists()


def test_search_without_ray_exits_as_its_help_says(tmp_path, monkeypatch, capsys):
    """`search --help` said a missing extra exits 2; it exits 69, like every missing extra."""
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "69 without the `search` extra" in said and "or without the extra" not in said
    monkeypatch.setitem(sys.modules, "ray", None)
    space = tmp_path / "space.inc"
    space.write_text("network s(w = choice(4, 8)):\n    input 3x8x8\n    conv 3x3 w S -> gap -> flatten -> linear 2\n")
    assert main(["search", str(space), "--data", "synthetic", "--out", str(tmp_path / "exp")]) == 69
    assert "install with: pip install 'incdsl[search]'" in capsys.readouterr().err
