"""`incdsl sample`: the space's size in index.json, exact where every JSON reader keeps it so,
readable and parseable beyond."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import incdsl
from incdsl.cli import main
from incdsl.commands.sample import EXACT_LIMIT, size_fields


def _space(tmp_path, choices: int, options: int):
    """A chain of `choices` convolutions, each width a choice of `options`: options**choices points."""
    lines = ["network wide(classes = 2):", "    input 1x2x2"]
    lines += [f"    conv 1x1 choice(range(1, {options + 1}))"] * choices
    lines += ["    gap -> flatten -> linear classes"]
    path = tmp_path / "wide.inc"
    path.write_text("\n".join(lines) + "\n")
    return path


def _index(tmp_path, capsys, path) -> dict:
    out = tmp_path / "out"
    code = main(["sample", str(path), "-n", "1", "-o", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "index.json").read_text())


def test_a_small_space_keeps_its_exact_size(tmp_path, capsys):
    index = _index(tmp_path, capsys, _space(tmp_path, 3, 4))
    assert index["size"] == 64 and isinstance(index["size"], int) and index["size_log10"] == round(math.log10(64), 4)


def test_a_huge_space_gets_a_short_size_and_its_log10(tmp_path, capsys):
    path = _space(tmp_path, 100, 10)  # 10**100 points
    index = _index(tmp_path, capsys, path)
    assert index["size"] == "1.00e+100"
    assert float(index["size"]) == 1e100 and index["size_log10"] == 100.0
    assert incdsl.space(str(path)).size == 10**100  # the exact size, from the API


def test_a_space_past_python_s_digit_limit_is_written(tmp_path, capsys):
    """2,500 choices of 60: about 10**4445 points, more digits than Python turns into text
    (an internal error before)."""
    index = _index(tmp_path, capsys, _space(tmp_path, 2500, 60))
    assert index["size"] == "2.39e+4445"
    assert index["size_log10"] == round(2500 * math.log10(60), 4)


@given(st.integers(min_value=1, max_value=10**400))
def test_size_fields_are_exact_up_to_2_53_and_agree_with_log10_beyond(n):
    fields = size_fields(n)
    assert json.loads(json.dumps(fields)) == fields
    if n <= EXACT_LIMIT:
        assert fields["size"] == n
    else:
        mantissa, exponent = fields["size"].split("e+")
        assert 1 <= float(mantissa) < 10 and len(mantissa) == 4
        assert abs(int(exponent) + math.log10(float(mantissa)) - math.log10(n)) < 0.0022  # 3 digits' rounding
    assert fields["size_log10"] == pytest.approx(math.log10(n), abs=1e-4)


def test_no_valid_point_prints_its_diagnostic_once(tmp_path, capsys):
    from incdsl.cli import main
    spec = tmp_path / "bad.inc"
    spec.write_text("network t(w = choice(8, 16)):\n    input 3x8x8\n    conv 3x3 w V -> conv 9x9 w V\n")
    assert main(["sample", str(spec), "-n", "1", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no valid point among the" in err and err.count("bad.inc:3:") == 1 and "warning" not in err
