"""`incdsl.to_torch`: the module contract, and every shipped spec compiled and checked.

For each spec in specs/ (at a small input where its shapes allow): parameter count equals the
cost pass, every node's output shape equals the IR (forward hooks), torch's FLOP counter
gives the IR's MACs, torch.fx traces it and the traced module computes the same.
"""
from __future__ import annotations

import keyword
from functools import lru_cache
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, strategies as st  # noqa: E402

import incdsl  # noqa: E402
from incdsl.torch.plan import RESERVED, legal_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SPECS = ROOT / "specs"
SPEC_FILES = sorted(p.relative_to(SPECS).as_posix() for p in [*SPECS.glob("*.inc"), *SPECS.glob("variants/*.inc")])
TEST_SPECS = ["torch_tiny.inc", "torch_layers.inc"]
SMALL = (75, 107, 139, 171, 203, 224, 299)  # input sizes tried, smallest first


def spec_path(name: str) -> Path:
    return DATA / name if name.startswith("torch_") else SPECS / name


@lru_cache(maxsize=None)
def small(name: str):
    """The network at the smallest input of SMALL that its shapes allow (else its own)."""
    for size in SMALL:
        try:
            return incdsl.load(spec_path(name), input=(3, size, size))
        except incdsl.IncdslError:
            continue
    return incdsl.load(spec_path(name))


@lru_cache(maxsize=4)
def built(name: str):
    net = small(name)
    return net, incdsl.to_torch(net, seed=0).eval()


def record_shapes(model):
    """Forward hooks on every node's module; returns (shapes dict, handles)."""
    shapes, handles = {}, []
    for node, path in model.node_paths.items():
        def hook(mod, args, out, node=node):
            shapes[node] = tuple(out.shape[1:])
        handles.append(model.get_submodule(path).register_forward_hook(hook))
    return shapes, handles


def run_all(model, x):
    """Trunk and every aux head, in eval mode (aux heads only run in training mode otherwise)."""
    if model.aux_names:
        feats, taps = model.forward_trunk(x)
        return model.forward_head(feats), model.forward_aux(*taps)
    return model(x), []


# --- the contract ------------------------------------------------------------------------------

def test_contract_on_a_network_with_aux_heads():
    net = incdsl.load(DATA / "torch_layers.inc")
    model = incdsl.to_torch(net, seed=0)
    assert isinstance(model, torch.nn.Module) and model.training
    assert model.num_classes == 7
    assert model.aux_names == ["nested", "side"] and model.aux_weights == [0.25, 0.5]
    x = torch.randn(4, 3, 33, 33)
    logits, aux = model(x)
    assert logits.shape == (4, 7) and isinstance(aux, list) and [a.shape for a in aux] == [(4, 7), (4, 7)]
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 7)
    feats = model.forward_features(x)
    assert feats.shape == (4, 40)  # the head of this spec starts after flatten -> bn
    torch.testing.assert_close(model.forward_head(feats), out)
    assert model.forward_head(feats, pre_logits=True).shape == (4, 12)


def test_state_dict_keys_follow_scopes():
    net = incdsl.load(DATA / "torch_tiny.inc")
    keys = set(incdsl.to_torch(net).state_dict())
    assert {"conv_0.conv.weight", "conv_0.bn.weight", "conv_0.bn.bias", "conv_0.bn.running_mean",
            "conv_0.bn.running_var", "conv_0.bn.num_batches_tracked"} <= keys
    assert "blk.1.branch_1.conv_1.conv.weight" in keys  # repeat member .1 -> index 1
    assert {"res.conv_0.conv.weight", "res.conv_0.conv.bias"} <= keys and "res.conv_0.bn.weight" not in keys
    assert {"linear_0.weight", "linear_0.bias", "aux1.linear_0.weight"} <= keys
    assert not any(k.startswith("conv_0.conv.bias") for k in keys)  # bn: no conv bias


def test_names_are_made_legal_and_unique():
    net = incdsl.load(DATA / "torch_layers.inc")
    model = incdsl.to_torch(net)
    paths = model.node_paths
    assert paths["forward"] == "forward_" and paths["class"] == "class_"
    assert paths["_private"] == "m_private" and paths["training"] == "training_"
    assert len(set(paths.values())) == len(paths)
    assert isinstance(model.get_submodule("repeat"), torch.nn.ModuleList)
    assert model.training is True  # the label `training` did not clobber the flag


def test_reserved_names_cover_torch_module_attributes():
    public = {n for n in dir(torch.nn.Module) if not n.startswith("_")}
    assert public <= RESERVED


