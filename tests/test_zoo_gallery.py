"""docs/zoo.md and docs/zoo/*.svg are what docs/zoo_gallery.py writes today: no figure, count or
model of the zoo's gallery goes stale unnoticed (no Graphviz needed: each figure records the
hash of the DOT text it was drawn from)."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gallery():
    spec = importlib.util.spec_from_file_location("zoo_gallery", ROOT / "docs" / "zoo_gallery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_gallery"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_gallery_and_its_figures_are_current(gallery):
    assert gallery.stale() == [], "the zoo gallery is stale; regenerate it with: python3 docs/zoo_gallery.py"


def test_every_zoo_spec_is_in_the_gallery(gallery):
    specs = {p.name for p in (ROOT / "specs" / "zoo").glob("*.inc")}
    assert {m.spec for m in gallery.MODELS} == specs
    assert {f.spec for f in gallery.DIAGRAMS} <= specs


def test_a_changed_count_or_figure_is_reported(gallery, tmp_path, monkeypatch):
    doc, figures = tmp_path / "zoo.md", tmp_path / "zoo"
    doc.write_text(gallery.DOC.read_text(encoding="utf-8").replace("22,855,952", "22,855,953"), encoding="utf-8")
    shutil.copytree(gallery.FIGURES, figures)
    first = gallery.DIAGRAMS[0].path.name
    svg = (figures / first).read_text(encoding="utf-8")
    (figures / first).write_text(svg.replace("sha256 ", "sha256 0", 1)[:-1], encoding="utf-8")
    monkeypatch.setattr(gallery, "DOC", doc)
    monkeypatch.setattr(gallery, "FIGURES", figures)
    assert gallery.stale() == [str(doc), str(figures / first)]
    assert gallery.main(["--check"]) == 1
