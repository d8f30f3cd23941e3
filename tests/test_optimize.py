"""`to_torch(optimize=...)` and `incdsl compile --optimize`: the rewrites of `torch/rewrite.py`
change speed only. Every level computes what level "none" computes, in eval and in training
mode (gradients and batch-norm statistics included), and keeps the spec's state dict.

Training-mode checks run in float64: in float32, batch norm over a batch of two amplifies
rounding differences (a wider GEMM sums in another order) through a deep network; in float64
the levels agree to 1e-10, which only an exact rewrite can do.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.torch.source import generate_source  # noqa: E402
from modellib import (SHIPPED, assert_eval_equal, assert_train_equal, pair, randomise_batch_norm,  # noqa: E402
                      small, unfused_grads)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
FUSION = str(DATA / "torch_fusion.inc")
LEVELS = ("train", "infer")


@pytest.fixture(scope="module")
def fusion_net():
    return incdsl.load(FUSION)


# --- the plan ----------------------------------------------------------------------------

def test_fusion_groups_take_siblings_and_leave_the_rest(fusion_net):
    fast = incdsl.to_torch(fusion_net, seed=0, optimize="train")
    fused = {path: members for path, members, _ in fast.fusion_plan}
    groups = sorted(fused.values())
    # network level, both instances of `mixed`, `biased` (bias, no bn), the aux head, a repeat
    # member; a 1x1 conv behind an average pool joins its siblings (the pool moves after it)
    assert ("branch_0.conv_0", "branch_1.conv_0", "branch_3.conv_0") in groups
    assert ("mixed.0.branch_0.conv_0", "mixed.0.branch_1.conv_0", "mixed.0.branch_3.conv_0") in groups
    assert ("mixed.1.branch_0.conv_0", "mixed.1.branch_1.conv_0", "mixed.1.branch_3.conv_0") in groups
    assert ("biased.branch_0.conv_0", "biased.branch_1.conv_0") in groups
    assert ("side.branch_0.conv_0", "side.branch_1.conv_0") in groups
    assert ("branch_4.repeat.0.conv_0", "branch_5.conv_0") in groups
    members = {m for g in groups for m in g}
    # another activation, another stride, grouped convolutions: not fused
    assert not members & {"branch_2.conv_0", "mixed.0.branch_2.conv_0", "biased.branch_2.conv_0",
                          "biased.branch_3.conv_0"}
    assert sum(type(m).__name__ == "FusedConvBnAct" for m in fast.modules()) == len(groups)
    for m in members | {"branch_3.avgpool_0", "mixed.0.branch_3.avgpool_0"}:  # moved into the fused modules
        with pytest.raises(AttributeError):
            fast.get_submodule(m)
    assert [len(fast.get_submodule(path).pools) for path, members, _ in fast.fusion_plan
            if members[0].startswith("mixed.0.")] == [1]


def test_level_none_source_has_no_rewrites(fusion_net):
    text, _, _ = generate_source(fusion_net)
    assert "fusions" not in text.split("# --- incdsl layers: end")[1]
    assert "self.optimize()" not in text
    optimised, _, _ = generate_source(fusion_net, optimize="train")
    assert "self.optimize()" in optimised and "optimize_level = 'train'" in optimised


def test_unknown_level_is_refused(fusion_net):
    with pytest.raises(ValueError, match="optimize must be one of"):
        incdsl.to_torch(fusion_net, optimize="fast")


# --- state dict ----------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_state_dict_keys_order_and_values_are_the_specs(fusion_net, level):
    plain = incdsl.to_torch(fusion_net, seed=3)
    fast = incdsl.to_torch(fusion_net, seed=3, optimize=level)
    a, b = plain.state_dict(), fast.state_dict()
    assert list(a) == list(b)  # same keys, same order: references pair layers by it
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    randomise_batch_norm(plain, seed=5)
    fast.load_state_dict(plain.state_dict())  # strict
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in fast.state_dict().items())


def test_a_missing_member_key_is_a_load_error(fusion_net):
    fast = incdsl.to_torch(fusion_net, seed=0, optimize="train")
    state = fast.state_dict()
    del state["mixed.0.branch_1.conv_0.conv.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        fast.load_state_dict(state)


def test_state_dict_of_a_nested_optimised_network(fusion_net):
    """The hooks honour the prefix of a network held by another module."""
    holder = torch.nn.Sequential(incdsl.to_torch(fusion_net, seed=0, optimize="infer"))
    plain = torch.nn.Sequential(incdsl.to_torch(fusion_net, seed=0))
    assert list(holder.state_dict()) == list(plain.state_dict())
    holder.load_state_dict(plain.state_dict())


# --- outputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_eval_outputs_equal_level_none(fusion_net, level):
    plain, fast = pair(fusion_net, level)
    assert_eval_equal(plain, fast, torch.randn(3, *fusion_net.input_shape))


@pytest.mark.parametrize("level", LEVELS)
def test_training_outputs_gradients_and_statistics_equal_level_none(fusion_net, level):
    plain, fast = pair(fusion_net, level, torch.float64)
    assert_train_equal(plain, fast, torch.randn(3, *fusion_net.input_shape, dtype=torch.float64))


def test_infer_folds_batch_norm_in_eval_only():
    net = incdsl.load(FUSION)
    fast = incdsl.to_torch(net, seed=0, optimize="infer")
    convs = [m for m in fast.modules() if hasattr(m, "folded_weight") and m.bn is not None]
    assert all(m.folded_weight is None for m in convs)  # built in training mode
    fast.eval()
    assert all(m.folded_weight is not None for m in convs)
    assert not any(k.startswith("folded") or ".folded_" in k for k in fast.state_dict())
    fast.train()
    assert all(m.folded_weight is None for m in convs)


def test_folded_copy_follows_loaded_weights_and_grad_mode(fusion_net):
    """A state dict loaded in eval mode refreshes the folded copy; with autograd on, eval mode
    computes through batch norm, so parameter gradients are those of level none."""
    plain, fast = pair(fusion_net, "infer")
    fast.eval()
    randomise_batch_norm(plain, seed=9)
    fast.load_state_dict(plain.state_dict())
    assert_eval_equal(plain, fast, torch.randn(2, *fusion_net.input_shape))
    x = torch.randn(2, *fusion_net.input_shape)
    plain.eval(), fast.eval()
    plain(x).sum().backward()
    fast(x).sum().backward()
    grads_a, grads_b = {k: p.grad for k, p in plain.named_parameters()}, unfused_grads(fast)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        if grads_a[k] is None:  # the aux head does not run in eval mode
            assert grads_b[k] is None
        else:
            torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-4, atol=1e-6, msg=k)


def test_same_seed_same_weights_as_level_none(fusion_net):
    a = incdsl.to_torch(fusion_net, seed=11).state_dict()
    b = incdsl.to_torch(fusion_net, seed=11, optimize="infer").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_layers_fixture_every_kind_at_every_level():
    """The layer-kind fixture of the backend tests (aux heads, odd paddings, keyword labels)."""
    net = incdsl.load(str(DATA / "torch_layers.inc"))
    for level in LEVELS:
        plain, fast = pair(net, level)
        assert_eval_equal(plain, fast, torch.randn(2, *net.input_shape))
        plain, fast = pair(net, level, torch.float64)
        assert_train_equal(plain, fast, torch.randn(4, *net.input_shape, dtype=torch.float64))


# --- weights from references ---------------------------------------------------------------

def test_torchvision_googlenet_weights_load_into_optimised_models():
    torchvision = pytest.importorskip("torchvision")
    net = incdsl.load(str(ROOT / "specs" / "variants" / "googlenet_torchvision.inc"))
    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=False)
    randomise_batch_norm(ref)
    ref.eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        expect = ref(x)
    for level in LEVELS:
        direct = incdsl.to_torch(net, seed=0, optimize=level)
        incdsl.load_weights(direct, ref.state_dict())  # by the state dict's order, through the hooks
        by_module = incdsl.to_torch(net, seed=0, optimize=level, weights=ref)  # by data flow
        for model in (direct, by_module):
            with torch.no_grad():
                got = model.eval()(x)
            torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-4)


def test_pairing_by_data_flow_needs_the_unoptimised_model(fusion_net):
    fast = incdsl.to_torch(fusion_net, seed=0, optimize="train")
    ref = incdsl.to_torch(fusion_net, seed=1)
    from incdsl.torch.weights import WeightsError
    with pytest.raises(WeightsError, match="optimize"):
        incdsl.load_weights(fast, ref)


# --- compile ------------------------------------------------------------------------------

def test_compiled_file_at_a_level_equals_to_torch(tmp_path, fusion_net):
    out = tmp_path / "fused.py"
    subprocess.run([sys.executable, "-m", "incdsl", "compile", FUSION, "--optimize", "infer", "-o", str(out)],
                   check=True, capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    namespace = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    model = namespace["Fusion"](seed=2)
    assert model.optimize_level == "infer" and model.fusion_plan
    ref = incdsl.to_torch(fusion_net, seed=2, optimize="infer")
    x = torch.randn(2, *fusion_net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_compile_refuses_an_unknown_level():
    proc = subprocess.run([sys.executable, "-m", "incdsl", "compile", FUSION, "--optimize", "fast"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "invalid choice: 'fast'" in proc.stderr and "Traceback" not in proc.stderr


# --- every shipped spec (slow) ---------------------------------------------------------------


# Folding is exact arithmetic (checked in float64 below); in float32 the folded and unfolded
# models round differently. Over MobileNetV2's and V3-Large's 17 inverted residuals with random
# statistics they differ by up to 1.14e-5 of the output's scale with one torch thread (the fold
# itself in float64), while the unfolded float32 model is itself 1.0e-5 away from its float64
# value: the difference is float32's noise, not the fold. Every other spec stays within 1e-5.
FOLDING_TOLERANCE = {"mobilenet_v2.inc": 2e-5, "mobilenet_v3_large.inc": 2e-5}


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_spec_at_every_level(path):
    net = small(path)
    torch.manual_seed(0)
    x = torch.randn(2, *net.input_shape)
    plain, fast = pair(net, "infer")
    assert_eval_equal(plain, fast, x, FOLDING_TOLERANCE.get(os.path.basename(path), 1e-5))
    plain, fast = pair(net, "infer", torch.float64)
    assert_eval_equal(plain, fast, x.double(), 1e-12)
    plain, fast = pair(net, "train", torch.float64)
    assert_train_equal(plain, fast, x.double())


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_spec_traces_as_one_graph(path):
    """torch.compile(fullgraph=True) of the optimised models, eval and training: dynamo finds no
    graph break (the `eager` backend: tracing without code generation)."""
    torch._dynamo.reset()
    net = small(path)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():  # inference runs the rewrites of "infer", training those of "train"
        torch.compile(incdsl.to_torch(net, seed=0, optimize="infer").eval(), backend="eager", fullgraph=True)(x)
    torch.compile(incdsl.to_torch(net, seed=0, optimize="train").train(), backend="eager", fullgraph=True)(x)


@pytest.mark.slow  # two short training runs: ~7 s
def test_train_command_at_a_level_follows_level_none(tmp_path):
    """`incdsl train --optimize train` trains the same network: the same losses, epoch by epoch."""
    losses = {}
    for level in ("none", "train"):
        out = tmp_path / level
        subprocess.run([sys.executable, "-m", "incdsl", "train", FUSION, "--data", "synthetic", "--synthetic-size", "32",
                        "--batch-size", "16", "--epochs", "2", "--device", "cpu", "--optimize", level, "--out", str(out)],
                       check=True, capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        import json
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[level] = [(r["train_loss"], r["val_loss"]) for r in rows]
    assert len(losses["none"]) == 2
    assert losses["train"] == pytest.approx(losses["none"], rel=1e-5)


def test_infer_runs_the_folded_copy_on_the_cpu(fusion_net):
    """Poison batch norm's statistics after folding: only the folded copy keeps outputs finite."""
    fast = incdsl.to_torch(fusion_net, seed=0, optimize="infer").eval()
    x = torch.randn(2, *fusion_net.input_shape)
    with torch.no_grad():
        expect = fast(x)
        for m in fast.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(float("nan"))
        torch.testing.assert_close(fast(x), expect)
    assert not torch.isfinite(fast(x)).all()  # with autograd on, batch norm itself runs


