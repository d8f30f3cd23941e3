"""Writes the zoo's gallery, docs/zoo.md, and its figures, docs/zoo/*.svg: each model of
specs/zoo/ (the ImageNet models, listed here with the library model each equals) and of
specs/zoo/cifar/ (every spec found there, read from its header comment) with its source, its
parameters and multiply-adds (incdsl's cost pass) and one block diagram (`incdsl draw SPEC
--block NAME`). tests/test_zoo_gallery.py fails when either is stale.

    python3 docs/zoo_gallery.py            # rewrite what is stale (the figures need Graphviz)
    python3 docs/zoo_gallery.py --check    # list what is stale; exit 1 if anything is
"""
from __future__ import annotations

import argparse
import re
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
ZOO = ROOT / "specs" / "zoo"
CIFAR = ZOO / "cifar"

TV, TIMM = "torchvision", "timm"
RESNET = "He et al. 2015, arXiv 1512.03385"
VGG_PAPER = "Simonyan & Zisserman 2014, arXiv 1409.1556"
SHUFFLENET_WIDTHS = {"x0_5": dict(c2=48, c3=96, c4=192), "x1_0": {}, "x1_5": dict(c2=176, c3=352, c4=704),
                     "x2_0": dict(c2=244, c3=488, c4=976, c5=2048)}
CONVNEXT_SIZES = {"tiny": {}, "small": dict(n3=27, drop_path=0.4),
                  "base": dict(n3=27, c1=128, c2=256, c3=512, c4=1024, drop_path=0.5)}
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
    spec: str         # under specs/zoo/
    block: str | None  # the block drawn; None: the whole network
    caption: str
    call: int = 1      # which call of the block (`draw --call`)

    @property
    def path(self) -> Path:
        return FIGURES / f"{self.spec.removesuffix('.inc').replace('/', '_')}_{self.block or 'network'}.svg"

    @property
    def options(self) -> DrawOptions:
        return DrawOptions(level="block", block=self.block, call=self.call) if self.block else DrawOptions(level="network")

    @property
    def command(self) -> str:
        rel = self.path.relative_to(DOC.parent).as_posix()
        block = (f" --block {self.block}" + (f" --call {self.call}" if self.call != 1 else "")) if self.block else ""
        return f"incdsl draw specs/zoo/{self.spec}{block} -o docs/{rel}"


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
    Model("mobilenet_v2", TV, "Sandler et al. 2018, arXiv 1801.04381", "mobilenet_v2.inc"),
    Model("mobilenet_v3_large", TV, "Howard et al. 2019, arXiv 1905.02244", "mobilenet_v3_large.inc"),
    Model("mobilenet_v3_small", TV, "Howard et al. 2019, arXiv 1905.02244", "mobilenet_v3_small.inc"),
    *[Model(f"mobilenet_v3_{size}(width_mult=0.75)", TV, "Howard et al. 2019, arXiv 1905.02244",
            f"mobilenet_v3_{size}.inc", dict(width=0.75)) for size in ("large", "small")],
    Model("efficientnet_b0", TV, "Tan & Le 2019, arXiv 1905.11946", "efficientnet.inc"),
    *[Model(f"shufflenet_v2_{w}", TV, "Ma et al. 2018, arXiv 1807.11164", "shufflenet_v2.inc", sets)
      for w, sets in SHUFFLENET_WIDTHS.items()],
    Model("regnet_x_400mf", TV, "Radosavovic et al. 2020, arXiv 2003.13678", "regnet_x_400mf.inc"),
    Model("regnet_y_400mf", TV, "Radosavovic et al. 2020, arXiv 2003.13678", "regnet_y_400mf.inc"),
    *[Model(f"convnext_{size}", TV, "Liu et al. 2022, arXiv 2201.03545", "convnext.inc", sets)
      for size, sets in CONVNEXT_SIZES.items()],
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
    # the second call of each: the first (t = 1) has no 1x1 expansion
    Figure("mobilenet_v2.inc", "inverted_body", "MobileNetV2: 1x1 expansion, depthwise conv and linear bottleneck", 2),
    Figure("mobilenet_v3_small.inc", "bneck_body",
           "MobileNetV3: 1x1 expansion, depthwise conv, hard-sigmoid squeeze-and-excitation, linear bottleneck", 2),
    Figure("efficientnet.inc", "mbconv_body",
           "EfficientNet: MBConv's 1x1 expansion, depthwise conv, SE with SiLU, linear bottleneck", 2),
    Figure("shufflenet_v2.inc", "shuffle_unit",
           "ShuffleNet V2: channel split, one half through 1x1, depthwise 3x3 and 1x1 convs, "
           "concatenation, channel shuffle"),
    Figure("regnet_y_400mf.inc", "regnet_block",
           "RegNetY: the X block's 1x1, 3x3 group conv and 1x1 with squeeze-and-excitation, projection shortcut"),
    # the second call: the first block drops nothing (rate 0)
    Figure("convnext.inc", "convnext_block",
           "ConvNeXt: a 7x7 depthwise conv, layer norm, 1x1 expansion with GELU, 1x1 back, layer scale, drop path", 2),
]


