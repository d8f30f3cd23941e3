"""The CIFAR-10 zoo, items 13-24 of issue 12 (specs/zoo/cifar/): each spec's exact totals, the
papers' own counts in specs/tables/zoo.csv (`cost --against`), drawings at network and block
level, standalone source, a few training steps, the training-time layers each paper asks for
(stochastic depth, swapout, drop-path, learned scalars) read off the IR, and hand-written PyTorch
references that give the same outputs for the same weights (DenseNet, PyramidNet, FractalNet in
eval mode, ResNet-110 with stochastic depth and Swapout at inference).

The default run trains small configurations of the same specs (`--set` values); the full ones
are `slow`.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

import incdsl
from incdsl.render.graphviz import DrawOptions, build_dot
from incdsl.report.against import compare, read_table
from modellib import fractalnet_reference
from speclib import same_outputs

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT / "specs" / "zoo" / "cifar"
TABLE = ROOT / "specs" / "tables" / "zoo.csv"


# spec -> (parameters, multiply-adds at 32x32, a small configuration for the fast tests, a block to draw)
SPECS = {
    "wrn28_10.inc": (36_479_194, 5_243_328_768, dict(depth=10, k=1), "wide_group"),
    "ror3_wrn58_4.inc": (13_646_938, 1_983_564_288, dict(depth=10, k=1), "level2_group"),
    "densenet100_k24.inc": (27_249_082, 6_889_347_744, dict(depth=10, k=4), "dense_block"),
    "xception_cifar.inc": (20_827_442, 374_950_144, None, "strided"),
    "resnext29_16x64d.inc": (68_155_210, 10_688_866_304, dict(cardinality=2, width=4), "bottleneck_down"),
    "resnet110_sd.inc": (1_727_962, 252_887_680, dict(depth=20), "sd_stage"),
    "swapout_v2_32_w4.inc": (7_386_186, 1_096_485_376, dict(depth=8, k=1), "swapout_stage"),
    "wresnet_d.inc": (19_227_436, 2_800_927_360, dict(depth=16), "weighted_stage"),
    "pyramidnet110_a270.inc": (28_485_477, 4_717_983_724, dict(depth=20, alpha=12), "pyramid_stage"),
    "pyramidsepdrop182_a150.inc": (16_626_381, 2_946_036_028, dict(depth=20, alpha=12), "pyramid_stage"),
    "fractalnet20.inc": (33_724_618, 845_222_912, dict(base=8), "fractal"),
    "nas_v1.inc": (4_121_626, 2_307_724_176, None, "nas_layer"),
}
# specs without a paper's count that could be checked (zoo.csv has no row; the spec says so)
NO_ROW = {"swapout_v2_32_w4.inc", "wresnet_d.inc", "pyramidsepdrop182_a150.inc"}
# network -> the paper's printed count that its layers do not reproduce; the spec says why
EXPLAINED = {"ror3_wrn58_4": "13.3M", "pyramidnet110_a270": "28.3M", "fractalnet20": "38.6M", "nas_v1": "4.2M"}


def load(spec: str, params: dict | None = None) -> incdsl.Network:
    return _load(spec, tuple(sorted((params or {}).items())))


@lru_cache(maxsize=None)
def _load(spec: str, params: tuple) -> incdsl.Network:
    """Each configuration is lowered once for the whole module (WResNet-d has 2,978 layers);
    tests only read it."""
    return incdsl.load(str(CIFAR / spec), params=dict(params) or None)


def test_every_spec_of_this_part_exists():
    assert set(SPECS) <= {p.name for p in CIFAR.glob("*.inc")}


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_totals_are_exact(spec):
    net = load(spec)
    costs = incdsl.count_costs(net)
    assert (costs.total.params, costs.total.macs) == SPECS[spec][:2]
    assert net.input_shape == (3, 32, 32) and net.output_shape == (10,)
    header = (CIFAR / spec).read_text(encoding="utf-8")  # the comment states both
    assert f"{costs.total.params:,} parameters" in header and f"{costs.total.macs:,} multiply-adds" in header


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_the_papers_count_is_in_the_table_and_matches_or_is_explained(spec):
    table = read_table(str(TABLE))
    rows = {r["_line"]: r for r in table.rows}
    net = load(spec)
    found = [rec for rec in compare(table, net, incdsl.count_costs(net))]
    if spec == "xception_cifar.inc":  # the paper counts the ImageNet classifier
        net = load(spec, dict(classes=1000))
        found = list(compare(table, net, incdsl.count_costs(net)))
    if spec in NO_ROW:
        assert not found and "no row" in (CIFAR / spec).read_text(encoding="utf-8")
        return
    assert found, "no row of zoo.csv is about this configuration"
    for rec in found:
        row = rows[rec["line"]]
        assert row["source"] and "arXiv" in row["source"]
        if net.name in EXPLAINED:
            assert (row["params"], rec["verdict"]) == (EXPLAINED[net.name], "INCONSISTENT")
            assert "zoo.csv" in (CIFAR / spec).read_text(encoding="utf-8")
        else:
            assert rec["verdict"] == "matches", (row, rec)


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_draws_at_network_and_block_level(spec):
    net = load(spec)
    block = SPECS[spec][3]
    whole = build_dot(net)
    one = build_dot(net, DrawOptions(level="block", block=block))
    assert whole.startswith("digraph") and one.startswith("digraph")
    assert one != whole and "Previous layer" in one


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_compiles_to_standalone_source(spec):
    from incdsl.torch.source import generate_source

    text, cls, _ = generate_source(load(spec))
    tree = ast.parse(text)
    assert cls in [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= {"copy", "math", "torch"}  # the standard library and torch only


def stochastic(node: dict) -> bool:
    """Whether a layer drops paths while training (or weights its branch from zero, which holds
    the branch's gradient back for a step)."""
    return (node["op"] in ("stochastic_depth", "swapout", "drop_path", "learned_scale")
            or bool(node["attrs"].get("drop_path")))


def train_steps(net, steps: int = 2):
    """A few SGD steps on random data: the loss is finite and every trained tensor moved (in a
    network that drops paths while training, a unit dropped at every step may not: then the
    classifier moved, and after two steps most tensors did)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = incdsl.to_torch(net, seed=0).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(4, *net.input_shape), torch.tensor([0, 1, 2, 3])
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        optimiser.step()
    moved = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    if any(stochastic(net.graph.nodes[n]) for n in net.layers):
        assert list(before)[-1] in moved  # the classifier
        assert steps < 2 or 2 * len(moved) > len(before)
    else:
        assert len(moved) == len(before)
    return model


# the default run trains the networks whose layers behave differently while training; the
# others' small configurations train under `-m slow` with the full networks
TRAINING_FORMS = {"resnet110_sd.inc", "swapout_v2_32_w4.inc", "wresnet_d.inc", "pyramidsepdrop182_a150.inc",
                  "fractalnet20.inc", "ror3_wrn58_4.inc"}


@pytest.mark.parametrize("spec", [pytest.param(s, marks=[] if s in TRAINING_FORMS else [pytest.mark.slow])
                                  for s in sorted(s for s, v in SPECS.items() if v[2] is not None)])
def test_a_small_configuration_trains(spec):
    train_steps(load(spec, SPECS[spec][2]))


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_the_full_network_trains(spec):
    train_steps(load(spec), steps=1)


# --- hand-written references -------------------------------------------------------------

def densenet_reference(depth: int, k: int, classes: int = 10):
    """DenseNet for CIFAR (no bottleneck, no compression) as the paper's section 3 describes it,
    written with plain torch.nn; modules registered in the order they run."""
    import torch.nn as nn

    class Layer(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bn, self.conv = nn.BatchNorm2d(c), nn.Conv2d(c, k, 3, padding=1, bias=False)

        def forward(self, x):
            return torch_cat([x, self.conv(nn.functional.relu(self.bn(x)))])

    class Transition(nn.Sequential):
        def __init__(self, c):
            super().__init__(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1, bias=False), nn.AvgPool2d(2))

    n, c, layers = (depth - 4) // 3, 16, [nn.Conv2d(3, 16, 3, padding=1, bias=False)]
    for stage in range(3):
        for _ in range(n):
            layers.append(Layer(c))
            c += k
        if stage < 2:
            layers.append(Transition(c))
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def torch_cat(xs):
    import torch
    return torch.cat(xs, 1)


def test_densenet_equals_a_hand_written_reference():
    pytest.importorskip("torch")
    net = load("densenet100_k24.inc", dict(depth=13, k=6))
    assert sum(1 for n in net.layers if net.graph.nodes[n]["op"] == "conv") == 1 + 3 * 3 + 2
    same_outputs(net, densenet_reference(13, 6))


def test_densenet_reference_has_the_papers_count():
    """The hand-written reference at L = 100, k = 24 has the spec's parameters: the paper's 27.2M."""
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # shapes only
        reference = densenet_reference(100, 24)
    assert sum(p.numel() for p in reference.parameters()) == SPECS["densenet100_k24.inc"][0]


def pyramid_widths(depth: int, alpha: float) -> list[int]:
    """The units' depths as the authors' code computes them: alpha / 3n added to a float and
    rounded at every unit."""
    n = (depth - 2) // 6
    rate, width, widths = alpha / (3 * n), 16.0, []
    for _ in range(3 * n):
        width += rate
        widths.append(int(round(width)))
    return widths


def pyramidnet_reference(depth: int, alpha: float, classes: int = 10):
    """PyramidNet with basic units for CIFAR (Han et al. 2017, Figure 6(d) and section 3): the
    depth grows by alpha / (3n) a unit, rounded; a unit is BN -> conv -> BN -> ReLU -> conv -> BN,
    its shortcut a 2x2 average pool where the grid halves, then zero channels appended."""
    import torch
    import torch.nn as nn

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

        def forward(self, x):
            out = self.bn3(self.conv2(torch.relu(self.bn2(self.conv1(self.bn1(x))))))
            short = self.pool(x)
            n, c, h, w = short.shape
            return out + torch.cat([short, short.new_zeros(n, out.shape[1] - c, h, w)], 1)

    n, cin = (depth - 2) // 6, 16
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)]
    for j, width in enumerate(pyramid_widths(depth, alpha)):
        layers.append(Unit(cin, width, 2 if j in (n, 2 * n) else 1))
        cin = width
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def test_pyramidnet_equals_a_hand_written_reference():
    """A small configuration of the same spec (depth 20, alpha = 12: widths 17, 19, 20, ... 28,
    not multiples of the rate) against the reference written above."""
    pytest.importorskip("torch")
    same_outputs(load("pyramidnet110_a270.inc", dict(depth=20, alpha=12)), pyramidnet_reference(20, 12))


@pytest.mark.parametrize("depth, alpha", [(110, 270), (110, 84), (110, 48), (182, 150), (56, 37), (20, 12)])
def test_pyramidnet_widths_are_the_references(depth, alpha):
    """The closed form round(16 + alpha * j / 3n) gives the depths the reference accumulates."""
    net = load("pyramidnet110_a270.inc", dict(depth=depth, alpha=alpha))
    ours = [net.graph.nodes[n]["attrs"]["filters"] for n in net.layers if net.graph.nodes[n]["op"] == "conv"]
    assert ours == [16] + [w for w in pyramid_widths(depth, alpha) for _ in range(2)]


# --- the training-time behaviour each spec asks for, read off the IR ---------------------

def nodes_of(net, op: str) -> list[dict]:
    return [net.graph.nodes[n]["attrs"] for n in net.layers if net.graph.nodes[n]["op"] == op]


def linear_decay(units: int, last: float) -> list[float]:
    """Huang et al.'s rule: the l-th of L units survives with 1 - l / L * (1 - p_L)."""
    return [1 - l / units * (1 - last) for l in range(1, units + 1)]


def test_resnet110_drops_its_54_units_with_linearly_decaying_survival():
    net = load("resnet110_sd.inc")
    got = [a["survive"] for a in nodes_of(net, "stochastic_depth")]
    assert got == pytest.approx(linear_decay(54, 0.5)) and not any(a["split"] for a in nodes_of(net, "stochastic_depth"))


def test_swapout_masks_both_paths_of_every_unit():
    net = load("swapout_v2_32_w4.inc")
    keep = [a["keep"] for a in nodes_of(net, "swapout")]
    want = linear_decay(15, 0.5)
    assert keep == pytest.approx([p for p in want for _ in range(2)])  # shortcut, then branch


def test_pyramidsepdrop_splits_each_unit_at_its_input_depth():
    net = load("pyramidsepdrop182_a150.inc")
    drops = nodes_of(net, "stochastic_depth")
    assert [a["survive"] for a in drops] == pytest.approx(linear_decay(90, 0.5))
    assert [a["split"] for a in drops] == [16] + pyramid_widths(182, 150)[:-1]


def test_plain_pyramidnet_and_wrn_have_no_stochastic_layer():
    for spec in ("pyramidnet110_a270.inc", "wrn28_10.inc"):
        net = load(spec)
        assert not nodes_of(net, "stochastic_depth")


def test_ror_drops_its_27_blocks_but_not_its_level_shortcuts():
    net = load("ror3_wrn58_4.inc")
    assert [a["survive"] for a in nodes_of(net, "stochastic_depth")] == pytest.approx(linear_decay(27, 0.5))


def test_wresnet_weights_each_of_its_594_units_by_a_learned_scalar_from_zero():
    net = load("wresnet_d.inc")
    scales = nodes_of(net, "learned_scale")
    assert len(scales) == 3 * 198 and {a["init"] for a in scales} == {0.0}
    assert [a["survive"] for a in nodes_of(net, "stochastic_depth")] == pytest.approx(linear_decay(594, 0.5))


def test_fractalnet_equals_a_hand_written_reference_in_eval_mode():
    """The spec's joins (the columns that end at a level meet in one mean) against the reference
    built level by level; weights paired by data flow (the two register their convs in different
    orders)."""
    torch = pytest.importorskip("torch")

    net = load("fractalnet20.inc", dict(base=8))
    torch.manual_seed(0)
    same_outputs(net, fractalnet_reference((8, 16, 32, 64, 64)), by_flow=True, rtol=1e-5, atol=1e-6)


def test_fractalnet_reference_has_the_specs_count():
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        assert sum(p.numel() for p in fractalnet_reference().parameters()) == SPECS["fractalnet20.inc"][0]


def test_fractalnet_joins_drop_their_inputs_locally():
    joins = nodes_of(load("fractalnet20.inc"), "mean")
    assert len(joins) == 10 and {a["drop_path"] for a in joins} == {0.15}


# Figure 7 of Zoph & Le as the survey's code transcribes it: the layers each layer reads
# (besides the one before it), and the input depths that follow.
NAS_SKIPS = {3: [1], 4: [1, 2], 5: [3], 6: [2, 3, 4], 7: [2, 3, 4, 5], 8: [1, 6], 9: [1, 5, 6],
             10: [1, 3, 4, 5, 6, 7, 8], 11: [1, 2, 5, 6, 7, 8, 9], 12: [1, 2, 3, 4, 6], 13: [1, 3, 6, 7, 8, 9, 10, 11],
             14: [3, 7, 12], 15: [7, 11, 12, 13]}
NAS_FILTERS = [36, 48, 36, 36, 48, 48, 48, 36, 36, 36, 36, 48, 48, 48, 48]


def test_nas_layers_read_the_concatenation_of_their_inputs_padded_to_the_largest():
    net = load("nas_v1.inc")
    g = net.graph
    convs = [n for n in net.layers if g.nodes[n]["op"] == "conv"]
    depths = [g.nodes[next(iter(g.predecessors(n)))]["shape"][0] for n in convs]
    want = [3] + [sum(NAS_FILTERS[j - 1] for j in NAS_SKIPS.get(i, []) + [i - 1]) for i in range(2, 16)]
    assert depths == want
    # every concatenated input is brought to the largest input's size, centred
    for n in net.layers:
        if g.nodes[n]["op"] == "concat":
            sizes = {g.nodes[p]["shape"][1:] for p in g.predecessors(n)}
            assert len(sizes) == 1
    pads = [g.nodes[n]["attrs"]["pad"] for n in net.layers if g.nodes[n]["op"] == "zeropad"]
    assert pads and all(0 <= b - t <= 1 and 0 <= r - l <= 1 for t, b, l, r in pads)


def option_a(x, depth: int, stride: int):
    """ResNet's option-A shortcut as the Torch code of stochastic depth writes it: subsample,
    then append zero channels."""
    import torch

    x = x[:, :, ::stride, ::stride]
    n, c, h, w = x.shape
    return torch.cat([x, x.new_zeros(n, depth - c, h, w)], 1)


def resnet_sd_reference(depth: int, last: float, classes: int = 10):
    """ResNet for CIFAR (He et al. 2015, section 4.2) with option-A shortcuts, at inference
    under stochastic depth (Huang et al. 2016, equation 5): relu(shortcut + p_l * branch)."""
    import torch
    import torch.nn as nn

    n = (depth - 2) // 6
    survive = linear_decay(3 * n, last)

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride, p):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.stride, self.depth, self.p = stride, cout, p

        def forward(self, x):
            branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(option_a(x, self.depth, self.stride) + self.p * branch)

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for j in range(3 * n):
        cout = 16 * 2 ** (j // n)
        layers.append(Unit(cin, cout, 2 if j in (n, 2 * n) else 1, survive[j]))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def test_resnet_sd_at_inference_equals_a_hand_written_reference():
    """Eval mode scales each branch by its survival probability; the option-A shortcuts add zeros."""
    pytest.importorskip("torch")
    same_outputs(load("resnet110_sd.inc", dict(depth=20)), resnet_sd_reference(20, 0.5))


def test_resnet_sd_reference_has_the_specs_count():
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        assert sum(p.numel() for p in resnet_sd_reference(110, 0.5).parameters()) == SPECS["resnet110_sd.inc"][0]


def swapout_reference(depth: int, k: int, last: float, classes: int = 10):
    """Pre-activation ResNet for CIFAR, k times as wide, with swapout at inference (Singh et al.
    2016, deterministic inference): each unit gives p_l * shortcut + p_l * branch."""
    import torch
    import torch.nn as nn

    n = (depth - 2) // 6
    keep = linear_decay(3 * n, last)

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride, p):
            super().__init__()
            self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.stride, self.depth, self.p = stride, cout, p

        def forward(self, x):
            branch = self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))
            return self.p * option_a(x, self.depth, self.stride) + self.p * branch

    layers, cin = [nn.Conv2d(3, 16 * k, 3, 1, 1, bias=False)], 16 * k
    for j in range(3 * n):
        cout = 16 * k * 2 ** (j // n)
        layers.append(Unit(cin, cout, 2 if j in (n, 2 * n) else 1, keep[j]))
        cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def test_swapout_at_inference_equals_a_hand_written_reference():
    pytest.importorskip("torch")
    same_outputs(load("swapout_v2_32_w4.inc", dict(depth=14, k=1)), swapout_reference(14, 1, 0.5))


@pytest.mark.parametrize("spec, params", [("nas_v1.inc", {}), ("fractalnet20.inc", dict(base=8)),
                                          ("pyramidsepdrop182_a150.inc", dict(depth=20, alpha=12))])
def test_the_compiled_file_computes_what_to_torch_computes(spec, params, tmp_path):
    """The standalone source, imported, is the same network: zero-padded concatenations, mean
    joins and split stochastic depth included (eval mode)."""
    torch = pytest.importorskip("torch")
    from incdsl.torch.source import generate_source
    from modellib import import_file

    net = load(spec, params)
    text, cls, _ = generate_source(net)
    (tmp_path / "model.py").write_text(text, encoding="utf-8")
    ours = getattr(import_file(tmp_path / "model.py", f"gen_{net.name}"), cls)(seed=3).eval()
    ref = incdsl.to_torch(net, seed=3).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_cost_against_the_zoo_table_from_the_command_line(capsys):
    from incdsl.cli import main

    assert main(["cost", str(CIFAR / "resnet110_sd.inc"), "--against", str(TABLE)]) == 0
    assert "1 of 1 compared rows reproduced" in capsys.readouterr().out
    assert main(["cost", str(CIFAR / "pyramidnet110_a270.inc"), "--against", str(TABLE)]) == 0
    out = capsys.readouterr().out
    assert "params: the paper prints 28.3M, its layers give 28,485,477 (x1.01)" in out
