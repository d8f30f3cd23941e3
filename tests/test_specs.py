"""The Inception-family specs in specs/: each checks cleanly and costs exactly what the
reference implementations count.

Every number below is transcribed from the team's reference note (shared/reference/
architectures.md; section numbers are given beside each table), which took them from the
instantiated reference models (torchvision, timm, Cadene) or from a layer-by-layer rebuild
of the variants that cannot be instantiated. Costs follow the note's conventions: MACs of
convolutions and linear layers only, parameters PyTorch style (BN gamma and beta).
"""
import csv
import math
from functools import lru_cache
from pathlib import Path

import networkx as nx
import pytest

import incdsl
from incdsl.ir.graph import inputs, lint

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILES = sorted(p.relative_to(SPECS).as_posix()
                    for p in [*SPECS.glob("*.inc"), *SPECS.glob("variants/*.inc")])


@lru_cache(maxsize=None)
def load(spec: str, classes: int | None = None):
    params = {"classes": classes} if classes is not None else None
    return incdsl.load(str(SPECS / spec), params=params)


@lru_cache(maxsize=None)
def costs(spec: str, classes: int | None = None):
    return incdsl.count_costs(load(spec, classes))


def stages(spec: str, depth: int = 1) -> dict:
    """Cost rows grouped by the first `depth` components of their scope path.

    Returns {group: [params, macs, output shape]}; the output shape is that of the group's
    last node in graph order (a block's concat or sum, a head's logits).
    """
    out = {}
    for row in costs(spec).nodes:
        if row.op == "input":
            continue
        key = "/".join(row.name.split("/")[:depth])
        group = out.setdefault(key, [0, 0, None])
        group[0] += row.params
        group[1] += row.macs
        group[2] = row.shape
    return out


def stage(spec: str, key: str) -> tuple:
    """(params, MACs, output shape) of a group; `a+b` sums groups, the shape is b's."""
    params = macs = 0
    shape = None
    for part in key.split("+"):
        found = stages(spec, part.count("/") + 1)
        assert part in found, f"{spec} has no scope `{part}`"
        params += found[part][0]
        macs += found[part][1]
        shape = found[part][2]
    return params, macs, shape


# --- totals ---------------------------------------------------------------------------------

# spec -> (params, MACs, params with aux heads, MACs with aux heads); None where the spec has
# no aux head. Reference sections 1.1, 1.2, 2.1-2.3, 3.2, 4.1, 5.1, 6.1.
TOTALS = {
    "googlenet.inc": (6_998_552, 1_582_671_872, 13_378_280, 1_591_044_096),
    "variants/googlenet_torchvision.inc": (6_624_904, 1_498_376_192, 13_004_888, 1_506_748_416),
    "inception_bn.inc": (11_278_528, 1_948_605_440, None, None),
    "variants/inception_bn_caffe.inc": (11_295_240, 2_032_600_064, None, None),
    "variants/inception_bn_slim.inc": (11_188_288, 1_934_857_216, None, None),
    "inception_v3.inc": (23_834_568, 5_713_216_096, 27_161_264, 5_718_899_296),
    "inception_v4.inc": (42_679_816, 12_253_974_624, None, None),
    "inception_resnet_v1.inc": (22_756_328, 6_206_361_696, None, None),
    "inception_resnet_v2.inc": (55_843_464, 13_155_794_016, None, None),
    "variants/inception_resnet_v2_paper.inc": (32_433_928, 9_257_953_632, None, None),
}


def test_every_spec_has_targets():
    assert SPEC_FILES, "no specs found"
    assert set(SPEC_FILES) == set(TOTALS)


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_spec_checks_cleanly(spec):
    net = load(spec)
    assert net.warnings == []
    lint(net.graph)
    assert net.output_shape == (1000,)
    for head in net.aux_heads:
        assert net.graph.nodes[head["output"]]["shape"] == (1000,)


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_totals_are_exact(spec):
    params, macs, params_aux, macs_aux = TOTALS[spec]
    c = costs(spec)
    assert (c.total.params, c.total.macs) == (params, macs)
    if params_aux is None:
        assert load(spec).aux_heads == []
        assert c.total_with_aux == c.total
    else:
        assert (c.total_with_aux.params, c.total_with_aux.macs) == (params_aux, macs_aux)


def _totals_rows():
    with open(SPECS / "tables" / "totals.csv", newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row["spec"]]


@pytest.mark.parametrize("row", _totals_rows(), ids=lambda r: f"{r['spec']}-{r['classes']}")
def test_totals_table_agrees_with_specs(row):
    """Every row of tables/totals.csv that names a spec, at its number of classes (the
    1001-class rows are Cadene's measured models, which keep TF-slim's background class)."""
    classes = int(row["classes"])
    c = costs(row["spec"], None if classes == 1000 else classes)
    assert load(row["spec"], None if classes == 1000 else classes).input_shape[1] == int(row["input"])
    for column, value in (("params", c.total.params), ("macs", c.total.macs),
                          ("params_with_aux", c.total_with_aux.params), ("macs_with_aux", c.total_with_aux.macs)):
        if row[column]:
            assert value == int(row[column]), column


