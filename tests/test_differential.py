"""Differential tests: incdsl's claims about generated networks, each against an oracle that
does not share incdsl's code.

    claim                                             oracle
    `check` accepts -> the compiled model runs,        torch runs it; forward hooks read every
      every node's shape is the IR's                   node's output
    `cost` parameters (all, and the trunk's)           numel of the model's parameters
    `cost` MACs                                        torch.utils.flop_counter (2 per MAC)
    `cost --convention NAME`                           the tool NAME itself (fvcore, thop, ...)
    activations per node                               numel of the node's output tensor
    `--optimize train/infer` = level none              outputs, gradients, running statistics
    state dicts and `load_weights` across levels       outputs after the round trip
    a single window is accepted iff torch runs it      torch's own layer on that input

The networks come from tests/specgen.py (many layer kinds and join forms, odd sizes). The fast
tests draw a few with Hypothesis; `-m slow` draws many more.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.ir.graph import lint  # noqa: E402
from incdsl.report.conventions import count_convention  # noqa: E402

from specgen import HypothesisPick, network  # noqa: E402

FAST = settings(deadline=None, max_examples=8, suppress_health_check=list(HealthCheck))
SLOW = settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))


# --- helpers --------------------------------------------------------------------------------------

def randomise(model, seed: int = 0):
    """Batch-norm statistics and affine values away from 0/1 (folding must matter), learned
    scales away from 0 (a branch scaled by 0 hides its mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        for name, p in model.named_parameters():
            if p.numel() == 1:
                p.copy_(torch.rand((), generator=gen) + 0.5)
    return model


def run_all(model, x):
    """Trunk and aux heads (eval mode runs the heads only when asked)."""
    if model.aux_names:
        feats, taps = model.forward_trunk(x)
        return [model.forward_head(feats), *model.forward_aux(*taps)]
    return [model(x)]


def hooked_shapes(model, x) -> dict:
    """Every IR node's output shape (batch left off), as torch computes it."""
    shapes, handles = {}, []
    for node, path in model.node_paths.items():
        def hook(mod, args, out, node=node):
            shapes[node] = tuple(out.shape[1:])
        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            run_all(model, x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


# --- the claims, one function each (the scratch runner calls them too) ---------------------------

def check_shapes_and_activations(net, model):
    x = torch.randn(2, *net.input_shape)
    shapes = hooked_shapes(model.eval(), x)
    assert set(model.node_paths) == set(net.graph.nodes) - {net.input}
    wrong = {n: (shapes.get(n), net.graph.nodes[n]["shape"]) for n in model.node_paths
             if shapes.get(n) != tuple(net.graph.nodes[n]["shape"])}
    assert not wrong, wrong
    costs = incdsl.count_costs(net)
    for row in costs.nodes:
        expect = math.prod(shapes[row.name]) if row.name in shapes else math.prod(net.input_shape)
        assert row.activations == expect, row.name
    assert costs.total_with_aux.activations == math.prod(net.input_shape) + sum(math.prod(s) for s in shapes.values())


def check_params(net, model):
    costs = incdsl.count_costs(net)
    assert sum(p.numel() for p in model.parameters()) == costs.total_with_aux.params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == costs.total_with_aux.params
    aux = tuple(p + "." for p in model.aux_paths)
    assert sum(p.numel() for k, p in model.named_parameters() if not k.startswith(aux)) == costs.total.params


def check_macs(net, model):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        run_all(model.eval(), torch.randn(1, *net.input_shape))
    assert counter.get_total_flops() == 2 * incdsl.count_costs(net).total_with_aux.macs


def tool_count(name: str, model, x):
    """What counter `name` prints for `model` on `x` (batch 1)."""
    if name == "fvcore":
        from fvcore.nn import FlopCountAnalysis
        fa = FlopCountAnalysis(model, x)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        return fa.total()
    if name in ("ptflops", "ptflops-aten"):
        from ptflops import get_model_complexity_info
        return get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False,
                                         backend="pytorch" if name == "ptflops" else "aten")[0]
    if name == "thop":
        import thop
        return thop.profile(model, inputs=(x,), verbose=False)[0]
    if name == "torchinfo":
        import torchinfo
        return torchinfo.summary(model, input_size=tuple(x.shape), verbose=0).total_mult_adds
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def check_convention(net, name: str):
    model = incdsl.to_torch(net, seed=0).eval()
    with quiet(), torch.no_grad():
        printed = tool_count(name, model, torch.zeros(1, *net.input_shape))
    assert printed == count_convention(net, incdsl.count_costs(net), name), name


def level_pair(net, level, dtype=torch.float32):
    plain = randomise(incdsl.to_torch(net, seed=0))
    fast = incdsl.to_torch(net, seed=0, optimize=level)
    fast.load_state_dict(plain.state_dict())
    return plain.to(dtype), fast.to(dtype)


def near(got, want, tolerance, what=""):
    got, want = [o.double() for o in got], [o.double() for o in want]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape, what
        assert (a - b).abs().max().item() <= tolerance * max(b.abs().max().item(), 1.0), what


def unfused_grads(model) -> dict:
    """Gradients under the spec's keys (a fused parameter's split by member)."""
    grads = {k: p.grad for k, p in model.named_parameters()}
    for fused, members, leaves in getattr(model, "fusion_plan", ()):
        splits = model.get_submodule(fused).splits
        for leaf in leaves:
            if f"{fused}.{leaf}" not in grads:  # a buffer (running statistics)
                continue
            g = grads.pop(f"{fused}.{leaf}")
            for i, m in enumerate(members):
                grads[f"{m}.{leaf}"] = None if g is None else g.split(splits)[i]
    return grads


def check_levels_eval(net, level):
    plain, fast = level_pair(net, level)
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(4))
    plain.eval(), fast.eval()
    with torch.no_grad():
        want = run_all(plain, x)
        got = run_all(fast, x)
        again = run_all(fast, x)
    near(got, want, 1e-4, f"eval at {level}")
    near(again, got, 0, "eval is deterministic")  # dropout and stochastic layers are off in eval
    grad_x = x.clone().requires_grad_()  # eval with autograd: another path at level infer
    out = run_all(fast, grad_x)
    near(out, want, 1e-4, f"eval with autograd at {level}")


