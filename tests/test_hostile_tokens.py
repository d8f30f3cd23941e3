"""The files of one spec hold at most `MAX_TOKENS` tokens together, counted before parsing.

Lark's parser takes about 15 us a token here: within the byte caps (1 MiB a file, 8 MiB in all)
a spec of `1,1,1,...` parsed for minutes. The count refuses it at once, at the first token past
the limit, in whichever file that is.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import incdsl
from incdsl.diagnostics import IncdslError
from incdsl.lang.parse import MAX_TOKENS, _parser, count_tokens

REPO = Path(__file__).resolve().parent.parent
HEAD = "network t:\n    input 3x8x8\n"


def load_error(path) -> IncdslError:
    with pytest.raises(IncdslError) as info:
        incdsl.load(str(path))
    return info.value


def lark_tokens(text: str) -> int:
    """The parser's own tokens, layout tokens aside."""
    return sum(1 for t in _parser().lex(text + "\n") if t.type not in ("_NL", "_INDENT", "_DEDENT"))


def test_a_spec_past_the_limit_fails_at_its_first_token_past_it(tmp_path):
    # `network t : input 3x8x8 conv 1x1 choice (`: 9 tokens, then `1` `,` `1` `,` ... one per column
    ones = MAX_TOKENS // 2
    path = tmp_path / "big.inc"
    path.write_text(HEAD + "    conv 1x1 choice(" + ",".join(["1"] * ones) + ")\n")
    err = load_error(path)
    d = err.diagnostics[0]
    assert d.message == f"spec too large: more than {MAX_TOKENS:,} tokens"
    first = len("    conv 1x1 choice(") + 1  # the column of the list's first token, token 10
    assert (d.span.line, d.span.col) == (3, first + MAX_TOKENS + 1 - 10)
    assert "range(...)" in d.hint and "repeat" in d.hint


@pytest.mark.slow  # parses 200,000 tokens: about 4 s
def test_a_spec_at_the_limit_is_parsed(tmp_path):
    ones = (MAX_TOKENS - 9) // 2  # 9 tokens, then 2 * ones - 1 in the list and `)`: the limit or one under
    path = tmp_path / "at.inc"
    path.write_text(HEAD + "    conv 1x1 choice(" + ",".join(["1"] * ones) + ")\n")
    assert count_tokens(path.read_text(), "at.inc") <= MAX_TOKENS
    err = load_error(path)  # parsed, then refused for what it is
    assert err.diagnostics[0].message == "this spec is a search space: `choice` has no single value here"


def test_comments_do_not_count(tmp_path):
    text = HEAD + "    # a comment of many words , , , ,\n" * (MAX_TOKENS // 5) + "    conv 1x1 4\n"
    assert count_tokens(text, "c.inc") == 5 + 3


def test_the_files_of_a_spec_share_the_limit(tmp_path):
    (tmp_path / ".incdsl-root").write_text("")
    half = "block b{}:\n    conv 1x1 choice(" + ",".join(map(str, range(1, MAX_TOKENS // 4))) + ")\n"
    (tmp_path / "lib1.inc").write_text(half.format(1))
    (tmp_path / "lib2.inc").write_text(half.format(2))
    (tmp_path / "net.inc").write_text('include "lib1.inc"\ninclude "lib2.inc"\n' + HEAD + "    b1 -> b2\n")
    for name in ("lib1.inc", "lib2.inc"):  # each alone is well within
        assert count_tokens((tmp_path / name).read_text(), name) < MAX_TOKENS * 0.6
    err = load_error(tmp_path / "net.inc")
    d = err.diagnostics[0]
    assert d.message == f"spec too large: more than {MAX_TOKENS:,} tokens"
    assert d.span.file.endswith("lib2.inc")
    assert any("the files read before this one hold" in n for n in d.notes)


def test_the_cli_says_so_in_one_located_line(tmp_path, capsys):
    from incdsl.cli import main
    path = tmp_path / "big.inc"
    path.write_text(HEAD + "    conv 1x1 choice(" + ",".join(["7"] * MAX_TOKENS) + ")\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].endswith(f"error: spec too large: more than {MAX_TOKENS:,} tokens")
    assert "Traceback" not in err


@pytest.mark.parametrize("spec", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "specs").rglob("*.inc")))
def test_the_count_never_undercounts_the_parser_and_stays_close(spec):
    text = (REPO / spec).read_text()
    ours, lark = count_tokens(text, spec), lark_tokens(text)
    assert lark <= ours <= lark * 1.1  # a float such as 1e-3 may count as two or three
    assert ours < MAX_TOKENS // 100  # the limit is far above real specs


@given(st.lists(st.sampled_from(["conv", "1x1", "64", "/2", "S", "->", "(", ")", ",", "0.5", "2.5e-3", "==",
                                 "//", "in.c", '"a.inc"', "# note", "relu"]), max_size=40))
def test_the_count_is_at_least_the_parsers_on_any_token_soup(words):
    text = " ".join(words)
    ours = count_tokens(text.replace("#", "\n#") + "\n", "soup.inc")
    try:
        lark = lark_tokens(text.replace("#", "\n#"))
    except Exception:  # not lexable: the parser reports it, the count does not matter
        return
    assert ours >= lark
