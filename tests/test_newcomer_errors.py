"""A newcomer's slips in a spec, each answered with the place and a way out: a misspelt
statement, layer, block, argument or activation, a forgotten `input`, a tab or a stray
indentation, a missing include."""
from __future__ import annotations

import pytest

import incdsl


def diagnostic(tmp_path, body: str, top: str = ""):
    """The one diagnostic of loading `top` followed by a network whose body is `body`."""
    path = tmp_path / "s.inc"
    path.write_text(top + "network n:\n" + body)
    with pytest.raises(incdsl.IncdslError) as exc:
        incdsl.load(str(path))
    (diag,) = exc.value.diagnostics
    return diag


@pytest.mark.parametrize("body, top, message, at, hint", [
    ("    input 3x32x32\n    conact:\n        branch: conv 1x1 8\n", "",
     "unknown statement `conact`", (3, 5), "did you mean `concat`?"),
    ("    input 3x32x32\n    concat:\n        brnch: conv 1x1 8\n", "",
     "unknown statement `brnch`", (4, 9), "did you mean `branch`?"),
    ("    input 3x32x32\n    residul(scale = 0.2):\n        conv 1x1 3\n", "",
     "unknown statement `residul`", (3, 5), "did you mean `residual`?"),
    ("    input 3x32x32\n    b:\n        conv 1x1 3\n", "block b:\n    conv 1x1 3\n",
     "unknown statement `b`", (5, 5), "only `concat`, `add`, `residual`"),
    ("    input 3x32x32\n", "blok b:\n    conv 1x1 8\n",
     "unknown statement `blok`", (1, 1), "did you mean `block`?"),
    ("    input 3x32x32\n", "inclde \"lib.inc\"\n",
     "unknown statement `inclde`", (1, 1), "did you mean `include`?"),
])
def test_a_misspelt_statement_is_named(tmp_path, body, top, message, at, hint):
    diag = diagnostic(tmp_path, body, top)
    assert diag.message == message and (diag.span.line, diag.span.col) == at
    assert hint in diag.hint


def test_a_misspelt_network_keyword(tmp_path):
    path = tmp_path / "s.inc"
    path.write_text("netwrk n:\n    input 3x32x32\n")
    with pytest.raises(incdsl.IncdslError) as exc:
        incdsl.load(str(path))
    (diag,) = exc.value.diagnostics
    assert diag.message == "unknown statement `netwrk`" and diag.hint == "did you mean `network`?"


def test_a_valid_statement_keeps_its_own_message(tmp_path):
    """`repeat: x` is a `repeat` without a count, not an unknown statement."""
    diag = diagnostic(tmp_path, "    input 3x32x32\n    repeat: conv 1x1 3\n")
    assert diag.message.startswith("unexpected `:`")


def test_a_tab_is_named_when_indentation_goes_wrong(tmp_path):
    diag = diagnostic(tmp_path, "    input 3x32x32\n    conv 3x3 8\n\tconv 1x1 8\n")
    assert diag.message == "unexpected indentation" and (diag.span.line, diag.span.col) == (4, 2)  # shown as column 9
    assert any("indented with a tab" in n and "8 columns" in n for n in diag.notes)
    assert "`residual`" in diag.hint and "`if`" in diag.hint  # every statement with a body, not four of them


def test_spaces_only_get_no_tab_note(tmp_path):
    diag = diagnostic(tmp_path, "    input 3x32x32\n    conv 3x3 8\n        conv 1x1 8\n")
    assert diag.message == "unexpected indentation" and diag.notes == ()


def test_a_dedent_to_no_level_names_both_levels_it_may_mean(tmp_path):
    diag = diagnostic(tmp_path, "    input 3x32x32\n    concat:\n        branch: conv 1x1 8\n      branch: conv 1x1 8\n")
    assert diag.message == "indentation does not match any outer level"
    assert diag.hint == "indent it by 8 columns, as the lines above it, or by 4, as the statement that holds them"


def test_expected_tokens_are_words_not_terminal_names(tmp_path):
    diag = diagnostic(tmp_path, "    input 3x32x32\n    wth conv(bn = 0.001):\n        conv 1x1 3\n")
    assert "`compare`" not in " ".join(diag.notes) and "a comparison such as `==`" in " ".join(diag.notes)