def check_levels_train(net, level):
    plain, fast = level_pair(net, level, torch.float64)
    x = torch.randn(4, *net.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    plain.train(), fast.train()
    outs, inputs = [], []
    for model in (plain, fast):
        torch.manual_seed(7)
        xi = x.clone().requires_grad_()  # a network without parameters still has input gradients
        out = model(xi)
        out = [out] if isinstance(out, torch.Tensor) else [out[0], *out[1]]
        # weights that differ per element: a permuted or misplaced gradient changes the sum
        sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in out).backward()
        outs.append(out)
        inputs.append(xi.grad)
    near(outs[1], outs[0], 1e-9, f"training outputs at {level}")
    near([inputs[1]], [inputs[0]], 1e-9, f"input gradient at {level}")
    grads_a, grads_b = {k: p.grad for k, p in plain.named_parameters()}, unfused_grads(fast)
    assert grads_a.keys() == grads_b.keys()
    for k, g in grads_a.items():
        if g is None or grads_b[k] is None:
            assert g is None and grads_b[k] is None, k
        else:
            near([grads_b[k]], [g], 1e-9, k)
    sa, sb = plain.state_dict(), fast.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        near([sb[k]], [sa[k]], 1e-9, k)


def check_state_dicts(net, level):
    """The state dict is the spec's at every level; it goes both ways, and `load_weights` (by
    key order, and by data flow from the plain model) gives the same outputs."""
    plain = randomise(incdsl.to_torch(net, seed=0), seed=3).eval()
    fast = incdsl.to_torch(net, seed=1, optimize=level).eval()
    assert list(fast.state_dict()) == list(plain.state_dict())
    fast.load_state_dict(plain.state_dict())
    back = incdsl.to_torch(net, seed=2).eval()
    back.load_state_dict(fast.state_dict())
    loaded = incdsl.to_torch(net, seed=4, optimize=level).eval()
    incdsl.load_weights(loaded, plain.state_dict())
    by_flow = incdsl.to_torch(net, seed=5, optimize=level, weights=plain).eval()
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = run_all(plain, x)
        for model in (fast, back, loaded, by_flow):
            near(run_all(model, x), want, 1e-4, f"round trip at {level}")


CHECKS = {
    "shapes": lambda net, model: check_shapes_and_activations(net, model),
    "params": lambda net, model: check_params(net, model),
    "macs": lambda net, model: check_macs(net, model),
}


def check_all(net, *, conventions=("thop", "ptflops", "ptflops-aten", "torchinfo")):
    model = incdsl.to_torch(net, seed=0)
    for check in CHECKS.values():
        check(net, model)
    for level in ("train", "infer"):
        check_levels_eval(net, level)
        check_levels_train(net, level)
        check_state_dicts(net, level)
    for name in conventions:
        pytest.importorskip(name.split("-")[0])
        check_convention(net, name)


def generated(data) -> incdsl.Network:
    text = network(HypothesisPick(data))
    net = incdsl.load(text)  # the generator writes only specs that should check
    lint(net.graph)
    return net


# --- the tests ------------------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_generated_networks_agree_with_torch(data):
    check_all(generated(data), conventions=())


@FAST
@given(data=st.data())
def test_generated_networks_conventions_agree_with_the_tools(data):
    net = generated(data)
    for name in ("thop", "ptflops", "torchinfo"):
        pytest.importorskip(name)
        check_convention(net, name)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_many_generated_networks(data):
    check_all(generated(data), conventions=("fvcore", "thop", "ptflops", "ptflops-aten", "torchinfo"))
