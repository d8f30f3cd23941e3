"""The forms the 2016 zoo needs (issue 12): channel zero-padding, mean/max/weighted joins,
multiply and gate joins, adaptive pooling, stochastic residuals and learned scales.

`tests/test_ops.py` already checks, costs, draws and compiles every op's example; these tests
check what each form computes, against plain PyTorch written here, and its diagnostics.
"""
from __future__ import annotations

import pytest

import incdsl

torch = pytest.importorskip("torch")


def net(body: str, input: str = "4x8x8"):
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return incdsl.load(f"network t:\n    input {input}\n{lines}\n")


def model_of(network, seed: int = 0):
    return incdsl.to_torch(network, seed=seed)


def shapes(network) -> list:
    return [network.graph.nodes[n]["shape"] for n in network.layers]


# --- 1. pad_channels ---------------------------------------------------------------------

def test_pad_channels_appends_zeros_after():
    n = net("pad_channels 7")
    assert n.output_shape == (7, 8, 8)
    assert incdsl.count_costs(n).total.params == 0
    x = torch.randn(2, 4, 8, 8)
    y = model_of(n).eval()(x)
    assert torch.equal(y[:, :4], x) and not y[:, 4:].any()


def test_pad_channels_both_puts_the_odd_channel_after():
    x = torch.randn(2, 4, 8, 8)
    y = model_of(net("pad_channels 9 place = both")).eval()(x)
    assert not y[:, :2].any() and torch.equal(y[:, 2:6], x) and not y[:, 6:].any()


def test_option_a_shortcut_matches_the_cifar_reference():
    """ResNet option A as the common CIFAR code writes it: x[:, :, ::2, ::2] padded by
    planes // 4 channels on both sides."""
    n = net("""
residual(act = off):
    conv 3x3 8 /2 pad = 1 bias = no act = off
    shortcut: maxpool 1x1 /2 -> pad_channels 8 place = both
""")
    assert not n.warnings  # a 1x1 window at stride 2 skips rows by design
    model = model_of(n).eval()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 4, 8, 8)
    want = conv(x) + torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
    assert torch.allclose(model(x), want, atol=1e-6)
    assert incdsl.count_costs(n).total.params == conv.weight.numel()


def test_pad_channels_cannot_shrink(load_error):
    err = load_error("network t:\n    input 4x8x8\n    pad_channels 3\n").render()
    assert "cannot shrink the 4x8x8 input to 3 channels" in err and "at least 4" in err


def test_pad_channels_place_is_checked(load_error):
    assert "expected `after` or `both`" in load_error("network t:\n    input 4x8x8\n    pad_channels 6 place = S\n").render()


# --- 7. mean, max, weighted add ----------------------------------------------------------

THREE = """
{head}:
    branch: conv 3x3 4 S act = off
    branch: conv 1x1 4 act = off
    branch: identity
"""