@pytest.mark.parametrize("body, top, message, hint", [
    ("    input 3x32x32\n    conv2d 3x3 8\n", "", "unknown layer or block `conv2d`", "did you mean `conv`?"),
    ("    input 3x32x32\n    maxpol 3x3\n", "", "unknown layer or block `maxpol`", "`maxpool`"),
    ("    input 3x32x32\n    incepton\n", "", "unknown layer or block `incepton`", "did you mean `inception`?"),
    ("    input 3x32x32\n    conv 3x3 8 strid = 2\n", "", "`conv` has no argument `strid`", "did you mean `stride`?"),
    ("    input 3x32x32\n    conv 3x3 8 act = rleu\n", "", "unknown name `rleu`", "`relu`"),
    ("    input 3x32x32\n    b(fiters = 3)\n", "", "block `b` has no parameter `fiters`", "did you mean `filters`?"),
    ("    conv 3x3 8\n", "", "network `n` must start with its input", "input 3x224x224"),
    ("    input 3x32x32\n", 'include "nothere.inc"\n', "cannot read included file `nothere.inc`", "relative to the including file"),
])
def test_common_slips_get_a_way_out(tmp_path, body, top, message, hint):
    blocks = "\nblock inception:\n    conv 1x1 8\nblock b(filters):\n    conv 1x1 filters\n"
    path = tmp_path / "s.inc"
    path.write_text(top + "network n:\n" + body + blocks)
    with pytest.raises(incdsl.IncdslError) as exc:
        incdsl.load(str(path))
    diag = exc.value.diagnostics[0]
    assert diag.message == message and diag.span is not None and hint in diag.hint


def test_a_padding_in_lower_case_suggests_the_capital(tmp_path):
    diag = diagnostic(tmp_path, "    input 3x32x32\n    conv 3x3 8 /2 s\n")
    assert diag.message == "unknown name `s`" and diag.hint == "did you mean `S`?"


def test_did_you_mean_puts_a_case_difference_first():
    from incdsl.diagnostics import did_you_mean
    assert did_you_mean("v", ["S", "V", "relu"]) == "did you mean `V`?"
    assert did_you_mean("Relu", ["relu", "elu", "gelu", "relu6"]).startswith("did you mean `relu` or ")
    assert did_you_mean("xyz", ["relu"]) is None


def test_a_misspelt_set_names_where_the_value_came_from(capsys):
    from pathlib import Path
    from incdsl.cli import main
    spec = str(Path(__file__).resolve().parent.parent / "specs" / "inception_v4.inc")
    assert main(["check", spec, "--set", "clases=10"]) == 1
    err = capsys.readouterr().err
    assert "network `inception_v4` has no parameter `clases`" in err
    assert "given with `--set`" in err and "did you mean `classes`?" in err


@pytest.mark.parametrize("layer, col", [
    ("conv 3x3 8 pad = k / 2", 24),      # meant pad = k/2; read as pad = k and stride 2
    ("conv 3x3 8 / 2", 16),
    ("maxpool 3x3 /\t2", 17),
])
def test_a_slash_and_a_space_in_layer_arguments_is_refused(tmp_path, layer, col):
    """A layer's arguments are atoms and `/` before one is its stride: `pad = k / 2` silently gave
    a stride-2 conv with `pad = k`. A stride is written `/2`; a space after `/` is an error."""
    diag = diagnostic(tmp_path, f"    input 3x16x16\n    {layer}\n", "")
    assert diag.message.startswith("a space after `/`") and (diag.span.line, diag.span.col) == (3, col)
    assert "`/2`" in diag.hint and "(k / 2)" in diag.hint


@pytest.mark.parametrize("layer, stride, pad", [
    ("conv 3x3 8 /2 pad = 1", 2, 1),
    ("conv 3x3 8 pad = (k // 2) /(k // 2)", 2, 2),
    ("conv 3x3 8 /k pad = 1", 4, 1),
])
def test_strides_written_without_a_space_still_read(tmp_path, layer, stride, pad):
    path = tmp_path / "s.inc"
    path.write_text(f"network n(k = 4):\n    input 3x16x16\n    {layer}\n")
    (conv,) = incdsl.load(str(path)).layers
    attrs = incdsl.load(str(path)).graph.nodes[conv]["attrs"]
    assert attrs["stride"] == (stride, stride) and attrs["pad"] == (pad,) * 4
