"""docs/zoo.md and docs/zoo/*.svg are what docs/zoo_gallery.py writes today: no figure, count or
model of the zoo's gallery goes stale unnoticed, whether ImageNet (specs/zoo/) or CIFAR-10
(specs/zoo/cifar/, every spec found there); no Graphviz needed: each figure records the hash of
the DOT text it was drawn from."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"


@pytest.fixture(scope="module")
def gallery():
    spec = importlib.util.spec_from_file_location("zoo_gallery", ROOT / "docs" / "zoo_gallery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_gallery"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def zoo_specs() -> set[str]:
    """Every spec of the zoo, relative to specs/zoo/ (lib/ holds blocks, not models)."""
    return {p.relative_to(ZOO).as_posix() for p in ZOO.rglob("*.inc") if p.relative_to(ZOO).parts[0] != "lib"}


def test_the_gallery_and_its_figures_are_current(gallery):
    assert gallery.stale() == [], "the zoo gallery is stale; regenerate it with: python3 docs/zoo_gallery.py"


def test_every_zoo_spec_is_in_the_gallery(gallery):
    specs = zoo_specs()
    assert any(s.startswith("cifar/") for s in specs) and any("/" not in s for s in specs)
    doc = gallery.DOC.read_text(encoding="utf-8")
    for spec in specs:
        assert f"](../specs/zoo/{spec})" in doc, spec
    top = {s for s in specs if "/" not in s}
    assert {m.spec for m in gallery.MODELS} == top
    assert {f.spec for f in gallery.DIAGRAMS} <= top
    drawn = {f.spec: f for f in gallery.figures()}
    assert specs - top <= set(drawn)  # every CIFAR spec has its own figure, in the document
    for spec in specs - top:
        assert f"]({drawn[spec].path.relative_to(gallery.DOC.parent).as_posix()})" in doc, spec


def test_the_sections_are_imagenet_then_cifar(gallery):
    doc = gallery.DOC.read_text(encoding="utf-8")
    assert doc.index("## ImageNet") < doc.index("(../specs/zoo/resnet50.inc)") < doc.index("## CIFAR-10")
    assert doc.index("## CIFAR-10") < doc.index("(../specs/zoo/cifar/resnet110.inc)")
    # the survey's order: NIN is item 1, ResNet-110 item 8
    assert doc.index("cifar/nin.inc)") < doc.index("cifar/resnet110.inc)")
    row = next(line for line in doc.splitlines() if "(../specs/zoo/cifar/resnet110.inc)" in line)
    assert row.startswith("| 8 | ResNet-110") and "arXiv 1512.03385" in row and "| 1,727,962 | 252,887,680 |" in row


def test_a_changed_count_or_figure_is_reported(gallery, tmp_path, monkeypatch):
    doc, figures = tmp_path / "zoo.md", tmp_path / "zoo"
    doc.write_text(gallery.DOC.read_text(encoding="utf-8").replace("22,855,952", "22,855,953"), encoding="utf-8")
    shutil.copytree(gallery.FIGURES, figures)
    first = gallery.DIAGRAMS[0].path.name
    svg = (figures / first).read_text(encoding="utf-8")
    (figures / first).write_text(svg.replace("sha256 ", "sha256 0", 1)[:-1], encoding="utf-8")
    cifar = next(f for f in gallery.figures() if f.spec.startswith("cifar/")).path.name
    (figures / cifar).unlink()
    (figures / "cifar_gone_block.svg").write_text("<svg/>", encoding="utf-8")
    monkeypatch.setattr(gallery, "DOC", doc)
    monkeypatch.setattr(gallery, "FIGURES", figures)
    assert gallery.stale() == [str(doc), str(figures / first), str(figures / cifar),
                               str(figures / "cifar_gone_block.svg")]
    assert gallery.main(["--check"]) == 1


TINY = """\
# Tiny net, two blocks (Doe & Roe, "A Tiny Net", arXiv 1234.56789, Table 2) as written here.
# Totals: whatever the cost pass says.

network tiny(classes = 10):
    input 3x8x8
    conv 3x3 4 pad = 1
    plain(4)
    res(4)
    res(4)
    gap -> flatten -> linear classes

block plain(c):
    conv 3x3 c pad = 1
    conv 3x3 c pad = 1

block res(c):
    residual:
        conv 3x3 c pad = 1
"""


@pytest.fixture
def tiny_zoo(gallery, tmp_path, monkeypatch):
    """A zoo of one CIFAR spec the script has never heard of, and nothing else."""
    zoo = tmp_path / "specs" / "zoo"
    (zoo / "cifar").mkdir(parents=True)
    (zoo / "cifar" / "tiny.inc").write_text(TINY, encoding="utf-8")
    (zoo / "cifar" / "bare.inc").write_text("network bare:\n    input 3x8x8\n    gap -> flatten -> linear 2\n",
                                           encoding="utf-8")
    for name, value in (("ZOO", zoo), ("CIFAR", zoo / "cifar"), ("DOC", tmp_path / "docs" / "zoo.md"),
                        ("FIGURES", tmp_path / "docs" / "zoo"), ("MODELS", []), ("DIAGRAMS", [])):
        monkeypatch.setattr(gallery, name, value)
    return gallery


def test_a_new_cifar_spec_appears_with_its_header_and_a_block_that_joins(tiny_zoo):
    assert [f.spec for f in tiny_zoo.figures()] == ["cifar/bare.inc", "cifar/tiny.inc"]  # unknown: by name
    tiny = tiny_zoo.figures()[1]
    assert tiny.block == "res"  # the block with a join, used twice, over the plain one
    assert tiny_zoo.figures()[0].block is None and tiny_zoo.figures()[0].path.name == "cifar_bare_network.svg"
    text = tiny_zoo.render_markdown()
    row = next(line for line in text.splitlines() if "cifar/tiny.inc)" in line)
    assert row.startswith('|  | Tiny net, two blocks | Doe & Roe, "A Tiny Net", arXiv 1234.56789 |')
    bare = next(line for line in text.splitlines() if "cifar/bare.inc)" in line)
    assert bare.startswith("|  | bare |  |")  # no header: the file's name, no source
    assert "`incdsl draw specs/zoo/cifar/tiny.inc --block res -o docs/zoo/cifar_tiny_res.svg`" in text
    assert "`incdsl draw specs/zoo/cifar/bare.inc -o docs/zoo/cifar_bare_network.svg`" in text
    assert set(tiny_zoo.stale()) == {str(tiny_zoo.DOC), str(tiny.path), str(tiny_zoo.figures()[0].path)}


def test_a_block_too_large_to_draw_gives_the_network(tiny_zoo, monkeypatch):
    monkeypatch.setattr(tiny_zoo, "MAX_FIGURE_LAYERS", 0)
    assert [f.block for f in tiny_zoo.figures()] == [None, None]


def test_header_source_keeps_the_reference_not_the_aside(gallery, tmp_path):
    spec = tmp_path / "a.inc"
    spec.write_text('# VGG model A (VGG-11; Simonyan & Zisserman, "Very Deep", arXiv\n# 1409.1556, Table 1)\n'
                    "network a:\n", encoding="utf-8")
    assert gallery.read_header(spec) == gallery.Header("VGG model A", 'Simonyan & Zisserman, "Very Deep", arXiv 1409.1556')
    spec.write_text("# A net (no paper)\nnetwork a:\n", encoding="utf-8")
    assert gallery.read_header(spec) == gallery.Header("A net", None)