def test_totals_table_names_existing_specs():
    for row in _totals_rows():
        assert row["spec"] in SPEC_FILES


# --- per-block costs and shapes ----------------------------------------------------------------

def rep(base: str, count: int, params: int, macs: int, shape: tuple) -> dict:
    """Rows of a repeated block: base.0 .. base.(count-1), each with the same numbers."""
    return {f"{base}.{i}": (params, macs, shape) for i in range(count)}


# scope -> (params, MACs, output shape); a scope with params None is checked for shape only.
STAGES = {
    # section 1.1 (paper / Caffe)
    "googlenet.inc": {
        "conv1": (9_472, 118_013_952, (64, 112, 112)),
        "pool1": (0, 0, (64, 56, 56)),
        "norm1": (0, 0, (64, 56, 56)),
        "conv2_reduce": (4_160, 12_845_056, (64, 56, 56)),
        "conv2": (110_784, 346_816_512, (192, 56, 56)),
        "norm2": (0, 0, (192, 56, 56)),
        "pool2": (0, 0, (192, 28, 28)),
        "inception_3a": (163_696, 128_049_152, (256, 28, 28)),
        "inception_3b": (388_736, 304_267_264, (480, 28, 28)),
        "pool3": (0, 0, (480, 14, 14)),
        "inception_4a": (376_176, 73_608_192, (512, 14, 14)),
        "aux1": (3_188_840, 4_169_728, (1000,)),
        "inception_4b": (449_160, 87_908_352, (512, 14, 14)),
        "inception_4c": (510_104, 99_850_240, (512, 14, 14)),
        "inception_4d": (605_376, 118_515_712, (528, 14, 14)),
        "aux2": (3_190_888, 4_202_496, (1000,)),
        "inception_4e": (868_352, 169_996_288, (832, 14, 14)),
        "pool4": (0, 0, (832, 7, 7)),
        "inception_5a": (1_043_456, 51_079_168, (832, 7, 7)),
        "inception_5b": (1_444_080, 70_697_984, (1024, 7, 7)),
        "pool5": (0, 0, (1024, 1, 1)),
        "classifier": (1_025_000, 1_024_000, (1000,)),
    },
    # section 1.2 (torchvision; scopes are torchvision's module names)
    "variants/googlenet_torchvision.inc": {
        "conv1": (9_536, 118_013_952, (64, 112, 112)),
        "maxpool1": (0, 0, (64, 56, 56)),
        "conv2": (4_224, 12_845_056, (64, 56, 56)),
        "conv3": (110_976, 346_816_512, (192, 56, 56)),
        "maxpool2": (0, 0, (192, 28, 28)),
        "inception3a": (155_872, 121_626_624, (256, 28, 28)),
        "inception3b": (340_224, 265_732_096, (480, 28, 28)),
        "maxpool3": (0, 0, (480, 14, 14)),
        "inception4a": (364_512, 71_199_744, (512, 14, 14)),
        "aux1": (3_188_968, 4_169_728, (1000,)),
        "inception4b": (425_232, 83_091_456, (512, 14, 14)),
        "inception4c": (486_192, 95_033_344, (512, 14, 14)),
        "inception4d": (573_312, 112_093_184, (528, 14, 14)),
        "aux2": (3_191_016, 4_202_496, (1000,)),
        "inception4e": (803_840, 157_151_232, (832, 14, 14)),
        "maxpool4": (0, 0, (832, 7, 7)),
        "inception5a": (978_944, 47_867_904, (832, 7, 7)),
        "inception5b": (1_347_040, 65_881_088, (1024, 7, 7)),
        "avgpool": (0, 0, (1024, 1, 1)),
        "fc": (1_025_000, 1_024_000, (1000,)),
    },
    # section 2.2 (TF-slim layout, PyTorch-style BN column)
    "variants/inception_bn_slim.inc": {
        "conv1_depthwise+conv1": (2_840, 34_019_328, (64, 112, 112)),
        "pool1": (0, 0, (64, 56, 56)),
        "conv2_reduce": (4_224, 12_845_056, (64, 56, 56)),
        "conv2": (110_976, 346_816_512, (192, 56, 56)),
        "pool2": (0, 0, (192, 28, 28)),
        "inception_3a": (219_072, 170_999_808, (256, 28, 28)),
        "inception_3b": (260_160, 203_112_448, (320, 28, 28)),
        "inception_3c": (385_088, 143_904_768, (576, 14, 14)),
        "inception_4a": (609_984, 119_218_176, (576, 14, 14)),
        "inception_4b": (665_344, 130_056_192, (576, 14, 14)),
        "inception_4c": (895_936, 175_214_592, (576, 14, 14)),
        "inception_4d": (1_108_032, 216_760_320, (576, 14, 14)),
        "inception_4e": (1_439_744, 162_570_240, (1024, 7, 7)),
        "inception_5a": (2_182_272, 106_774_528, (1024, 7, 7)),
        "inception_5b": (2_279_616, 111_541_248, (1024, 7, 7)),
        "pool5": (0, 0, (1024, 1, 1)),
        "logits": (1_025_000, 1_024_000, (1000, 1, 1)),
    },
    # section 3.2 (torchvision / timm)
    "inception_v3.inc": {
        "conv2d_1a_3x3": (928, 19_181_664, (32, 149, 149)),
        "conv2d_2a_3x3": (9_280, 199_148_544, (32, 147, 147)),
        "conv2d_2b_3x3": (18_560, 398_297_088, (64, 147, 147)),
        "maxpool1": (0, 0, (64, 73, 73)),
        "conv2d_3b_1x1": (5_280, 27_284_480, (80, 73, 73)),
        "conv2d_4a_3x3": (138_624, 696_867_840, (192, 71, 71)),
        "maxpool2": (0, 0, (192, 35, 35)),
        "mixed_5b": (255_904, 312_345_600, (256, 35, 35)),
        "mixed_5c": (277_472, 338_688_000, (288, 35, 35)),
        "mixed_5d": (285_152, 348_096_000, (288, 35, 35)),
        "mixed_6a": (1_153_280, 401_937_408, (768, 17, 17)),
        "mixed_6b": (1_297_408, 374_063_104, (768, 17, 17)),
        "mixed_6c": (1_691_008, 487_702_528, (768, 17, 17)),
        "mixed_6d": (1_691_008, 487_702_528, (768, 17, 17)),
        "mixed_6e": (2_141_952, 617_914_368, (768, 17, 17)),
        "aux_logits": (3_326_696, 5_683_200, (1000,)),
        "mixed_7a": (1_698_304, 291_004_416, (1280, 8, 8)),
        "mixed_7b": (5_044_608, 322_437_120, (2048, 8, 8)),
        "mixed_7c": (6_076_800, 388_497_408, (2048, 8, 8)),
        "fc": (2_049_000, 2_048_000, (1000,)),
    },
    # section 4.1 (timm); the stem's rows are scopes inside the `stem` block
    "inception_v4.inc": {
        "stem/conv2d_1a_3x3": (928, 19_181_664, (32, 149, 149)),
        "stem/conv2d_2a_3x3": (9_280, 199_148_544, (32, 147, 147)),
        "stem/conv2d_2b_3x3": (18_560, 398_297_088, (64, 147, 147)),
        "stem/mixed_3a": (55_488, 294_672_384, (160, 73, 73)),
        "stem/mixed_4a": (189_312, 972_218_368, (192, 71, 71)),
        "stem/mixed_5a": (332_160, 406_425_600, (384, 35, 35)),
        **rep("inception_a", 4, 317_632, 387_609_600, (384, 35, 35)),
        "reduction_a": (2_306_112, 1_097_164_800, (1024, 17, 17)),
        **rep("inception_b", 7, 2_936_256, 847_264_768, (1024, 17, 17)),
        "reduction_b": (2_747_392, 511_098_880, (1536, 8, 8)),
        **rep("inception_c", 3, 4_553_088, 290_979_840, (1536, 8, 8)),
        "last_linear": (1_537_000, 1_536_000, (1000,)),
    },
    # section 5.1 (paper plan)
    "inception_resnet_v1.inc": {
        "conv2d_1a_3x3": (928, 19_181_664, (32, 149, 149)),
        "conv2d_2a_3x3": (9_280, 199_148_544, (32, 147, 147)),
        "conv2d_2b_3x3": (18_560, 398_297_088, (64, 147, 147)),
        "maxpool_3a_3x3": (0, 0, (64, 73, 73)),
        "conv2d_3b_1x1": (5_280, 27_284_480, (80, 73, 73)),
        "conv2d_4a_3x3": (138_624, 696_867_840, (192, 71, 71)),
        "conv2d_4b_3x3": (442_880, 541_900_800, (256, 35, 35)),
        **rep("block35", 5, 77_440, 94_080_000, (256, 35, 35)),
        "mixed_6a": (1_710_080, 850_169_856, (896, 17, 17)),
        **rep("block17", 10, 690_048, 198_868_992, (896, 17, 17)),
        "mixed_7a": (3_346_176, 501_448_704, (1792, 8, 8)),
        **rep("block8", 5, 1_600_768, 102_236_160, (1792, 8, 8)),
        "logits": (1_793_000, 1_792_000, (1000,)),
    },
    # section 6.1 (timm)
    "inception_resnet_v2.inc": {
        "conv2d_1a": (928, 19_181_664, (32, 149, 149)),
        "conv2d_2a": (9_280, 199_148_544, (32, 147, 147)),
        "conv2d_2b": (18_560, 398_297_088, (64, 147, 147)),
        "maxpool_3a": (0, 0, (64, 73, 73)),
        "conv2d_3b": (5_280, 27_284_480, (80, 73, 73)),
        "conv2d_4a": (138_624, 696_867_840, (192, 71, 71)),
        "maxpool_5a": (0, 0, (192, 35, 35)),
        "mixed_5b": (268_320, 327_398_400, (320, 35, 35)),
        **rep("block35", 10, 123_168, 149_900_800, (320, 35, 35)),
        "mixed_6a": (2_664_960, 1_398_185_984, (1088, 17, 17)),
        **rep("block17", 20, 1_126_784, 324_937_728, (1088, 17, 17)),
        "mixed_7a": (3_880_960, 585_424_896, (2080, 8, 8)),
        **rep("block8", 9, 2_035_424, 130_023_424, (2080, 8, 8)),
        "block8_final": (2_035_424, 130_023_424, (2080, 8, 8)),
        "conv2d_7b": (3_197_952, 204_472_320, (1536, 8, 8)),
        "classif": (1_537_000, 1_536_000, (1000,)),
    },
}