def branch_outputs(model, x):
    """The three branch tensors of THREE: the two convs (in module order) and the input."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return [convs[0](x), convs[1](x), x]


@pytest.mark.parametrize("head, combine", [
    ("mean", lambda a, b, c: (a + b + c) / 3),
    ("max", lambda a, b, c: torch.maximum(torch.maximum(a, b), c)),
    ("add(weights = (0.5, 0.25, -1))", lambda a, b, c: 0.5 * a + 0.25 * b - c),
])
def test_elementwise_joins_compute_their_formula(head, combine):
    n = net(THREE.format(head=head))
    model = model_of(n).eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(model(x), combine(*branch_outputs(model, x)), atol=1e-5)
    assert n.output_shape == (4, 8, 8)


def test_weights_are_drawn_on_the_arrows():
    from incdsl.render.graphviz import build_dot
    from incdsl.render.style import DrawOptions
    dot = build_dot(net(THREE.format(head="add(weights = (0.5, 0.25, 2))")), DrawOptions(level="layer"))
    assert "scale 0.5" in dot and "scale 0.25" in dot and "scale 2" in dot


@pytest.mark.parametrize("head, message", [
    ("add(weights = (0.5, 0.5))", "`add` has 3 branches but 2 weights"),
    ("add(weights = (0.5, yes, 1))", "expected one number per branch"),
    ("mean(drop_path = 1)", "expected a probability in [0, 1)"),
    ("max(0.5)", "`max` takes no positional arguments"),
])
def test_join_argument_errors(load_error, head, message):
    assert message in load_error("network t:\n    input 4x8x8" + THREE.format(head=head).replace("\n", "\n    ")).render()


@pytest.mark.parametrize("kind", ["mean", "max"])
def test_elementwise_joins_need_equal_shapes(load_error, kind):
    err = load_error(f"network t:\n    input 4x8x8\n    {kind}:\n        branch: conv 1x1 4\n        branch: conv 1x1 5\n")
    assert f"the branches of `{kind}` have different shapes" in err.render()


def test_join_word_without_body_is_explained(load_error):
    err = load_error("network t:\n    input 4x8x8\n    conv 1x1 4 -> mean\n").render()
    assert "`mean` needs a body" in err


def test_elementwise_joins_cost_nothing():
    for head in ("mean(drop_path = 0.2)", "max", "add(weights = (1, 2, 3))"):
        costs = incdsl.count_costs(net(THREE.format(head=head)))
        assert (costs.total.params, costs.total.macs) == (16 * 9 + 16 + 8, (16 * 9 + 16) * 64)  # 8 biases


def test_mean_drop_path_keeps_each_input_at_its_rate():
    """FractalNet's local drop-path: each of n inputs dropped with probability p for the whole
    batch, at least one kept. An input is kept with probability (1 - p) + p**n / n; the output
    is the mean of the kept inputs. Inputs 1, 10, 100 tell the kept set from the output."""
    from incdsl.torch.layers import Mean
    torch.manual_seed(0)
    p, n, trials = 0.5, 3, 3000
    mean = Mean(p).train()
    xs = [torch.full((2, 1), v) for v in (1.0, 10.0, 100.0)]
    kept = torch.zeros(n)
    for _ in range(trials):
        y = mean(*xs)
        assert torch.equal(y[0], y[1])  # one draw for the whole batch
        subsets = {(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1) if a + b + c}
        match = [s for s in subsets if abs(float(y[0, 0]) - sum(v * k for v, k in zip((1, 10, 100), s)) / sum(s)) < 1e-4]
        assert len(match) == 1, float(y[0, 0])
        kept += torch.tensor(match[0], dtype=torch.float)
    rate = (1 - p) + p ** n / n
    std = (rate * (1 - rate) / trials) ** 0.5
    assert ((kept / trials - rate).abs() < 4 * std).all(), kept / trials
    assert torch.equal(mean.eval()(*xs), torch.full((2, 1), 37.0))


# --- 6. multiply and gate ----------------------------------------------------------------

SE = """
conv 3x3 8 S
multiply:
    branch: identity
    branch: gap -> conv 1x1 2 -> conv 1x1 8 act = sigmoid
"""


def test_squeeze_and_excitation_matches_a_hand_written_one():
    n = net(SE)
    model = model_of(n).eval()
    stem, reduce, expand = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(2, 4, 8, 8)
    u = torch.relu(stem(x))
    s = torch.sigmoid(expand(torch.relu(reduce(u.mean((2, 3), keepdim=True)))))
    assert torch.allclose(model(x), u * s, atol=1e-6)
    assert n.output_shape == (8, 8, 8)
    costs = incdsl.count_costs(n)
    convs = (stem, reduce, expand)
    assert costs.total.params == sum(p.numel() for c in convs for p in c.parameters())
    # the product is free: only the convs' multiply-adds count
    assert costs.total.macs == 8 * 4 * 9 * 64 + 8 * 2 + 2 * 8


def test_multiply_of_equal_shapes_keeps_the_receptive_field():
    n = net("multiply:\n    branch: conv 3x3 4 S\n    branch: conv 5x5 4 S")
    assert incdsl.count_costs(n).by_name()[n.output].rf == (5, 5)


def test_highway_gate():
    n = net("""
gate:
    branch: conv 3x3 4 S act = sigmoid
    branch: conv 3x3 4 S
    branch: identity
