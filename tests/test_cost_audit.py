"""An audit of `incdsl cost` against README: budgets and their exit codes whatever the other
options (`--convention all` included), what a rejected budget probably meant, and the hint
for an output format written as an option (`--json`)."""
from __future__ import annotations

import json

import pytest

from incdsl.cli import main
from incdsl.report.tables import parse_amount
from speclib import run_cli as run

SPEC = """network tiny(classes = 10):
    input 3x32x32
    conv 3x3 16 S
    conv 3x3 32 /2 S
    gap -> flatten -> linear classes
"""
MACS = 3 * 16 * 9 * 32 * 32 + 16 * 32 * 9 * 16 * 16 + 32 * 10  # 1,622,336


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.inc"
    path.write_text(SPEC)
    return str(path)


def test_the_spec_costs_what_the_tests_assume(spec, capsys):
    code, out, _ = run(capsys, "cost", spec, "--format", "json")
    assert code == 0 and json.loads(out)["total"]["macs"] == MACS


@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_convention_all_keeps_the_budget(spec, capsys, fmt):
    code, out, err = run(capsys, "cost", spec, "--convention", "all", "--format", fmt, "--max-macs", "1M")
    assert code == 3 and f"incdsl: over budget: macs {MACS:,} > 1,000,000" in err
    assert "fvcore" in out  # the listing is still printed
    code, _, err = run(capsys, "cost", spec, "--convention", "all", "--format", fmt, "--max-macs", "1.7M")
    assert code == 0 and err == ""


@pytest.mark.parametrize("budget, code", [("1622336", 0), ("1622335", 3), ("1.622336M", 0), ("1.6M", 3),
                                          ("0.002G", 0), ("2m", 0)])
def test_budgets_are_inclusive_in_every_spelling(spec, capsys, budget, code):
    assert run(capsys, "cost", spec, "--max-macs", budget)[0] == code


@pytest.mark.parametrize("text, hint", [("2e9", "write `2G` for 2e9"), ("1.5e6", "write `1.5M` for 1.5e6"),
                                        ("3e4", "write `30K` for 3e4"), ("12E0", "write `12` for 12E0"),
                                        ("1e31", "budgets go up to 1e+30"),
                                        ("13GB", "write `13G`: a budget counts parameters or operations"),
                                        ("25mb", "write `25M`"), ("-1", "a budget is a count from 0 up"),
                                        ("-5M", "a budget is a count from 0 up")])
def test_a_rejected_budget_says_what_it_probably_meant(text, hint):
    with pytest.raises(ValueError) as info:
        parse_amount(text)
    assert str(info.value).startswith(f"expected a number with an optional K, M, G or T suffix, got {text!r}; ")
    assert str(info.value).endswith(hint) or hint in str(info.value)


@pytest.mark.parametrize("text", ["junk", "1e-3", "1e999", "", "0x10"])
def test_no_guess_where_there_is_none(text):
    with pytest.raises(ValueError) as info:
        parse_amount(text)
    assert ";" not in str(info.value)


def test_a_scientific_budget_is_one_usage_error_line_with_the_fix(spec, capsys):
    code, out, err = run(capsys, "cost", spec, "--max-macs", "2e9")
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == ("incdsl: error: --max-macs: expected a number with an optional K, M, G or T "
                                    "suffix, got '2e9'; write `2G` for 2e9")


@pytest.mark.parametrize("arg, hint", [("--json", "`--format json`"), ("--latex", "`--format latex`"),
                                       ("--stage", "`--by stage`")])
def test_a_choice_written_as_an_option_names_the_option(spec, capsys, arg, hint):
    with pytest.raises(SystemExit) as info:
        main(["cost", spec, arg])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.splitlines()[-1].endswith(f"did you mean {hint}?")


def test_against_with_convention_all_is_refused_not_dropped(spec, tmp_path, capsys):
    table = tmp_path / "paper.csv"
    table.write_text("scope,params\n*,1\n")
    code, out, err = run(capsys, "cost", spec, "--convention", "all", "--against", str(table))
    assert code == 2 and out == ""  # the listing was printed and the table never read
    assert "--against compares a cost table, which --convention all does not print" in err.splitlines()[-1]


@pytest.mark.parametrize("options, named", [
    (["--batch", "8"], "--batch shapes"), (["--aux"], "--aux shapes"), (["--by", "layer"], "--by shapes"),
    (["--dtype", "bf16", "--batch", "2"], "--batch, --dtype shape"),
])
def test_table_options_with_convention_all_are_refused_not_ignored(spec, capsys, options, named):
    code, out, err = run(capsys, "cost", spec, "--convention", "all", *options)
    assert code == 2 and out == ""  # the listing (batch 1, no aux) was printed as if they applied
    assert err.splitlines()[-1].startswith(f"incdsl: error: {named} the cost table, which --convention all does not print")


def test_table_options_at_their_defaults_go_with_convention_all(spec, capsys):
    code, out, _ = run(capsys, "cost", spec, "--convention", "all", "--by", "block", "--batch", "1", "--dtype", "float32")
    assert code == 0 and "what each counter prints" in out