# Section 2.3: Caffe BN-Inception per block, (PyTorch-style params, TF-slim-style params,
# MACs, shape). PyTorch style counts conv weights and BN gamma/beta; TF-slim style has one
# value less per BN channel, so their difference is the number of BN channels, and the
# Caffe model (a bias on every conv besides BN) has 2 * pytorch - tf parameters.
_BN_CAFFE_PLAN = {
    "stem_conv": (9_536, 9_472, 118_013_952, (64, 112, 112)),
    "stem_reduce": (4_224, 4_160, 12_845_056, (64, 56, 56)),
    "stem_3x3": (110_976, 110_784, 346_816_512, (192, 56, 56)),
    "inception_3a": (219_072, 218_592, 170_999_808, (256, 28, 28)),
    "inception_3b": (260_160, 259_616, 203_112_448, (320, 28, 28)),
    "inception_3c": (385_088, 384_544, 143_904_768, (576, 14, 14)),
    "inception_4a": (609_984, 609_120, 119_218_176, (576, 14, 14)),
    "inception_4b": (665_344, 664_448, 130_056_192, (576, 14, 14)),
    "inception_4c": (914_432, 913_408, 178_827_264, (608, 14, 14)),
    "inception_4d": (1_142_912, 1_141_824, 223_584_256, (608, 14, 14)),
    "inception_4e": (1_449_984, 1_448_960, 164_577_280, (1056, 7, 7)),
    "inception_5a": (2_208_896, 2_207_296, 108_079_104, (1024, 7, 7)),
    "inception_5b": (2_279_616, 2_277_984, 111_541_248, (1024, 7, 7)),
    "linear": (1_025_000, 1_025_000, 1_024_000, (1000,)),
}
_CAFFE_NAMES = {"stem_conv": "conv1_7x7_s2", "stem_reduce": "conv2_3x3_reduce", "stem_3x3": "conv2_3x3",
                "linear": "last_linear"}
