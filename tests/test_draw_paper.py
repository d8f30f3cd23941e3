"""Block figures in the papers' style, --dpi, --font warnings, one block's layers, LR wrapping."""
from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest

import incdsl
from incdsl.cli import main
from incdsl.render import fonts
from incdsl.render.graphviz import DrawOptions, build_dot, collect, run_dot

ROOT = Path(__file__).resolve().parent.parent
V4 = str(ROOT / "specs" / "inception_v4.inc")
GOOGLENET = str(ROOT / "specs" / "googlenet.inc")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")


def _v4():
    return incdsl.load(V4)


def _rows(dot_text: str) -> list[list[str]]:
    """The rank=same groups of DOT text, each as its boxes in chain order."""
    rows = []
    for body in re.findall(r"\{\s*rank=same\s*(.*?)\}", dot_text, re.S):
        ids = []
        for a, b in re.findall(r'"?([^"\s]+)"? -> "?([^"\s]+)"? \[style=invis\]', body):
            ids += [a] if not ids else []
            ids.append(b)
        rows.append(ids)
    return rows


def test_block_boxes_sit_in_one_row_per_depth():
    scene = collect(_v4(), DrawOptions(level="block", block="inception_b"))
    rows = [set(r) for r in scene.orders]
    p = "inception_b.0/"
    # the second layer of every branch that has one, side by side (7x1 and 1x7 alike)
    assert {p + "branch_1/conv_1", p + "branch_2/conv_1", p + "branch_3/conv_0"} in rows
    assert {p + "branch_1/conv_2", p + "branch_2/conv_2"} in rows
    heads = [p + "branch_0/conv_0", p + "branch_1/conv_0", p + "branch_2/conv_0", p + "branch_3/avgpool_0"]
    assert list(scene.orders[0]) == heads  # the spec's order, left to right


def test_branch_order_pool_first_and_input_label():
    scene = collect(_v4(), DrawOptions(level="block", block="inception_a", branch_order="pool-first",
                                       input_label="Filter concat"))
    assert scene.orders[0][0] == "inception_a.0/branch_3/avgpool_0"  # Inception-v4's figure: pooling on the left
    assert [n.title for n in scene.nodes if n.kind == "input"] == ["Filter concat"]
    last = collect(incdsl.load(GOOGLENET), DrawOptions(level="block", block="inception", branch_order="pool-last"))
    assert last.orders[0][-1].endswith("maxpool_0")
    plain = collect(incdsl.load(GOOGLENET), DrawOptions(level="block", block="inception"))
    assert [n.title for n in plain.nodes if n.kind == "input"] == ["Previous layer"]


@needs_dot
def test_rows_are_drawn_level(tmp_path):
    """Boxes of one depth share a y coordinate in the laid-out SVG; branches keep their order."""
    svg = run_dot(build_dot(_v4(), DrawOptions(level="block", block="inception_a")), "svg").decode()
    centre = {}
    for m in re.finditer(r'<title>([^<]+)</title>\s*<(?:polygon|ellipse)[^>]*points="([^"]+)"', svg):
        ys = [float(p.split(",")[1]) for p in m.group(2).split()]
        xs = [float(p.split(",")[0]) for p in m.group(2).split()]
        centre[m.group(1)] = (sum(xs) / len(xs), sum(ys) / len(ys))
    p = "inception_a.0/"
    second = [centre[p + n] for n in ("branch_1/conv_1", "branch_2/conv_1", "branch_3/conv_0")]
    assert len({round(y) for _, y in second}) == 1
    xs = [centre[p + n][0] for n in ("branch_0/conv_0", "branch_1/conv_0", "branch_2/conv_0", "branch_3/avgpool_0")]
    assert xs == sorted(xs)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_dot
def test_dpi_scales_png(tmp_path, capsys):
    small, large = tmp_path / "s.png", tmp_path / "l.png"
    assert main(["draw", GOOGLENET, "--block", "inception", "--dpi", "72", "-o", str(small)]) == 0
    assert main(["draw", GOOGLENET, "--block", "inception", "-o", str(large)]) == 0  # default 300
    (w1, h1), (w2, h2) = _png_size(small.read_bytes()), _png_size(large.read_bytes())
    assert abs(w2 / w1 - 300 / 72) < 0.1 and abs(h2 / h1 - 300 / 72) < 0.1


def test_bad_dpi_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["draw", GOOGLENET, "--dpi", "0"])
    assert exc.value.code == 2 and "dots per inch" in capsys.readouterr().err


def test_missing_font_rule():
    families = {"dejavu sans", "times"}
    assert not fonts.missing_font("DejaVu Sans", families)
    assert not fonts.missing_font("Times-Roman", families)
    assert fonts.missing_font("Comic Nonsense", families)
    assert not fonts.missing_font("Anything", None)  # no fc-list: nothing to say


@needs_dot
def test_unknown_font_warns(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fonts, "installed_families", lambda timeout=10: {"dejavu sans"})
    out = tmp_path / "g.svg"
    assert main(["draw", GOOGLENET, "--block", "inception", "--font", "Comic Nonsense", "-o", str(out)]) == 0
    assert "font `Comic Nonsense` is not installed" in capsys.readouterr().err
    assert main(["draw", GOOGLENET, "--block", "inception", "--font", "DejaVu Sans", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_layer_level_of_one_block(capsys):
    assert main(["draw", V4, "--level", "layer", "--block", "reduction_a", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    boxes = set(re.findall(r'^\s*"([^"]+)" \[label', dot, re.M))
    assert boxes and all(b.startswith(("reduction_a/", "#in/")) or b == "#output" for b in boxes)
    assert sum(b.startswith("#in/") for b in boxes) == 1 and "cluster_reduction_a/branch_1" in dot
    assert "Previous layer" in dot


def test_left_to_right_network_wraps_into_rows():
    dot = build_dot(_v4(), DrawOptions(rankdir="LR"))
    assert "rankdir=TB" in dot  # rows stacked top to bottom, each left to right
    rows = _rows(dot)
    assert len(rows) >= 2 and all(len(r) <= 6 for r in rows)
    assert rows[0][0] == "input" and rows[1][0] in dot
    assert "rankdir=BT" in build_dot(_v4(), DrawOptions())  # the default is unchanged


@needs_dot
def test_left_to_right_png_is_not_one_long_row(tmp_path):
    out = tmp_path / "lr.png"
    assert main(["draw", V4, "--rankdir", "LR", "--dpi", "96", "-o", str(out)]) == 0
    width, height = _png_size(out.read_bytes())
    assert width < 1400 and height > 80  # two rows of about 1,200 pixels; one row would be about 2,260 x 40