# The survey's order (issue 12) by spec name; a CIFAR spec not named here follows, by name.
SURVEY = ["nin", "vgg_a", "googlenet", "inception_bn", "inception_v3", "prelu_net_a", "highway", "resnet110",
          "inception_v4", "squeezenet_bn", "preact_resnet164", "rir", "resnet110_sd", "swapout_v2_32_w4", "wrn28_10",
          "fractalnet20", "wresnet_d", "ror3_wrn58_4", "densenet100_k24", "xception_cifar", "pyramidnet110_a270",
          "nas_v1", "resnext29_16x64d", "pyramidsepdrop182_a150"]
# The block drawn for a CIFAR spec; any other spec gets `default_block`'s choice.
CIFAR_BLOCKS = {"nin": "mlpconv", "vgg_a": "vgg_stage", "googlenet": "inception_bn_max",
                "inception_bn": "reduction_bn", "inception_v3": "inception_e", "prelu_net_a": "prelu_stage",
                "highway": "highway_layer", "resnet110": "basic_a", "inception_v4": "inception_a",
                "squeezenet_bn": "fire", "preact_resnet164": "preact_stage", "rir": "generalized"}


@dataclass(frozen=True)
class Header:
    """What a spec's leading comment says of itself."""
    title: str        # the first line up to its first parenthesis
    source: str | None  # the parenthesised reference holding an arXiv number, if any


def read_header(path: Path) -> Header:
    """The title and source of the comment block a spec starts with; without a comment, the
    title is the file's stem."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    title = text.split("(", 1)[0].strip() or path.stem
    found = re.search(r"\(([^()]*?arXiv \d{4}\.\d{4,5})", text)
    # "(VGG-11; Simonyan & Zisserman, ..." keeps the reference, not the aside before it
    source = found.group(1).rsplit("; ", 1)[-1].strip() if found else None
    return Header(title.rstrip(",;:"), source)


def cifar_specs() -> list[str]:
    """Every spec of specs/zoo/cifar/ (relative to specs/zoo/), in the survey's order."""
    stems = {p.stem for p in CIFAR.glob("*.inc")}
    known = [s for s in SURVEY if s in stems]
    return [f"cifar/{s}.inc" for s in known + sorted(stems - set(known))]


# A block drawn layer by layer beyond this many layers is a wall of boxes, not a figure
# (a stage of a 1192-layer network): the network is drawn instead.
MAX_FIGURE_LAYERS = 200


def default_block(graph) -> str | None:
    """The block to show of a network whose spec is not in CIFAR_BLOCKS: of the blocks it
    uses, one that joins tensors (a residual, a concat: the block that makes the paper), the
    most often used, then the largest; None (draw the network) when it uses no block or that
    one is too large to draw."""
    instances = graph.graph.get("instances", {})
    score = {}
    for scope, inst in instances.items():
        if inst["block"] in score:
            score[inst["block"]][1] += 1
            continue
        members = [n for n in graph.nodes if n.startswith(scope + "/")]
        joins = any(graph.in_degree(n) > 1 for n in members)
        score[inst["block"]] = [joins, 1, len(members)]
    best = max(score, key=lambda b: tuple(score[b])) if score else None
    return best if best and score[best][2] <= MAX_FIGURE_LAYERS else None


def _load(spec: str, params: dict | None = None):
    return incdsl.load(str(ZOO / spec), params=params or None)


def cifar_figure(spec: str, net) -> Figure:
    stem = Path(spec).stem
    block = CIFAR_BLOCKS.get(stem) or default_block(net.graph)
    title = read_header(ZOO / spec).title
    return Figure(spec, block, f"{title}: block `{block}`" if block else f"{title}: the network")


def _figure_dot(figure: Figure, net=None) -> str:
    return build_dot(net or _load(figure.spec), figure.options)