STAGES["variants/inception_bn_caffe.inc"] = {
    _CAFFE_NAMES.get(k, k): (2 * pt - tf, macs, shape) for k, (pt, tf, macs, shape) in _BN_CAFFE_PLAN.items()}
# The paper-literal reading has the same plan without conv biases (the PyTorch-style column)
# and the separable first conv (section 2.2's first row).
_PAPER_NAMES = {"stem_reduce": "conv2_reduce", "stem_3x3": "conv2", "linear": "fc"}
STAGES["inception_bn.inc"] = {
    _PAPER_NAMES.get(k, k): (pt, macs, shape) for k, (pt, tf, macs, shape) in _BN_CAFFE_PLAN.items() if k != "stem_conv"}
STAGES["inception_bn.inc"]["conv1_depthwise+conv1"] = (2_840, 34_019_328, (64, 112, 112))

# Section 6 (text and 10.4): the paper-plan IR-v2 has no stage table, only its widths.
STAGE_SHAPES = {
    "variants/inception_resnet_v2_paper.inc": {
        "stem": (384, 35, 35), "block35.4": (384, 35, 35), "mixed_6a": (1152, 17, 17),
        "block17.9": (1152, 17, 17), "mixed_7a": (2144, 8, 8), "block8.4": (2144, 8, 8),
    },
}


def test_every_spec_has_a_stage_table():
    assert set(STAGES) | set(STAGE_SHAPES) == set(SPEC_FILES)


@pytest.mark.parametrize("spec, scope", [(s, k) for s, table in sorted(STAGES.items()) for k in table])
def test_stage_costs_and_shapes(spec, scope):
    assert stage(spec, scope) == STAGES[spec][scope]


@pytest.mark.parametrize("spec", sorted(STAGES))
def test_stage_tables_cover_the_whole_network(spec):
    """The table's rows add up to the whole network (aux heads included): no block missed."""
    table = STAGES[spec]
    c = costs(spec)
    assert sum(p for p, _, _ in table.values()) == c.total_with_aux.params
    assert sum(m for _, m, _ in table.values()) == c.total_with_aux.macs


