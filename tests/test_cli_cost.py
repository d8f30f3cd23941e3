"""`incdsl cost`: groupings, formats, budgets and reference tables, through the CLI."""
import csv
import io
import json

import pytest

from incdsl.report.tables import parse_amount
from speclib import run_cli as run

SPEC = """network tiny(classes = 10):
    input 3x32x32
    with conv(bn = 0.001, pad = S):
        conv 3x3 32 /2 as stem
        repeat 3 as i: mixed(n = 8 + 8 * i)
    aux side(weight = 0.3) from stem: gap -> flatten -> linear classes
    gap -> flatten -> linear classes
block mixed(n):
    concat:
        branch: conv 1x1 n
        branch: conv 1x1 n -> conv 3x3 n
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.inc"
    path.write_text(SPEC)
    return str(path)


def test_json_totals_and_rows(spec, capsys):
    code, out, _ = run(capsys, "cost", spec, "--format", "json", "--by", "block")
    data = json.loads(out)
    assert code == 0
    assert data["network"] == "tiny" and data["input"] == "3x32x32"
    assert [r["name"] for r in data["rows"]] == ["stem", "mixed.0", "mixed.1", "mixed.2", "gap_0", "flatten_0",
                                                  "linear_0", "side"]
    trunk = [r for r in data["rows"] if not r["aux"]]
    assert data["total"]["params"] == sum(r["params"] for r in trunk)
    assert data["total"]["macs"] == sum(r["macs"] for r in trunk)
    assert data["total"]["flops"] == 2 * data["total"]["macs"]
    # mixed.1: n = 16 from 16 channels in: 1x1 (16*16 + 32) + 1x1 (16*16 + 32) + 3x3 (9*16*16 + 32)
    mixed1 = next(r for r in data["rows"] if r["name"] == "mixed.1")
    assert mixed1["params"] == 2 * (256 + 32) + 9 * 256 + 32
    assert mixed1["output"] == "32x16x16"


def test_aux_flag_adds_the_head_to_totals(spec, capsys):
    _, plain, _ = run(capsys, "cost", spec, "--format", "json")
    _, with_aux, _ = run(capsys, "cost", spec, "--format", "json", "--aux")
    assert json.loads(with_aux)["total"]["params"] - json.loads(plain)["total"]["params"] == 32 * 10 + 10


def test_stage_rows_group_repeats(spec, capsys):
    _, out, _ = run(capsys, "cost", spec, "--format", "csv", "--by", "stage")
    rows = list(csv.DictReader(io.StringIO(out)))
    mixed = next(r for r in rows if r["name"] == "mixed")
    assert mixed["kind"] == "3 x mixed"
    assert rows[-1]["name"] == "total"


def test_memory_scales_with_batch_and_dtype(spec, capsys):
    _, a, _ = run(capsys, "cost", spec, "--format", "json")
    _, b, _ = run(capsys, "cost", spec, "--format", "json", "--batch", "8", "--dtype", "bf16")
    ta, tb = json.loads(a)["total"], json.loads(b)["total"]
    assert tb["memory_bytes"] == ta["memory_bytes"] // 4 * 2 * 8
    assert tb["activations"] == 8 * ta["activations"]


@pytest.mark.parametrize("fmt, marker", [("markdown", "| name |"), ("latex", "\\begin{tabular}"), ("text", "total")])
def test_formats(spec, capsys, fmt, marker):
    code, out, _ = run(capsys, "cost", spec, "--format", fmt)
    assert code == 0 and marker in out and "mixed.2" in out.replace("\\_", "_")


def test_budgets(spec, capsys):
    code, _, err = run(capsys, "cost", spec, "--max-params", "1M", "--max-macs", "1G")
    assert code == 0 and err == ""
    code, _, err = run(capsys, "cost", spec, "--max-params", "1K", "--max-macs", "10")
    assert code == 3
    assert "over budget: params" in err and "over budget: macs" in err
    code, _, err = run(capsys, "cost", spec, "--max-macs", "lots")
    assert code == 2 and "--max-macs" in err


def test_spec_error_beats_budget(tmp_path, capsys):
    bad = tmp_path / "bad.inc"
    bad.write_text("network b:\n    input 3x8x8\n    conv 9x9 4\n")
    code, out, err = run(capsys, "cost", str(bad), "--max-params", "1")
    assert code == 1 and out == "" and "bad.inc:3:5: error:" in err


def test_input_override_reinfers_shapes(spec, capsys):
    _, out, _ = run(capsys, "cost", spec, "--format", "json", "--input", "3x64x64")
    data = json.loads(out)
    assert data["input"] == "3x64x64"
    assert next(r for r in data["rows"] if r["name"] == "stem")["output"] == "32x32x32"


def test_output_file_is_written_whole(spec, tmp_path, capsys):
    target = tmp_path / "cost.md"
    code, out, _ = run(capsys, "cost", spec, "--format", "markdown", "-o", str(target))
    assert code == 0 and out == "" and target.read_text().startswith("| name |")


def test_against_marks_matching_and_inconsistent_rows(spec, tmp_path, capsys):
    table = tmp_path / "paper.csv"
    table.write_text("type,scope,params,ops,output size\n"
                     "convolution,stem,0.9K,0.2M,16x16x32\n"
                     "module,mixed.0,9K,,\n"
                     "pool,,,\n")
    code, out, _ = run(capsys, "cost", spec, "--against", str(table))
    assert code == 0
    lines = {l.split()[0]: l for l in out.splitlines() if l[:1].isdigit()}
    assert lines["2"].endswith("matches")
    assert lines["3"].endswith("INCONSISTENT")
    assert "the paper prints 9K" in out
    assert "1 of 2 compared rows reproduced" in out
    _, js, _ = run(capsys, "cost", spec, "--against", str(table), "--format", "json")
    verdicts = [r["verdict"] for r in json.loads(js)["against"]]
    assert verdicts == ["matches", "INCONSISTENT", "not compared"]


def test_against_bad_table(spec, tmp_path, capsys):
    table = tmp_path / "bad.csv"
    table.write_text("scope,params\nstem,lots\n")
    code, out, err = run(capsys, "cost", spec, "--against", str(table))
    assert code == 1 and out == "" and "bad.csv:2:2: error:" in err


@pytest.mark.parametrize("text, value", [("25M", 25_000_000), ("13G", 13_000_000_000), ("1.5K", 1500),
                                         ("42679816", 42679816), ("2k", 2000)])
def test_parse_amount(text, value):
    assert parse_amount(text) == value