def figures() -> list[Figure]:
    """Every figure: the ImageNet ones listed in DIAGRAMS, one per CIFAR spec."""
    return DIAGRAMS + [cifar_figure(spec, _load(spec)) for spec in cifar_specs()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """docs/zoo.md's text."""
    lines = ["# The zoo", "",
             "Written by `python3 docs/zoo_gallery.py`; do not edit by hand.", "",
             "## ImageNet", "",
             "The ImageNet models of [`specs/zoo/`](../specs/zoo/), each equal to the library model it names "
             "(parameters, multiply-adds and, with `incdsl.load_weights`, logits: `tests/test_zoo.py`, "
             "`tests/test_zoo_mobile.py`, `tests/test_zoo_shuffle_regnet.py`). "
             "Counts are incdsl's cost pass at the spec's input size; multiply-adds are those of convolutions "
             "and linear layers (the papers' and timm's). The papers' own numbers, and why some differ, are in "
             "[`specs/tables/zoo.csv`](../specs/tables/zoo.csv) (`incdsl cost SPEC --against "
             "specs/tables/zoo.csv`).", "",
             "| model | library | paper | spec | input | parameters | multiply-adds |",
             "|---|---|---|---|---|---:|---:|"]
    for m in MODELS:
        net = _load(m.spec, m.params)
        costs = incdsl.count_costs(net)
        sets = "".join(f" --set {k}={v}" for k, v in m.params.items())
        c, h, w = net.input_shape
        lines.append(f"| `{m.name}` | {m.library} | {m.paper} | [`{m.spec}`](../specs/zoo/{m.spec}){sets} "
                     f"| {c}x{h}x{w} | {costs.total.params:,} | {costs.total.macs:,} |")
    lines += ["", "### Blocks", ""]
    lines += _figure_sections(DIAGRAMS)
    lines += _cifar_section()
    return "\n".join(lines)


def _figure_sections(figs: list[Figure]) -> list[str]:
    lines = []
    for f in figs:
        rel = f.path.relative_to(DOC.parent).as_posix()
        lines += [f"#### {f.caption}", "", f"`{f.command}`", "", f"![{f.caption}]({rel})", ""]
    return lines


def _cifar_section() -> list[str]:
    specs = cifar_specs()
    lines = ["## CIFAR-10", "",
             "The configurations on CIFAR-10 of the 2016 survey's 24 papers, in its order, from "
             "[`specs/zoo/cifar/`](../specs/zoo/cifar/): model and source as each spec's header comment "
             "names them, counts at the spec's defaults (3x32x32, ten classes). Each header says where its "
             "numbers come from and why any differ from the paper's.", "",
             "| # | model | source | spec | parameters | multiply-adds |",
             "|---:|---|---|---|---:|---:|"]
    figs = []
    for spec in specs:
        net = _load(spec)
        costs = incdsl.count_costs(net)
        header = read_header(ZOO / spec)
        stem = Path(spec).stem
        number = SURVEY.index(stem) + 1 if stem in SURVEY else ""
        lines.append(f"| {number} | {_cell(header.title)} | {_cell(header.source or '')} | [`{spec}`](../specs/zoo/{spec}) "
                     f"| {costs.total.params:,} | {costs.total.macs:,} |")
        figs.append(cifar_figure(spec, net))
    lines += ["", "### Blocks", ""]
    return lines + _figure_sections(figs)


def _orphans(figs: list[Figure]) -> list[Path]:
    """Figures in docs/zoo/ that no model draws any more (a spec removed, another block chosen)."""
    return sorted(set(FIGURES.glob("*.svg")) - {f.path for f in figs})


def stale() -> list[str]:
    """What is out of date: docs/zoo.md, the figures whose DOT source changed and those that no
    model draws any more."""
    out = [] if DOC.is_file() and DOC.read_text(encoding="utf-8") == render_markdown() else [str(DOC)]
    figs = figures()
    for f in figs:
        if not f.path.is_file() or source_hash(f.path.read_bytes()) != dot_digest(_figure_dot(f)):
            out.append(str(f.path))
    return out + [str(p) for p in _orphans(figs)]


def write() -> list[str]:
    """Rewrite what is stale and remove figures no model draws; returns what was written or removed."""
    written = []
    figs = figures()
    for f in figs:
        source = _figure_dot(f)
        if not f.path.is_file() or source_hash(f.path.read_bytes()) != dot_digest(source):
            FIGURES.mkdir(parents=True, exist_ok=True)
            write_atomic(str(f.path), run_dot(source, "svg"))
            written.append(str(f.path))
    for orphan in _orphans(figs):
        orphan.unlink()
        written.append(str(orphan))
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
        verb = "stale" if args.check else "wrote" if Path(path).exists() else "removed"
        print(f"{verb} {shown}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