def test_reserved_names_cover_the_compiled_network_api():
    """A layer labelled `keep_column` once replaced FractalNet's method of that name."""
    from incdsl.torch.layers import IncdslNet
    api = {n for n in set(dir(IncdslNet)) - set(dir(torch.nn.Module)) if not n.startswith("_")}
    assert api <= RESERVED, sorted(api - RESERVED)


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True))
def test_legal_name_is_an_identifier_that_shadows_nothing(name):
    legal = legal_name(name)
    assert legal.isidentifier() and not keyword.iskeyword(legal) and legal not in RESERVED
    assert not legal.startswith("_")
    if name.isidentifier() and not keyword.iskeyword(name) and name not in RESERVED and not name.startswith("_"):
        assert legal == name


def test_seed_makes_initialisation_deterministic():
    net = incdsl.load(DATA / "torch_tiny.inc")
    a, b, c = (incdsl.to_torch(net, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv_0.conv.weight"], c["conv_0.conv.weight"])
    # documented initialisation: BN weight 1, bias 0; conv bias 0; Kaiming (fan in) std for convs
    assert torch.equal(a["conv_0.bn.weight"], torch.ones(16)) and torch.equal(a["res.conv_0.conv.bias"], torch.zeros(36))
    w = incdsl.to_torch(incdsl.load(
        "network t:\n    input 64x8x8\n    conv 3x3 256 S as c\n"), seed=0).state_dict()["c.conv.weight"]
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 0.003


def test_num_classes_and_reset_classifier():
    net = incdsl.load(DATA / "torch_tiny.inc")
    model = incdsl.to_torch(net, num_classes=5, seed=0)
    assert model.num_classes == 5
    logits, aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and aux[0].shape == (2, 5)
    model.reset_classifier(3)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 36)  # pre-logits features
    assert model.get_classifier() is not None
    no_head = incdsl.load("network t:\n    input 3x8x8\n    conv 3x3 4 S\n")
    with pytest.raises(ValueError, match="no linear classifier"):
        incdsl.to_torch(no_head, num_classes=3)


def test_dtype_device_layout_and_autocast():
    net = incdsl.load(DATA / "torch_layers.inc")
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(2, 3, 33, 33)
    ref = model(x)
    torch.testing.assert_close(model.double()(x.double()).float(), ref, rtol=1e-4, atol=1e-5)
    model.float()
    cl = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x.to(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert not any(b.device.type != "cpu" for b in model.buffers())


def train_steps(model, x, y, steps: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        logits, aux = out if isinstance(out, tuple) else (out, [])
        loss = torch.nn.functional.cross_entropy(logits, y)
        for w, a in zip(model.aux_weights, aux):
            loss = loss + w * torch.nn.functional.cross_entropy(a, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    net = incdsl.load(DATA / "torch_tiny.inc")
    model = incdsl.to_torch(net, seed=0)
    for m in model.modules():  # dropout off: a deterministic decrease
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    losses = train_steps(model, x, y, 8)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.8 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_FILES)
def test_shipped_spec_trains(name):
    torch.manual_seed(0)
    net = small(name)
    model = incdsl.to_torch(net, seed=0)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x, y = torch.randn(4, *net.input_shape), torch.arange(4)
    losses = train_steps(model, x, y, 6)
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_torch_compile_gives_the_same_outputs():
    net = incdsl.load(DATA / "torch_layers.inc")
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(2, 3, 33, 33)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


# --- every spec ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SPEC_FILES + TEST_SPECS)
def test_parameter_count_equals_cost_pass(name):
    net = incdsl.load(spec_path(name))
    with torch.device("meta"):  # counting needs no memory or initialisation
        model = incdsl.to_torch(net)
    costs = incdsl.count_costs(net)
    assert sum(p.numel() for p in model.parameters()) == costs.total_with_aux.params
    aux = tuple(p + "." for p in model.aux_paths)
    trunk = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(aux))
    assert trunk == costs.total.params


@pytest.mark.parametrize("name", SPEC_FILES + TEST_SPECS)
def test_node_shapes_and_macs_equal_the_ir(name):
    from torch.utils.flop_counter import FlopCounterMode
    net, model = built(name)
    shapes, handles = record_shapes(model)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            run_all(model, torch.randn(1, *net.input_shape))
    finally:
        for h in handles:
            h.remove()
    wrong = {n: (shapes.get(n), net.graph.nodes[n]["shape"]) for n in model.node_paths
             if shapes.get(n) != tuple(net.graph.nodes[n]["shape"])}
    assert not wrong
    assert set(model.node_paths) == set(net.graph.nodes) - {net.input}
    assert counter.get_total_flops() == 2 * incdsl.count_costs(net).total_with_aux.macs


@pytest.mark.parametrize("name", SPEC_FILES + TEST_SPECS)
def test_fx_symbolic_trace(name):
    import torch.fx
    net, model = built(name)
    traced = torch.fx.symbolic_trace(model)
    if name in TEST_SPECS or "v4" in name:  # running the others too costs time and shows nothing new
        x = torch.randn(1, *net.input_shape)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x))
    called = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    convs = [model.node_paths[n] + ".conv" for n in net.layers if net.graph.nodes[n]["op"] == "conv"]
    assert convs and set(convs) <= called  # every trunk convolution appears in the traced graph