""")
    model = model_of(n).eval()
    t_conv, h_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(2, 4, 8, 8)
    t, h = torch.sigmoid(t_conv(x)), torch.relu(h_conv(x))
    assert torch.allclose(model(x), t * h + (1 - t) * x, atol=1e-6)


@pytest.mark.parametrize("body, message", [
    ("multiply:\n    branch: identity\n    branch: gap -> conv 1x1 3", "shapes it cannot combine"),
    ("multiply:\n    branch: identity\n    branch: maxpool 2x2 /2", "shapes it cannot combine"),
    ("gate:\n    branch: identity\n    branch: identity", "`gate` needs at least 3 branches"),
    ("gate:\n" + "    branch: identity\n" * 4, "`gate` takes three branches (T, H, X), found 4"),
    ("gate:\n    branch: identity\n    branch: identity\n    branch: conv 1x1 5", "the branches of `gate` have different shapes"),
])
def test_multiply_and_gate_errors(load_error, body, message):
    spec = "network t:\n    input 4x8x8\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"
    assert message in load_error(spec).render()


# --- 2. stochastic depth, drop path, swapout ---------------------------------------------
# Each rate is estimated from N independent draws and must lie within 4 binomial standard
# deviations, sqrt(q (1 - q) / N), of its probability q; seeds are fixed, so the tests are
# deterministic, and a wrong rule (another probability, per-sample where per-batch is meant,
# a missing rescale) misses by far more.

def within(count, trials, q) -> bool:
    return abs(count / trials - q) < 4 * (q * (1 - q) / trials) ** 0.5


def residual_model(args: str, shortcut: str = "", depth: int = 4, input: str = "4x8x8"):
    """x -> x + (branch: a bias-free 3x3 conv, no activation), with the residual's `args`,
    compiled for the `input` size the test feeds it (a model refuses any other)."""
    body = f"residual({args}, act = off):\n    conv 3x3 {depth} S bias = no act = off"
    if shortcut:
        body += f"\n    shortcut: {shortcut}"
    n = net(body, input)
    model = model_of(n).double()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return n, model, conv


def test_stochastic_depth_drops_the_whole_batch_at_rate_one_minus_survive():
    n, model, conv = residual_model("survive = 0.7", input="4x6x6")
    assert [n.graph.nodes[v]["op"] for v in n.layers] == ["conv", "stochastic_depth", "add"]
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        f = conv(x)
        kept, trials = 0, 1000
        model.train()
        for _ in range(trials):
            y = model(x)
            if torch.allclose(y, x + f):
                kept += 1
            else:
                assert torch.equal(y, x)  # dropped: the whole mini-batch at once, kept ones unscaled
        assert within(kept, trials, 0.7), kept
        assert torch.allclose(model.eval()(x), x + 0.7 * f)


def test_separated_stochastic_depth_drops_real_and_padded_channels_independently():
    """PyramidSepDrop: a 6-channel branch on a 4-channel input padded to 6; channels 0-3 and
    4-5 of the branch each survive with p = 0.6, independently: the four outcomes have
    probabilities 0.36, 0.24, 0.24, 0.16."""
    n, model, conv = residual_model("survive = 0.6, separate = yes", "pad_channels 6", depth=6, input="4x6x6")
    split = [n.graph.nodes[v]["attrs"] for v in n.layers if n.graph.nodes[v]["op"] == "stochastic_depth"]
    assert split == [{"survive": 0.6, "split": 4}]
    torch.manual_seed(1)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        f = conv(x)
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 2))
        outcomes, trials = {}, 500
        model.train()
        for _ in range(trials):
            d = model(x) - padded
            key = (bool(d[:, :4].abs().sum() > 0), bool(d[:, 4:].abs().sum() > 0))
            assert torch.allclose(d[:, :4], f[:, :4] * key[0]) and torch.allclose(d[:, 4:], f[:, 4:] * key[1])
            outcomes[key] = outcomes.get(key, 0) + 1
        for (a, b), q in {(True, True): 0.36, (True, False): 0.24, (False, True): 0.24, (False, False): 0.16}.items():
            assert within(outcomes.get((a, b), 0), trials, q), outcomes
        assert torch.allclose(model.eval()(x), padded + 0.6 * f)


def test_drop_path_drops_samples_and_rescales_the_kept():
    n, model, conv = residual_model("drop_path = 0.3", input="4x4x4")
    torch.manual_seed(2)
    x = torch.randn(64, 4, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        f = conv(x)
        kept, total, trials = 0, torch.zeros_like(x), 60
        model.train()
        for _ in range(trials):
            y = model(x)
            on = torch.tensor([torch.allclose(y[i], x[i] + f[i] / 0.7) for i in range(len(x))])
            off = torch.tensor([torch.equal(y[i], x[i]) for i in range(len(x))])
            assert bool((on ^ off).all())  # each sample: dropped, or kept and scaled by 1 / (1 - p)
            kept += int(on.sum())
            total += y
        assert within(kept, trials * len(x), 0.7), kept
        assert torch.allclose(model.eval()(x), x + f)  # identity at inference
        # unbiased: the branch's factor b / (1 - p), b ~ Bernoulli(0.7), has mean 1 and variance 0.3 / 0.7
        factor = ((total / trials - x) / f).mean()
        assert abs(float(factor) - 1) < 4 * (0.3 / 0.7 / (trials * len(x))) ** 0.5


def test_swapout_masks_every_unit_of_both_paths_independently():
    n, model, conv = residual_model("swapout = (0.8, 0.4)", input="4x16x16")
    assert [n.graph.nodes[v]["op"] for v in n.layers] == ["conv", "swapout", "swapout", "add"]
    torch.manual_seed(3)
    x = torch.randn(16, 4, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        f = conv(x)
        y = model.train()(x)
        candidates = torch.stack([torch.zeros_like(x), x, f, x + f])  # (identity kept, branch kept) = 00 10 01 11
        which = (candidates - y).abs().argmin(0)
        assert torch.allclose(candidates.gather(0, which[None])[0], y)
        units = which.numel()
        for code, q in {0: 0.2 * 0.6, 1: 0.8 * 0.6, 2: 0.2 * 0.4, 3: 0.8 * 0.4}.items():
            assert within(int((which == code).sum()), units, q), code
        assert torch.allclose(model.eval()(x), 0.8 * x + 0.4 * f)


def test_survival_decays_linearly_over_a_repeat():
    """Huang et al.'s linear decay rule, p_l = 1 - l / L * (1 - p_L), with `repeat ... as i`."""
    n = incdsl.load("""
block unit(survive):
    residual(survive = survive):
        conv 3x3 4 S
network t:
    input 4x8x8
    repeat 4 as i: unit(survive = 1 - 0.5 * (i + 1) / 4)
""")
    survive = [n.graph.nodes[v]["attrs"]["survive"] for v in n.layers if n.graph.nodes[v]["op"] == "stochastic_depth"]
    assert survive == pytest.approx([0.875, 0.75, 0.625, 0.5])


