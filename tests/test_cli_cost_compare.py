"""`incdsl cost`: --batch columns, two specs side by side, --convention, through the CLI."""
import json
import os

import pytest

from speclib import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A = """network tiny(classes = 10):
    input 3x32x32
    conv 3x3 16 /2 bn = 0.001
    repeat 2: mixed(n = 8)
    gap -> flatten -> linear classes
block mixed(n):
    concat:
        branch: conv 1x1 n
        branch: conv 1x1 n -> conv 3x3 n S
"""
B = A.replace("repeat 2: mixed(n = 8)", "repeat 3: mixed(n = 16)")


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "a.inc").write_text(A)
    (tmp_path / "b.inc").write_text(B)
    return str(tmp_path / "a.inc"), str(tmp_path / "b.inc")


def test_batch_scales_activations_and_memory_and_says_macs_are_per_image(specs, capsys):
    _, one, _ = run(capsys, "cost", specs[0], "--format", "json")
    _, eight, _ = run(capsys, "cost", specs[0], "--format", "json", "--batch", "8")
    one, eight = json.loads(one), json.loads(eight)
    for key in eight["per_batch"]:
        assert eight["total"][key] == 8 * one["total"][key]
    for key in eight["per_image"]:
        assert eight["total"][key] == one["total"][key]
    _, text, _ = run(capsys, "cost", specs[0], "--batch", "8")
    assert "MACs/image" in text and "activations x8" in text and "per image" in text
    _, md, _ = run(capsys, "cost", specs[0], "--batch", "8", "--format", "markdown")
    assert "MACs/image" in md.splitlines()[0]
    _, plain, _ = run(capsys, "cost", specs[0])
    assert "MACs/image" not in plain  # batch 1: nothing to tell apart


def test_two_specs_side_by_side(specs, capsys):
    code, out, _ = run(capsys, "cost", *specs, "--format", "json")
    assert code == 0
    d = json.loads(out)
    _, a, _ = run(capsys, "cost", specs[0], "--format", "json")
    _, b, _ = run(capsys, "cost", specs[1], "--format", "json")
    a, b = json.loads(a)["total"], json.loads(b)["total"]
    assert d["total"]["params_a"] == a["params"] and d["total"]["macs_b"] == b["macs"]
    assert d["total"]["macs_delta"] == b["macs"] - a["macs"]
    names = [r["name"] for r in d["rows"]]
    assert names.index("mixed.1") < names.index("mixed.2") < names.index("gap_0")  # B-only row in B's place
    only_b = next(r for r in d["rows"] if r["name"] == "mixed.2")
    assert only_b["params_a"] is None and only_b["params_delta"] == only_b["params_b"] > 0
    assert sum(r["macs_delta"] for r in d["rows"]) == d["total"]["macs_delta"]


@pytest.mark.parametrize("fmt,marker", [("text", "Δ MACs"), ("markdown", "|---:|"), ("latex", r"$\Delta$"),
                                        ("csv", "params_delta")])
def test_diff_formats(specs, capsys, fmt, marker):
    code, out, _ = run(capsys, "cost", *specs, "--format", fmt)
    assert code == 0 and marker in out and "mixed.2" in out.replace("\\_", "_")


def test_diff_refuses_one_spec_options(specs, capsys):
    for flag in (["--max-macs", "1G"], ["--convention", "thop"]):
        code, _, err = run(capsys, "cost", *specs, *flag)
        assert code == 2 and "one spec" in err


def test_convention_column_and_total(specs, capsys):
    code, out, _ = run(capsys, "cost", specs[0], "--convention", "fvcore", "--format", "json")
    report = json.loads(out)
    # fvcore adds 2 per batch-norm element of the stem conv and the global pool's input
    stem = next(r for r in report["rows"] if r["name"] == "conv_0")
    assert stem["convention"] == stem["macs"] + 2 * 16 * 15 * 15
    assert report["convention"]["total"] == sum(r["convention"] for r in report["rows"])
    _, text, _ = run(capsys, "cost", specs[0], "--convention", "thop")
    assert "thop" in text.splitlines()[1] and "it counts" in text


def test_convention_all_lists_every_counter(capsys):
    code, out, _ = run(capsys, "cost", os.path.join(ROOT, "specs", "googlenet.inc"), "--convention", "all",
                       "--format", "json")
    got = {c["convention"]: c["total"] for c in json.loads(out)["conventions"]}
    assert got["ptflops"] == 1_601_439_480 and got["flop_counter"] == 2 * got["incdsl"] == 3_165_343_744


def test_unknown_convention_is_a_usage_error(specs, capsys):
    code, _, err = run(capsys, "cost", specs[0], "--convention", "fvcre")
    assert code == 2 and "did you mean `fvcore`" in err and "Traceback" not in err
