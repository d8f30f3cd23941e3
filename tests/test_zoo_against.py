"""specs/tables/zoo.csv: each paper's own counts for the zoo, compared by `cost --against`.

Every row is about one zoo configuration (its `network` and `set` cells), the rows the layers
cannot reproduce are exactly the known ones, and each of those is explained in its spec.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

import incdsl
from incdsl.report.against import applies, compare, read_table
from incdsl.cli import main
from zoolib import CLASSIC as MODELS, CONVNEXT, MOBILE, SHUFFLE_REGNET, TIMM

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "specs" / "tables" / "zoo.csv"
ZOO = ROOT / "specs" / "zoo"

# the rows (by model cell and printed value) that the specs do not reproduce, and the spec that says why
EXPLAINED = {("AlexNet", "60M"): "alexnet.inc", ("ResNet-50", "3.8G"): "resnet50.inc",
             ("ResNet-101", "7.6G"): "resnet101.inc", ("ResNet-152", "11.3G"): "resnet152.inc",
             ("MobileNetV3-Large", "5.4M"): "mobilenet_v3_large.inc", ("ShuffleNet V2 1x", "146M"): "shufflenet_v2.inc",
             ("MobileNetV3-Large 0.75", "4.0M"): "mobilenet_v3_large.inc",
             ("MobileNetV3-Small 0.75", "2.0M"): "mobilenet_v3_small.inc"}


def configurations():
    """Every zoo configuration: (name, spec, --set values)."""
    return ([(name, spec, params) for name, (spec, params, *_) in MODELS.items()]
            + [(name, spec, {}) for name, (spec, *_) in TIMM.items()]
            # every width and size: a row must not apply to a configuration it is not about
            + [(name, spec, params) for name, (spec, params, *_) in MOBILE.items()]
            + [(name, spec, params) for name, (spec, params, *_) in SHUFFLE_REGNET.items()]
            + [(name, spec, params) for name, (spec, params, *_) in CONVNEXT.items()])


@pytest.fixture(scope="module")
def verdicts():
    """(model cell, printed value) -> the verdicts of every configuration the row applies to."""
    table, out = read_table(str(TABLE)), {}
    rows = {r["_line"]: r for r in table.rows}
    for _, spec, params in configurations():
        net = incdsl.load(str(ZOO / spec), params=params or None)
        for rec in compare(table, net, incdsl.count_costs(net)):
            row = rows[rec["line"]]
            out.setdefault((row["model"], row["params"] or row["ops"]), []).append(rec["verdict"])
    return out


def cifar_networks() -> set[str]:
    """The networks of specs/zoo/cifar/, whose rows tests/test_zoo_cifar_*.py check."""
    found = (re.search(r"^network (\w+)", p.read_text(encoding="utf-8"), re.M) for p in (ZOO / "cifar").glob("*.inc"))
    return {m.group(1) for m in found if m}


def test_every_row_is_about_a_zoo_configuration(verdicts):
    with open(TABLE, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["network"] not in cifar_networks()]
    assert {(r["model"], r["params"] or r["ops"]) for r in rows} == set(verdicts)
    assert all(r["source"] for r in rows)  # each number says where the paper prints it


def test_only_the_explained_rows_differ_and_their_specs_say_why(verdicts):
    inconsistent = {key for key, found in verdicts.items() if "INCONSISTENT" in found}
    assert inconsistent == set(EXPLAINED)
    for spec in EXPLAINED.values():
        assert "zoo.csv" in (ZOO / spec).read_text(encoding="utf-8")
    assert all(found == ["matches"] * len(found) for key, found in verdicts.items() if key not in EXPLAINED)


def test_a_row_applies_to_its_network_and_parameter_values():
    net = incdsl.load(str(ZOO / "vgg.inc"), params=dict(n1=2, n2=2, n3=4, n4=4, n5=4))
    assert applies({"network": "vgg", "set": "n1=2 n2=2 n3=4 n4=4 n5=4"}, net)
    assert applies({"set": "n3=4 bn=off"}, net)  # a row naming no network: the values it names
    # a row naming its network is about its defaults but for its `set` cell: n1, n2, n4 and n5 differ
    assert not applies({"network": "vgg", "set": "n3=4 bn=off"}, net)
    assert not applies({"network": "vgg", "set": "n1=1 n2=1 n3=2 n4=2 n5=2"}, net)
    assert not applies({"network": "vgg", "set": "bn=1e-5"}, net)
    assert not applies({"network": "resnet50"}, net)
    assert not applies({"set": "depth=3"}, net)  # a parameter the network does not have


def test_cost_against_shows_the_rows_of_the_configuration(capsys):
    args = ["cost", str(ZOO / "vgg.inc"), "--against", str(TABLE), "--format", "json"]
    for k, v in dict(n1=2, n2=2, n3=4, n4=4, n5=4).items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["against"]
    assert [(r["paper_params"] if "paper_params" in r else r["paper_ops"], r["verdict"]) for r in rows] == [
        ("144M", "matches"), ("19.6G", "matches")]
    assert rows[0]["params"] == 143_667_240  # `*`: the network's totals


def test_cost_against_says_why_a_row_is_inconsistent(capsys):
    assert main(["cost", str(ZOO / "resnet152.inc"), "--against", str(TABLE)]) == 0
    out = capsys.readouterr().out
    assert "ops: the paper prints 11.3G, its layers give 11,513,626,624 (x1.02)" in out
    assert "0 of 1 compared rows reproduced" in out


def test_a_bad_set_cell_is_reported_where_it_is(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("network,set,scope,params\nvgg,n1:2,*,133M\n")
    assert main(["cost", str(ZOO / "vgg.inc"), "--against", str(table)]) == 1
    err = capsys.readouterr().err
    assert "t.csv:2:2: error: cannot read 'n1:2' as a parameter value such as n1=2" in err


@pytest.mark.parametrize("spec, settings, rows", [
    ("resnet50.inc", {"classes": 10}, 0),        # the ImageNet rows are about 1000 classes
    ("resnet50.inc", {"classes": 1000}, 2),      # given, but the default's value
    ("vgg.inc", {"bn": False}, 1),              # the default `off`
    ("vgg.inc", {"dropout": 0.3}, 0),            # another configuration, even if the counts are the same
    ("mobilenet_v2.inc", {"width": 0.5}, 0),     # the paper's row is width 1
    ("mobilenet_v2.inc", {"width": 1}, 1),       # 1 and 1.0 are one value
    ("shufflenet_v2.inc", dict(c2=48, c3=96, c4=192), 0),
    ("regnet_x_400mf.inc", {"g": 8}, 0),
])
def test_rows_naming_a_network_apply_to_its_default_configuration_only(spec, settings, rows):
    net = incdsl.load(str(ZOO / spec), params=settings)
    applied = [r for r in read_table(str(TABLE)).rows if applies(r, net)]
    assert len(applied) == rows
    assert net.changed_params == tuple(k for k in settings if rows == 0)


def test_cost_against_says_why_no_row_was_compared(capsys):
    assert main(["cost", str(ZOO / "resnet50.inc"), "--set", "classes=10", "--against", str(TABLE)]) == 0
    out = capsys.readouterr().out
    assert "0 of 0 compared rows reproduced" in out and "INCONSISTENT" not in out
    assert ("not compared: rows 10, 11 of the table are about `resnet50` in another configuration "
            "(the spec's defaults but for the row's `set` cell; this one sets classes=10)") in out
    assert main(["cost", str(ZOO / "resnet50.inc"), "--set", "classes=10", "--against", str(TABLE),
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["against"] == [] and report["against_other_configurations"] == [10, 11]
    assert main(["cost", str(ZOO / "resnet50.inc"), "--against", str(TABLE)]) == 0
    assert "not compared" not in capsys.readouterr().out  # rows compared: nothing to explain