def test_stochastic_forms_change_no_count_and_are_drawn_with_their_probability():
    from incdsl.render.graphviz import build_dot
    from incdsl.render.style import DrawOptions
    plain = incdsl.count_costs(net("residual:\n    conv 3x3 4 S"))
    for args, shown in (("survive = 0.75", "survive 0.75"), ("drop_path = 0.2", "Drop path (0.2)"),
                        ("swapout = (0.9, 0.5)", "keep 0.9"), ("survive = 1", None), ("drop_path = 0", None)):
        n = net(f"residual({args}):\n    conv 3x3 4 S")
        costs = incdsl.count_costs(n)
        assert (costs.total.params, costs.total.macs) == (plain.total.params, plain.total.macs)
        if shown is None:  # keeps everything: no layer is added
            assert len(n.layers) == 2
        else:
            assert shown in build_dot(n, DrawOptions(level="layer"))


@pytest.mark.parametrize("args, message", [
    ("survive = 0.8, drop_path = 0.1", "`residual` takes one of `survive`, `drop_path` and `swapout`"),
    ("separate = yes", "`separate = yes` splits stochastic depth: give `survive` too"),
    ("survive = 0", "expected a survival probability in (0, 1]"),
    ("survive = 1.5", "expected a survival probability in (0, 1]"),
    ("drop_path = 1", "expected a probability in [0, 1)"),
    ("swapout = 0.5", "expected two survival probabilities"),
    ("swapout = (0.5, 0)", "expected two survival probabilities"),
    ("survive = relu", "expected a survival probability"),
])
def test_stochastic_residual_errors(load_error, args, message):
    err = load_error(f"network t:\n    input 4x8x8\n    residual({args}):\n        conv 3x3 4 S\n")
    assert message in err.render()
    assert err.span.line == 3


# --- 5. learned scalars: residual(scale = learned), prelu --------------------------------

def test_learned_residual_scale_is_one_parameter_starting_at_its_init():
    plain = incdsl.count_costs(net("residual:\n    conv 3x3 4 S")).total
    for args, init in (("scale = learned", 0.0), ("scale = learned(0.25)", 0.25), ("learned(-1)", -1.0)):
        n = net(f"residual({args}, act = off):\n    conv 3x3 4 S bias = no act = off")
        costs = incdsl.count_costs(n).total
        assert (costs.params, costs.macs) == (plain.params - 4 + 1, plain.macs)  # no bias; one scalar
        model = model_of(n).eval()
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        (scale,) = [p for name, p in model.named_parameters() if "learned_scale" in name]
        assert scale.item() == init
        x = torch.randn(2, 4, 8, 8)
        with torch.no_grad():
            assert torch.allclose(model(x), x + init * conv(x), atol=1e-6)