@pytest.mark.parametrize("spec, scope", [(s, k) for s, table in sorted(STAGE_SHAPES.items()) for k in table])
def test_stage_shapes(spec, scope):
    assert stage(spec, scope)[2] == STAGE_SHAPES[spec][scope]


# --- layer conventions -------------------------------------------------------------------------

# spec -> the set of (batch-norm eps, bias, activation) over its convolutions.
CONV_KINDS = {
    "googlenet.inc": {(None, True, "relu")},
    "variants/googlenet_torchvision.inc": {(0.001, False, "relu")},
    # the depthwise half of the separable first conv has no BN, bias or activation
    "inception_bn.inc": {(0.001, False, "relu"), (None, False, None)},
    "variants/inception_bn_caffe.inc": {(1e-5, True, "relu")},
    "variants/inception_bn_slim.inc": {(0.001, False, "relu"), (None, False, None), (None, True, None)},
    "inception_v3.inc": {(0.001, False, "relu")},
    "inception_v4.inc": {(0.001, False, "relu")},
    # residual up-projections: linear, with a bias, no BN
    "inception_resnet_v1.inc": {(0.001, False, "relu"), (None, True, None)},
    "inception_resnet_v2.inc": {(0.001, False, "relu"), (None, True, None)},
    "variants/inception_resnet_v2_paper.inc": {(0.001, False, "relu"), (None, True, None)},
}

# spec -> the count_pad of its average pools with padding (module pool branches); an empty
# set where it has none.
AVGPOOL_COUNT_PAD = {
    "googlenet.inc": set(),
    "variants/googlenet_torchvision.inc": set(),
    "inception_bn.inc": {False},
    "variants/inception_bn_caffe.inc": {True},
    "variants/inception_bn_slim.inc": {False},
    "inception_v3.inc": {True},
    "inception_v4.inc": {False},
    "inception_resnet_v1.inc": set(),
    "inception_resnet_v2.inc": {False},
    "variants/inception_resnet_v2_paper.inc": set(),
}


def _nodes(spec, op):
    g = load(spec).graph
    return [g.nodes[n] for n in g.nodes if g.nodes[n]["op"] == op]


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_conv_conventions(spec):
    kinds = {(n["attrs"]["bn"], n["attrs"]["bias"], n["attrs"]["act"]) for n in _nodes(spec, "conv")}
    assert kinds == CONV_KINDS[spec]


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_avgpool_divisor(spec):
    padded = {n["attrs"]["count_pad"] for n in _nodes(spec, "avgpool") if n["attrs"]["pad"] != "V"}
    assert padded == AVGPOOL_COUNT_PAD[spec]


def test_googlenet_paper_form_has_lrn_and_5x5():
    lrn = _nodes("googlenet.inc", "lrn")
    assert [(n["attrs"]["size"], n["attrs"]["alpha"], n["attrs"]["beta"]) for n in lrn] == [(5, 1e-4, 0.75)] * 2
    kernels = {n["attrs"]["kernel"] for n in _nodes("googlenet.inc", "conv")}
    assert (5, 5) in kernels
    assert _nodes("variants/googlenet_torchvision.inc", "lrn") == []
    assert (5, 5) not in {n["attrs"]["kernel"] for n in _nodes("variants/googlenet_torchvision.inc", "conv")}


@pytest.mark.parametrize("spec, dropouts", [
    ("googlenet.inc", [0.7, 0.7, 0.4]),
    ("variants/googlenet_torchvision.inc", [0.7, 0.7, 0.2]),
])
def test_googlenet_dropouts(spec, dropouts):
    g = load(spec).graph
    order = list(nx.topological_sort(g))
    assert sorted(g.nodes[n]["attrs"]["p"] for n in order if g.nodes[n]["op"] == "dropout") == sorted(dropouts)
    trunk = [g.nodes[n]["attrs"]["p"] for n in order if g.nodes[n]["op"] == "dropout" and g.nodes[n]["aux"] is None]
    assert trunk == dropouts[-1:]


@pytest.mark.parametrize("spec, heads", [
    ("googlenet.inc", [("aux1", 0.3, "inception_4a"), ("aux2", 0.3, "inception_4d")]),
    ("variants/googlenet_torchvision.inc", [("aux1", 0.3, "inception4a"), ("aux2", 0.3, "inception4d")]),
    ("inception_v3.inc", [("aux_logits", 0.4, "mixed_6e")]),
])
def test_aux_heads_tap_the_right_blocks(spec, heads):
    net = load(spec)
    found = [(h["name"], h["weight"], h["tap"].split("/")[0]) for h in net.aux_heads]
    assert found == heads
    for h in net.aux_heads:  # the tap is the block's output: its last node
        block = h["tap"].split("/")[0]
        members = [n for n in net.graph.nodes if n.split("/")[0] == block]
        assert h["tap"] == members[-1]


