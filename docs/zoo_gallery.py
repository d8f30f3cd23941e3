"""Writes the zoo's gallery, docs/zoo.md, and its figures, docs/zoo/*.svg: each model of
specs/zoo/ with its source, its parameters and multiply-adds (incdsl's cost pass) and one block
diagram (`incdsl draw SPEC --block NAME`). tests/test_zoo_gallery.py fails when either is stale.

    python3 docs/zoo_gallery.py            # rewrite what is stale (the figures need Graphviz)
    python3 docs/zoo_gallery.py --check    # list what is stale; exit 1 if anything is
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import incdsl  # noqa: E402
from incdsl.io import write_atomic  # noqa: E402
from incdsl.render.graphviz import DrawOptions, build_dot, dot_digest, run_dot, source_hash  # noqa: E402

DOC = ROOT / "docs" / "zoo.md"
FIGURES = ROOT / "docs" / "zoo"

TV, TIMM = "torchvision", "timm"
RESNET = "He et al. 2015, arXiv 1512.03385"
VGG_PAPER = "Simonyan & Zisserman 2014, arXiv 1409.1556"
VGG_DEPTHS = {"vgg11": {}, "vgg13": dict(n1=2, n2=2), "vgg16": dict(n1=2, n2=2, n3=3, n4=3, n5=3),
              "vgg19": dict(n1=2, n2=2, n3=4, n4=4, n5=4)}


@dataclass(frozen=True)
class Model:
    name: str         # the library's name for it
    library: str
    paper: str
    spec: str         # under specs/zoo/
    params: dict = field(default_factory=dict)  # --set values


@dataclass(frozen=True)
class Figure:
    spec: str
    block: str        # the block drawn
    caption: str

    @property
    def path(self) -> Path:
        return FIGURES / f"{Path(self.spec).stem}_{self.block}.svg"


MODELS = [
    Model("alexnet", TV, "Krizhevsky 2014, arXiv 1404.5997", "alexnet.inc"),
    *[Model(f"{v}{suffix}", TV, VGG_PAPER, "vgg.inc", dict(VGG_DEPTHS[v], **extra))
      for v in VGG_DEPTHS for suffix, extra in (("", {}), ("_bn", {"bn": 1e-5}))],
    Model("resnet18", TV, RESNET, "resnet18.inc"),
    Model("resnet34", TV, RESNET, "resnet34.inc"),
    Model("resnet50", TV, RESNET, "resnet50.inc"),
    Model("resnet101", TV, RESNET, "resnet101.inc"),
    Model("resnet152", TV, RESNET, "resnet152.inc"),
    Model("resnetv2_50", TIMM, "He et al. 2016, arXiv 1603.05027", "resnetv2_50.inc"),
    Model("wide_resnet50_2", TV, "Zagoruyko & Komodakis 2016, arXiv 1605.07146", "wide_resnet50_2.inc"),
    Model("resnext50_32x4d", TV, "Xie et al. 2016, arXiv 1611.05431", "resnext50_32x4d.inc"),
    Model("densenet121", TV, "Huang et al. 2016, arXiv 1608.06993", "densenet.inc"),
    Model("densenet169", TV, "Huang et al. 2016, arXiv 1608.06993", "densenet.inc", dict(b3=32, b4=32)),
    Model("squeezenet1_0", TV, "Iandola et al. 2016, arXiv 1602.07360", "squeezenet1_0.inc"),
    Model("squeezenet1_1", TV, "Iandola et al. 2016 (the authors' v1.1)", "squeezenet1_1.inc"),
    Model("legacy_xception", TIMM, "Chollet 2016, arXiv 1610.02357", "xception.inc"),
]

DIAGRAMS = [
    Figure("vgg.inc", "stage", "VGG: a stage of 3x3 convs and a 2x2 max pool"),
    Figure("resnet18.inc", "basic_down", "ResNet-18/34: the basic block that halves the grid"),
    Figure("resnet50.inc", "bottleneck_down", "ResNet-50/101/152: the bottleneck with a projection shortcut"),
    Figure("resnetv2_50.inc", "preact_bottleneck_down",
           "Pre-activation ResNet-50: the shortcut reads the pre-activated input"),
    Figure("wide_resnet50_2.inc", "bottleneck", "Wide ResNet-50-2: twice the inner width"),
    Figure("resnext50_32x4d.inc", "bottleneck", "ResNeXt-50 32x4d: a grouped 3x3 conv"),
    Figure("densenet.inc", "dense_block", "DenseNet: a dense block, each layer's features concatenated"),
    Figure("squeezenet1_0.inc", "fire", "SqueezeNet: the Fire module"),
    Figure("xception.inc", "strided", "Xception: a strided block of separable convs"),
]


def _load(spec: str, params: dict | None = None):
    return incdsl.load(str(ROOT / "specs" / "zoo" / spec), params=params or None)


def _figure_dot(figure: Figure) -> str:
    return build_dot(_load(figure.spec), DrawOptions(level="block", block=figure.block))


def render_markdown() -> str:
    """docs/zoo.md's text."""
    lines = ["# The zoo", "",
             "The ImageNet models of [`specs/zoo/`](../specs/zoo/), each equal to the library model it names "
             "(parameters, multiply-adds and, with `incdsl.load_weights`, logits: `tests/test_zoo.py`). "
             "Counts are incdsl's cost pass at the spec's input size; multiply-adds are those of convolutions "
             "and linear layers (the papers' and timm's). The papers' own numbers, and why some differ, are in "
             "[`specs/tables/zoo.csv`](../specs/tables/zoo.csv) (`incdsl cost SPEC --against "
             "specs/tables/zoo.csv`).", "",
             "Written by `python3 docs/zoo_gallery.py`; do not edit by hand.", "",
             "| model | library | paper | spec | input | parameters | multiply-adds |",
             "|---|---|---|---|---|---:|---:|"]
    for m in MODELS:
        net = _load(m.spec, m.params)
        costs = incdsl.count_costs(net)
        sets = "".join(f" --set {k}={v}" for k, v in m.params.items())
        c, h, w = net.input_shape
        lines.append(f"| `{m.name}` | {m.library} | {m.paper} | [`{m.spec}`](../specs/zoo/{m.spec}){sets} "
                     f"| {c}x{h}x{w} | {costs.total.params:,} | {costs.total.macs:,} |")
    lines += ["", "## Blocks", ""]
    for f in DIAGRAMS:
        rel = f.path.relative_to(DOC.parent).as_posix()
        lines += [f"### {f.caption}", "",
                  f"`incdsl draw specs/zoo/{f.spec} --block {f.block} -o docs/{rel}`", "",
                  f"![{f.caption}]({rel})", ""]
    return "\n".join(lines)


def stale() -> list[str]:
    """What is out of date: docs/zoo.md and the figures whose DOT source changed."""
    out = [] if DOC.is_file() and DOC.read_text(encoding="utf-8") == render_markdown() else [str(DOC)]
    for f in DIAGRAMS:
        if not f.path.is_file() or source_hash(f.path.read_bytes()) != dot_digest(_figure_dot(f)):
            out.append(str(f.path))
    return out


def write() -> list[str]:
    """Rewrite what is stale; returns what was written."""
    written = []
    for f in DIAGRAMS:
        source = _figure_dot(f)
        if not f.path.is_file() or source_hash(f.path.read_bytes()) != dot_digest(source):
            FIGURES.mkdir(parents=True, exist_ok=True)
            write_atomic(str(f.path), run_dot(source, "svg"))
            written.append(str(f.path))
    text = render_markdown()
    if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
        write_atomic(str(DOC), text)
        written.append(str(DOC))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list what is stale; exit 1 if anything is")
    args = parser.parse_args(argv)
    changed = stale() if args.check else write()
    for path in changed:
        shown = Path(path).relative_to(ROOT) if Path(path).is_relative_to(ROOT) else path
        print(f"{'stale' if args.check else 'wrote'} {shown}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