def test_learned_scale_learns():
    n = net("residual(scale = learned, act = off):\n    conv 3x3 4 S act = off")
    model = model_of(n).train()
    (scale,) = [p for name, p in model.named_parameters() if "learned_scale" in name]
    model(torch.randn(2, 4, 8, 8)).square().sum().backward()
    assert scale.grad is not None and scale.grad.item() != 0


def test_learned_scale_is_drawn():
    from incdsl.render.graphviz import build_dot
    from incdsl.render.style import DrawOptions
    assert "Learned scale (init 0.25)" in build_dot(net("residual(scale = learned(0.25)):\n    conv 3x3 4 S"),
                                                     DrawOptions(level="layer"))


@pytest.mark.parametrize("args, message", [
    ("scale = relu", "expected a number, `learned` or `learned(INIT)`"),
    ("scale = learned()", "`learned` needs numeric arguments"),
    ("scale = learned(1, 2)", "`learned`:"),
])
def test_learned_scale_errors(load_error, args, message):
    assert message in load_error(f"network t:\n    input 4x8x8\n    residual({args}):\n        conv 3x3 4 S\n").render()


@pytest.mark.parametrize("shared, slopes", [("", 6), ("shared = yes", 1)])
def test_prelu_channel_wise_and_shared(shared, slopes):
    n = net(f"conv 1x1 6 act = off -> prelu {shared}", input="4x5x5")
    assert incdsl.count_costs(n).by_name()["prelu_0"].params == slopes
    model = model_of(n).eval()
    prelu = next(m for m in model.modules() if isinstance(m, torch.nn.PReLU))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert prelu.weight.shape == (slopes,) and torch.all(prelu.weight == 0.25)  # the paper's initial slope
    with torch.no_grad():
        prelu.weight.copy_(torch.linspace(0.1, 0.6, slopes))
        x = torch.randn(2, 4, 5, 5)
        assert torch.allclose(model(x), torch.nn.functional.prelu(conv(x), prelu.weight))


# --- every form: the counting tools agree with `cost --convention` ------------------------

@pytest.mark.parametrize("name", ["fvcore", "ptflops", "ptflops-aten", "thop", "torchinfo", "flop_counter"])
def test_counting_tools_agree_on_every_new_form(name):
    from pathlib import Path
    from incdsl.report.conventions import count_convention
    from speclib import quiet
    from counterlib import TOOLS
    package, run = TOOLS[name]
    pytest.importorskip(package)
    n = incdsl.load(str(Path(__file__).parent / "data" / "zoo_forms.inc"))
    model = model_of(n).eval()
    with quiet(), torch.no_grad():
        printed = run(model, torch.zeros(1, *n.input_shape))
    assert int(printed) == printed == count_convention(n, incdsl.count_costs(n), name)


@pytest.mark.slow  # the export takes seconds
def test_every_new_form_exports_to_onnx_with_the_same_outputs():
    """ONNX has no adaptive max pool: `AdaptiveMaxPool` exports as maxima over torch's windows."""
    from pathlib import Path
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from incdsl.torch.onnx import export_onnx
    n = incdsl.load(str(Path(__file__).parent / "data" / "zoo_forms.inc"))
    model = model_of(n).eval()
    session = ort.InferenceSession(export_onnx(model, n.input_shape), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *n.input_shape, generator=torch.Generator().manual_seed(0))
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), model(x), atol=1e-5)


# --- the join words stay names elsewhere ----------------------------------------------------

def test_join_words_are_still_functions_and_parameters_in_expressions():
    n = incdsl.load("""
network t(max = 3, mean = 2):
    input 4x8x8
    conv 1x1 max(mean, max) -> conv 1x1 (mean * 2)
    max:
        branch: identity
        branch: identity
""")
    assert [n.graph.nodes[v]["op"] for v in n.layers] == ["conv", "conv", "identity", "identity", "max"]
    assert shapes(n)[:2] == [(3, 8, 8), (4, 8, 8)]  # max(mean, max) = 3, mean * 2 = 4


@pytest.mark.parametrize("spec, message", [
    ("network t:\n    input 4x8x8\n    mean:\n", "expected an indented body after `:`"),
    ("block gate:\n    conv 1x1 4\nnetwork t:\n    input 4x8x8\n", "`gate` is a built-in name"),
])
def test_join_word_misuse(load_error, spec, message):
    assert message in load_error(spec).render()