# (scale, activation) of the residual sums, in order
RESIDUALS = {
    "inception_resnet_v1.inc": [(0.17, "relu")] * 5 + [(0.10, "relu")] * 10 + [(0.20, "relu")] * 5,
    "inception_resnet_v2.inc": [(0.17, "relu")] * 10 + [(0.10, "relu")] * 20 + [(0.20, "relu")] * 9 + [(1.0, None)],
    "variants/inception_resnet_v2_paper.inc": [(0.17, "relu")] * 5 + [(0.10, "relu")] * 10 + [(0.20, "relu")] * 5,
}


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_residual_scales(spec):
    g = load(spec).graph
    sums = [g.nodes[n]["attrs"] for n in g.nodes if g.nodes[n]["op"] == "add"]
    assert [(a["scales"][1], a["act"]) for a in sums] == RESIDUALS.get(spec, [])
    assert all(a["scales"][0] == 1.0 for a in sums)


def test_separable_first_conv_of_bn_inception():
    """Depthwise 7x7 with depth multiplier 8 (24 = 3 x 8 channels) then 1x1 to 64."""
    for spec in ("inception_bn.inc", "variants/inception_bn_slim.inc"):
        c = costs(spec).by_name()
        dw, pw = c["conv1_depthwise"], c["conv1"]
        assert dw.params == 7 * 7 * 3 * 8 and dw.shape == (24, 112, 112)
        assert pw.params == 24 * 64 + 2 * 64 and pw.shape == (64, 112, 112)


# Factorised towers: kernel order matters for loading weights even where costs do not see it
# (a 1x7 then 7x1 costs what a 7x1 then 1x7 costs). (kh, kw, filters) of each conv in a
# branch, in order, as in the reference block tables (sections 3.3, 4.2-4.7, 5.5, 5.7, 6.5, 6.7).
TOWERS = {
    ("inception_v3.inc", "mixed_6b/branch_1"): [(1, 1, 128), (1, 7, 128), (7, 1, 192)],
    ("inception_v3.inc", "mixed_6b/branch_2"): [(1, 1, 128), (7, 1, 128), (1, 7, 128), (7, 1, 128), (1, 7, 192)],
    ("inception_v3.inc", "mixed_7a/branch_1"): [(1, 1, 192), (1, 7, 192), (7, 1, 192), (3, 3, 192)],
    ("inception_v3.inc", "mixed_7b/branch_1"): [(1, 1, 384), (1, 3, 384), (3, 1, 384)],
    ("inception_v3.inc", "mixed_7b/branch_2"): [(1, 1, 448), (3, 3, 384), (1, 3, 384), (3, 1, 384)],
    ("inception_v4.inc", "stem/mixed_4a/branch_1"): [(1, 1, 64), (1, 7, 64), (7, 1, 64), (3, 3, 96)],
    ("inception_v4.inc", "inception_b.0/branch_1"): [(1, 1, 192), (1, 7, 224), (7, 1, 256)],
    ("inception_v4.inc", "inception_b.0/branch_2"): [(1, 1, 192), (7, 1, 192), (1, 7, 224), (7, 1, 224), (1, 7, 256)],
    ("inception_v4.inc", "reduction_b/branch_1"): [(1, 1, 256), (1, 7, 256), (7, 1, 320), (3, 3, 320)],
    ("inception_v4.inc", "inception_c.0/branch_1"): [(1, 1, 384), (1, 3, 256), (3, 1, 256)],
    ("inception_v4.inc", "inception_c.0/branch_2"): [(1, 1, 384), (3, 1, 448), (1, 3, 512), (1, 3, 256), (3, 1, 256)],
    ("inception_resnet_v1.inc", "block17.0/branch_1"): [(1, 1, 128), (1, 7, 128), (7, 1, 128)],
    ("inception_resnet_v1.inc", "block8.0/branch_1"): [(1, 1, 192), (1, 3, 192), (3, 1, 192)],
    ("inception_resnet_v2.inc", "block17.0/branch_1"): [(1, 1, 128), (1, 7, 160), (7, 1, 192)],
    ("inception_resnet_v2.inc", "block8.0/branch_1"): [(1, 1, 192), (1, 3, 224), (3, 1, 256)],
}


@pytest.mark.parametrize("spec, branch", sorted(TOWERS))
def test_factorised_tower_order(spec, branch):
    convs = [n for n in _nodes(spec, "conv") if n["scope"] == branch or n["scope"].startswith(branch + "/")]
    assert [(*n["attrs"]["kernel"], n["attrs"]["filters"]) for n in convs] == TOWERS[spec, branch]