def test_training_is_channels_last_on_cuda_and_the_cpu_by_default():
    from incdsl.train.loop import TrainConfig, resolved_channels_last
    default = TrainConfig(data="synthetic", out="x")
    assert resolved_channels_last(default, "cuda") and resolved_channels_last(default, "cpu")
    assert not resolved_channels_last(default, "mps")  # not measured there
    for device in ("cuda", "cpu"):
        assert not resolved_channels_last(TrainConfig(data="synthetic", out="x", deterministic=True), device)
        assert resolved_channels_last(TrainConfig(data="synthetic", out="x", channels_last=True, deterministic=True), device)
        assert not resolved_channels_last(TrainConfig(data="synthetic", out="x", channels_last=False), device)


def test_a_deep_copy_keeps_the_spec_state_dict(fusion_net):
    """Weight averaging copies the model: the copy's state dict is still the spec's, and loads."""
    import copy
    fast = incdsl.to_torch(fusion_net, seed=0, optimize="infer")
    twin = copy.deepcopy(fast)
    assert list(twin.state_dict()) == list(incdsl.to_torch(fusion_net, seed=0).state_dict())
    randomise_batch_norm(fast, seed=4)
    twin.load_state_dict(fast.state_dict())
    x = torch.randn(2, *fusion_net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(x), fast.eval()(x), rtol=0, atol=0)


def test_search_trials_take_the_training_layout_default():
    from dataclasses import asdict

    from incdsl.cli import build_parser
    from incdsl.search.experiment import Settings, settings_problem
    base = ["search", "examples/mini_space.inc", "--data", "digits", "--trials", "2", "--budget-epochs", "1",
            "--out", "x"]
    assert build_parser().parse_args(base).channels_last is None  # resolved per device by training
    assert build_parser().parse_args(base + ["--no-channels-last"]).channels_last is False
    assert build_parser().parse_args(base + ["--channels-last"]).channels_last is True
    saved = asdict(Settings(spec="s.inc", data="digits", out="x", trials=2, budget_epochs=1))
    assert saved["channels_last"] is None and settings_problem(saved) is None
    assert settings_problem({**saved, "channels_last": False}) is None  # experiments saved before
