"""A statement written where only a layer fits (after `->` in a chain, or after the `:` of an
inline body) is reported as such, at its word, with how it is written (issue 12: `conv 3x3 32 ->
repeat 2: highway_layer` gave a bare "unexpected `:`" or "unknown layer or block `repeat`")."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import incdsl
from incdsl.cli import main
from incdsl.diagnostics import IncdslError
from incdsl.lang.parse import _FORMS, misplaced_statement

# what follows the statement's word: a form that parses as a layer (`repeat 2: b` reads as the
# channel range 2:b), forms that fail to parse at various tokens, and the end of the line
TAILS = ["2: b", "2 as i: b", "n: b", ":", "(act = relu): b", "1 > 0: b", "d = 3"]


def error_of(line: str) -> object:
    text = f"network t:\n    input 3x8x8\n    {line}\n\nblock b:\n    conv 3x3 4 pad = 1\n"
    with pytest.raises(IncdslError) as info:
        incdsl.load(text)
    (diag,) = info.value.diagnostics
    return diag


@settings(max_examples=60, deadline=None)
@given(word=st.sampled_from(sorted(_FORMS)), tail=st.sampled_from(TAILS),
       head=st.sampled_from(["conv 3x3 4 pad = 1", "b", "conv 1x1 4 -> b"]))
def test_a_statement_after_an_arrow_is_named_at_its_word(word, head, tail):
    line = f"{head} -> {word} {tail}".rstrip()
    diag = error_of(line)
    assert diag.message == f"`{word}` cannot follow `->` in a chain"
    assert (diag.span.line, diag.span.col) == (3, 4 + len(head) + 5)
    assert f"`{word}` is written" in diag.hint and "new line" in diag.hint


def test_the_issues_example_from_the_command_line(tmp_path, capsys):
    spec = tmp_path / "bad.inc"
    spec.write_text("network t:\n    input 3x32x32\n    conv 3x3 32 -> repeat 2: highway_layer\n", encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "bad.inc:3:20: error: `repeat` cannot follow `->` in a chain" in err
    assert "`repeat 3:` or `repeat n as i:`" in err and "Traceback" not in err


def test_a_statement_in_an_inline_body():
    diag = error_of("repeat 2: repeat 2: b")
    assert diag.message == "`repeat` cannot follow `:` on the same line" and (diag.span.line, diag.span.col) == (3, 15)
    assert "on a line of its own, indented below" in diag.hint


@pytest.mark.parametrize("line, col", [("conv 3x3 32 -> repeat 2: b", 16), ("  conv -> add: b", 11),
                                       ("b -> b -> let x = 1", 11)])
def test_misplaced_statement_points_at_the_word(line, col):
    message, _, at = misplaced_statement(line, len(line) + 1)
    assert at == col and message.endswith("cannot follow `->` in a chain")


@pytest.mark.parametrize("line", ["conv 3x3 32 -> repeat_twice 2", "repeat 2: b", "b -> b  # -> repeat 2: b",
                                  "concat -> b", "conv 3x3 32 -> repeat 2 -> b"])
def test_other_lines_are_left_alone(line):
    assert misplaced_statement(line, len(line) + 1) is None


def test_a_join_word_alone_at_the_end_still_asks_for_its_body():
    assert error_of("conv 3x3 4 pad = 1 -> concat").message == "`concat` needs a body"
    assert error_of("conv 3x3 4 pad = 1 -> repeat").message == "`repeat` cannot follow `->` in a chain"


def test_a_misspelt_layer_keeps_its_suggestion():
    diag = error_of("conv 3x3 4 pad = 1 -> cnv 3x3 4")
    assert diag.message == "unknown layer or block `cnv`" and diag.hint == "did you mean `conv`?"