# Concat order of blocks whose branches are not all convs (section 4.2: Mixed_3a is pool
# then conv, Mixed_5a conv then pool; reductions put the pool last).
CONCAT_ORDER = {
    ("inception_v4.inc", "stem/mixed_3a"): ["maxpool", "conv"],
    ("inception_v4.inc", "stem/mixed_5a"): ["conv", "maxpool"],
    ("inception_v4.inc", "reduction_a"): ["conv", "conv", "maxpool"],
    ("inception_v3.inc", "mixed_6a"): ["conv", "conv", "maxpool"],
    ("inception_bn.inc", "inception_3c"): ["conv", "conv", "maxpool"],
    ("inception_resnet_v2.inc", "mixed_7a"): ["conv", "conv", "conv", "maxpool"],
}


@pytest.mark.parametrize("spec, scope", sorted(CONCAT_ORDER))
def test_concat_order(spec, scope):
    g = load(spec).graph
    (concat,) = [n for n in g.nodes if g.nodes[n]["op"] == "concat" and g.nodes[n]["scope"] == scope]
    assert [g.nodes[i]["op"] for i in inputs(g, concat)] == CONCAT_ORDER[spec, scope]


# --- GoogLeNet Table 1 -------------------------------------------------------------------------

def _table1():
    with open(SPECS / "tables" / "googlenet_table1.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _printed(text: str) -> float:
    """A printed value in its unit: `2.7K` -> 2.7, `360M` -> 360."""
    return float(text.rstrip("KM"))


def _int(text: str) -> int:
    return int(text) if text else 0


def _out_size(text: str) -> tuple:
    h, w, c = (int(v) for v in text.split("x"))
    return c, h, w


def _formula(row: dict, c_in: int) -> tuple[int, int] | None:
    """(weights, biases) of a Table 1 row from its own columns and the input depth: the
    layer formulas (section 1.6), independent of the spec."""
    c_out = _out_size(row["output size"])[0]
    if row["type"].startswith("inception"):
        n1, r3, n3, r5, n5, pp = (_int(row[k]) for k in ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj"))
        assert n1 + n3 + n5 + pp == c_out
        return c_in * (n1 + r3 + r5 + pp) + 9 * r3 * n3 + 25 * r5 * n5, n1 + r3 + n3 + r5 + n5 + pp
    if row["type"] == "convolution":
        k = int(row["patch size/stride"].split("x")[0])
        reduce = _int(row["#3x3 reduce"])
        if reduce:
            return c_in * reduce + k * k * reduce * c_out, reduce + c_out
        return k * k * c_in * c_out, c_out
    if row["type"] == "linear":
        return c_in * c_out, c_out
    return None


# Section 1.6: exact weights of each row (no biases), as the reference recomputes them.
TABLE1_WEIGHTS = {
    "conv1": 9_408, "conv2_reduce+conv2": 114_688, "inception_3a": 163_328, "inception_3b": 388_096,
    "inception_4a": 375_552, "inception_4b": 448_512, "inception_4c": 509_440, "inception_4d": 604_672,
    "inception_4e": 867_328, "inception_5a": 1_042_432, "inception_5b": 1_442_816, "classifier": 1_024_000,
}
# Rows whose printed ops the layers cannot give (section 1.6): every other row can.
TABLE1_OPS_NOT_REPRODUCIBLE = {"conv1", "inception_5a"}


def _param_depth(graph, members: set) -> int:
    """Layers with parameters on the longest path through `members` (Table 1's depth)."""
    sub = graph.subgraph(members)
    best = {}
    for n in nx.topological_sort(sub):
        own = 1 if graph.nodes[n]["op"] in ("conv", "linear") else 0
        best[n] = own + max((best[p] for p in sub.predecessors(n)), default=0)
    return max(best.values(), default=0)


def _members(graph, scope_key: str) -> set:
    parts = scope_key.split("+")
    return {n for n in graph.nodes if any(n == p or n.startswith(p + "/") for p in parts)}


def test_table1_rows_map_to_the_spec():
    rows = _table1()
    assert len(rows) == 19
    unmapped = [r["type"] for r in rows if not r["scope"]]
    assert unmapped == ["softmax"]  # the spec ends in logits


@pytest.mark.parametrize("row", [r for r in _table1() if r["scope"]], ids=lambda r: r["scope"])
def test_table1_row(row):
    net = load("googlenet.inc")
    rows = _table1()
    previous = rows[rows.index(row) - 1]["output size"] if rows.index(row) else "224x224x3"
    c_in = _out_size(previous)[0]
    params, macs, shape = stage("googlenet.inc", row["scope"])
    # output size as printed (H x W x C; a flat vector is 1 x 1 x n)
    assert (shape if len(shape) == 3 else (shape[0], 1, 1)) == _out_size(row["output size"])
    # depth: parameterised layers on the longest path
    assert _param_depth(net.graph, _members(net.graph, row["scope"])) == int(row["depth"])
    formula = _formula(row, c_in)
    if formula is None:
        assert params == macs == 0
        return
    weights, biases = formula
    assert weights == TABLE1_WEIGHTS[row["scope"]]
    assert params == weights + biases  # the spec's layers are the table's filter counts
    ops = _printed(row["ops"])
    if row["scope"] in TABLE1_OPS_NOT_REPRODUCIBLE:
        assert abs(macs / 1e6 - ops) > 1
    else:
        assert abs(macs / 1e6 - ops) < 1  # printed rounded or truncated to whole millions


def test_table1_first_conv_is_not_the_dense_conv():
    """Table 1's first row (2.7K params, 34M ops) is not reproducible by the dense 7x7 conv
    that the paper's own released model (and the spec) has; a depthwise-separable 7x7 with
    depth multiplier 8 followed by a 1x1 to 64 channels gives both printed numbers."""
    row = _table1()[0]
    assert (row["params"], row["ops"]) == ("2.7K", "34M")
    dense = costs("googlenet.inc").by_name()["conv1"]
    weights = dense.params - 64  # without the biases
    assert weights == 7 * 7 * 3 * 64 == 9_408
    for k in (1000, 1024):
        assert round(weights / k, 1) != 2.7
    assert round(dense.macs / 1e6) != 34

    separable = incdsl.load("""
network separable_conv1:
    input 3x224x224
    conv 7x7 24 /2 pad = 3 groups = 3 bias = no act = off
    conv 1x1 64 bias = no
""")
    c = incdsl.count_costs(separable)
    assert c.total.params == 1_176 + 1_536
    assert round(c.total.params / 1000, 1) == _printed(row["params"])
    assert round(c.total.macs / 1e6) == _printed(row["ops"])
    assert separable.output_shape == _out_size(row["output size"])


def test_table1_params_read_as_k_1024_where_exact():
    """The two rows whose printed params are exact divide by 1024, not 1000 (section 1.6)."""
    exact = {r["scope"]: r for r in _table1() if r["scope"] in ("conv2_reduce+conv2", "classifier")}
    for scope, row in exact.items():
        assert TABLE1_WEIGHTS[scope] / 1024 == _printed(row["params"])


def test_table1_printed_columns_sum_to_the_papers_budget():
    rows = _table1()
    assert math.isclose(sum(_printed(r["params"]) for r in rows if r["params"]), 6797.7)
    assert sum(_printed(r["ops"]) for r in rows if r["ops"]) == 1502


def test_googlenet_depth_is_22():
    net = load("googlenet.inc")
    trunk = {n for n in net.graph.nodes if net.graph.nodes[n]["aux"] is None}
    assert _param_depth(net.graph, trunk) == 22


# --- against the reference implementations (optional) -----------------------------------------

def _module_costs(model, example):
    """{child name: (params, output shape without batch)} of a torch model's top-level children."""
    import torch
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
             for name, m in model.named_children()]
    model.eval()
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    return {name: (sum(p.numel() for p in m.parameters()), shapes.get(name)) for name, m in model.named_children()}


def test_googlenet_torchvision_matches_torchvision_module_by_module():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    model = tv.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    found = _module_costs(model, torch.zeros(1, 3, 224, 224))
    ours = stages("variants/googlenet_torchvision.inc")
    for name, (params, shape) in found.items():
        if name == "dropout":
            continue
        assert ours[name][0] == params, name
        if shape is not None:  # aux heads do not run in eval mode
            assert ours[name][2][-len(shape):] == shape, name


def test_inception_v3_matches_torchvision_module_by_module():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    model = tv.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    found = _module_costs(model, torch.zeros(1, 3, 299, 299))
    ours = stages("inception_v3.inc")
    names = {"AuxLogits": "aux_logits"}
    for name, (params, shape) in found.items():
        if name == "dropout":
            continue
        key = names.get(name, name.lower())
        assert ours[key][0] == params, name
        if shape is not None:
            assert ours[key][2][-len(shape):] == shape, name


def _randomise_batch_norm(model, torch):
    """Non-trivial BN statistics and affine values, so that a misplaced BN would show."""
    gen = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("spec, builder, size", [
    ("variants/googlenet_torchvision.inc", "googlenet", 224),
    ("inception_v3.inc", "inception_v3", 299),
])
def test_compiled_spec_computes_what_torchvision_computes(spec, builder, size):
    """Same weights, same input, same logits: paddings, pool rounding, pool divisors and
    concat orders all agree with torchvision (aux heads aside, which do not run in eval).
    Weights are copied tensor by tensor in order, the shapes checked pairwise."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = getattr(tv.models, builder)(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    _randomise_batch_norm(reference, torch)
    model = incdsl.to_torch(load(spec))
    ours = {k: v for k, v in model.state_dict().items() if not k.lower().startswith("aux")}
    theirs = reference.state_dict()
    assert len(ours) == len(theirs)
    for (key, value), (ref_key, ref_value) in zip(ours.items(), theirs.items()):
        assert value.shape == ref_value.shape, (key, ref_key)
    model.load_state_dict(dict(zip(ours, theirs.values())), strict=False)
    model.eval()
    reference.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
