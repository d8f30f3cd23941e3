"""Every CIFAR zoo spec either has a stated count in specs/tables/zoo.csv or says where one was
looked for (issue 12: a paper's or a widely used port's own count for each configuration no
library ships, or the sources checked when none states one).

A spec without a row must carry a `Checked for a stated count:` sentence in its header comment
naming at least one source (an arXiv paper or a repository, owner/name) and saying that the
table has no row; a spec with a row must point at the table.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

import incdsl
from incdsl.report.against import compare, read_table

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT / "specs" / "zoo" / "cifar"
TABLE = ROOT / "specs" / "tables" / "zoo.csv"
SPECS = sorted(p.name for p in CIFAR.glob("*.inc"))
MARKER = "Checked for a stated count:"
# a source as the comments name one: an arXiv number or a GitHub owner/name
SOURCE = re.compile(r"arXiv \d{4}\.\d{4,5}|\b[\w.-]+/[\w.-]+\b")


def header(spec: str) -> str:
    """The spec's leading comment as one paragraph (wrapped lines joined)."""
    lines = []
    for line in (CIFAR / spec).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(lines)


def network_name(spec: str) -> str:
    return re.search(r"^network (\w+)", (CIFAR / spec).read_text(encoding="utf-8"), re.M).group(1)


def networks_with_rows() -> set[str]:
    with open(TABLE, newline="", encoding="utf-8") as f:
        return {r["network"] for r in csv.DictReader(f)}


def checked_sources(text: str) -> str | None:
    """The sentence after the marker, up to the table's `no row`, or None without a marker."""
    m = re.search(re.escape(MARKER) + r"(.*?)no row", text)
    return m.group(1) if m else None


def test_the_cifar_zoo_is_all_here():
    assert len(SPECS) == 24


@pytest.mark.parametrize("spec", SPECS)
def test_each_spec_has_a_row_or_names_the_sources_checked(spec):
    text = header(spec)
    if network_name(spec) in networks_with_rows():
        assert "zoo.csv" in text, f"{spec} has a row in zoo.csv but its comment does not say so"
        return
    checked = checked_sources(text)
    assert checked is not None, f"{spec} has no zoo.csv row and no `{MARKER}` sentence"
    assert SOURCE.search(checked), f"{spec}: the sources checked name no paper or repository"
    assert "zoo.csv" in text


def test_the_marker_is_read_as_written():
    assert checked_sources(f"x {MARKER} the paper (arXiv 1605.06465); none states one, so zoo.csv has no row")
    assert checked_sources("the paper states none, so zoo.csv has no row") is None
    assert not SOURCE.search(" the paper; none states one, so ")


def test_specs_without_a_row_are_the_ones_whose_sources_state_none():
    without = {spec for spec in SPECS if network_name(spec) not in networks_with_rows()}
    assert without == {"inception_bn.inc", "prelu_net_a.inc", "swapout_v2_32_w4.inc", "wresnet_d.inc",
                       "pyramidsepdrop182_a150.inc"}


def test_nin_reproduces_the_ports_stated_counts():
    table = read_table(str(TABLE))
    rows = {r["_line"]: r for r in table.rows}
    net = incdsl.load(str(CIFAR / "nin.inc"))
    found = compare(table, net, incdsl.count_costs(net))
    assert [(rows[r["line"]]["params"], r["params"], r["verdict"]) for r in found] == [
        ("0.97M", 966_986, "matches"), ("966986", 966_986, "matches")]
    sources = [rows[r["line"]]["source"] for r in found]
    assert "BIGBALLON/cifar-10-cnn" in sources[0] and "osmr/imgclsmob" in sources[1]


def test_the_nin_row_is_about_the_form_without_batch_norm():
    table = read_table(str(TABLE))
    net = incdsl.load(str(CIFAR / "nin.inc"), params={"bn": 1e-5})
    assert compare(table, net, incdsl.count_costs(net)) == []
