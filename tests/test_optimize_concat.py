"""Concat elision at `optimize="infer"` (`rewrite.deferred_nodes`, `layers.Pending`): in eager
inference a concatenation's inputs are written straight into their slices of its output, no
`torch.cat`; with autograd on, in training and under `torch.compile` the join is `torch.cat`.
Outputs equal level "none" either way."""
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.torch.layers import Concat, ConvBnAct, FusedConvBnAct, Pending  # noqa: E402
from incdsl.torch.plan import find_owners, head_chain  # noqa: E402
from incdsl.torch.rewrite import deferred_nodes  # noqa: E402
from incdsl.torch.source import generate_source  # noqa: E402

from modellib import assert_eval_equal, assert_train_equal, pair  # noqa: E402

SPEC = str(Path(__file__).resolve().parent / "data" / "torch_concat.inc")


@pytest.fixture(scope="module")
def net():
    return incdsl.load(SPEC)


@pytest.fixture
def models(net):
    plain, fast = pair(net, "infer")
    return plain.eval(), fast.eval()


class Recorder:
    """Counts `torch.cat` calls and records what the modules called with `defer=` return."""

    def __init__(self, model):
        self.cats, self.outputs = 0, []
        self.model = model

    def __enter__(self):
        real = torch.cat

        def counting(*args, **kwargs):
            self.cats += 1
            return real(*args, **kwargs)
        self.patch = mock.patch.object(torch, "cat", counting)
        self.patch.start()
        # the generated module has its own copy of the layer classes: matched by name
        self.hooks = [m.register_forward_hook(self.hook) for m in self.model.modules()
                      if type(m).__name__ in ("ConvBnAct", "FusedConvBnAct", "Concat")]
        return self

    def hook(self, module, args, out):
        self.outputs += list(out) if isinstance(out, tuple) else [out]

    def __exit__(self, *exc):
        self.patch.stop()
        for h in self.hooks:
            h.remove()

    @property
    def pending(self):
        return sum(type(o).__name__ == "Pending" for o in self.outputs)


# --- the plan ----------------------------------------------------------------------------

def test_plan_defers_the_branch_ends_that_only_a_join_reads(net):
    graph = net.graph
    _, node_owner = find_owners(graph)
    deferred = deferred_nodes(graph, node_owner, head_chain(graph, node_owner))
    per_block = {"branch_0/conv_0", "branch_1/branch_0/conv_0", "branch_1/branch_1/conv_0", "branch_1/concat_0"}
    assert deferred == {
        "branch_0/conv_0", "branch_1/conv_1", "branch_2/conv_0", "branch_3/conv_0",  # ReLU, ReLU6, GELU, pooled
        "v", "branch_9/branch_1/conv_0", "side/branch_0/conv_0", "side/branch_1/conv_0",
        *(f"mixed.{i}/{n}" for i in range(2) for n in per_block),  # a nested join defers too
    }
    # a pool, a convolution without activation, `u` (v reads it too), a tensor an add reads: not
    assert not deferred & {"branch_4/maxpool_0", "branch_5/conv_0", "u", "conv_1"}


def test_only_level_infer_passes_defer(net):
    assert "defer=" not in generate_source(net, optimize="train")[0].split("# --- incdsl layers: end")[1]
    text = generate_source(net, optimize="infer")[0]
    assert "self.fused(x, defer=(True, False, True))" in text
    assert "self.branch_1.concat_0(x3, x2, defer=True)" in text


# --- eager inference: elided -----------------------------------------------------------------

def test_eval_without_autograd_writes_into_the_output_and_equals_level_none(net, models):
    plain, fast = models
    x = torch.randn(3, *net.input_shape)
    with Recorder(plain) as seen:
        assert_eval_equal(plain, fast.train(), x)  # eval() inside, after the recorder's hooks
    assert seen.cats > 0
    with Recorder(fast) as seen, torch.no_grad():
        fast(x)
    assert seen.cats == 0  # every join has an input to write into it, the pooled fusion splits without one
    # per mixed block 4 (fused 1, the nested join and its 2), network level 4 (fused 2), v, and
    # the conv the add's branch joins; not the aux head's, which does not run in eval mode
    assert seen.pending == 2 * 4 + 4 + 1 + 1


def test_inference_mode_elides_too(net, models):
    plain, fast = models
    x = torch.randn(2, *net.input_shape)
    with torch.inference_mode():
        expect = plain(x)
        with Recorder(fast) as seen:
            got = fast(x)
    assert seen.cats == 0 and seen.pending > 0
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_channels_last_stays_channels_last(net, models):
    plain, fast = models
    x = torch.randn(2, *net.input_shape).to(memory_format=torch.channels_last)
    plain, fast = plain.to(memory_format=torch.channels_last), fast.to(memory_format=torch.channels_last)
    features = {}
    fast.mixed[0].register_forward_hook(lambda m, a, out: features.setdefault("mixed", out))
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    assert features["mixed"].is_contiguous(memory_format=torch.channels_last)


# --- not elided ----------------------------------------------------------------------------

def test_autograd_in_eval_uses_torch_cat_and_gives_level_none_gradients(net, models):
    plain, fast = models
    x = torch.randn(2, *net.input_shape)
    with Recorder(fast) as seen:
        out = fast(x)
    assert seen.pending == 0 and seen.cats > 0
    out.square().sum().backward()
    plain(x).square().sum().backward()
    grads = dict(plain.named_parameters())
    assert fast.fusion_plan  # fused weights: compare an unfused layer's gradient and the input's
    for key in ("branch_1.conv_1.conv.weight", "mixed.1.branch_1.branch_0.conv_0.conv.weight", "v.conv.weight"):
        torch.testing.assert_close(fast.get_parameter(key).grad, grads[key].grad, rtol=1e-4, atol=1e-6)


def test_training_is_level_none_to_rounding(net):
    plain, fast = pair(net, "infer", torch.float64)
    x = torch.randn(3, *net.input_shape, dtype=torch.float64)
    with Recorder(fast) as seen:
        assert_train_equal(plain, fast, x)
    assert seen.pending == 0
    with Recorder(fast.train()) as seen, torch.no_grad():
        fast(x)
    assert seen.pending == 0  # training mode without autograd: still torch.cat


def test_compile_fullgraph_traces_the_eval_model(net, models):
    """Under torch.compile the joins stay torch.cat (inductor plans them into slices itself)."""
    torch._dynamo.reset()
    plain, fast = models
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        got = torch.compile(fast, backend="eager", fullgraph=True)(x)
        torch.testing.assert_close(got, plain(x), rtol=1e-5, atol=1e-5)


def test_fx_traces_the_model(net):
    """torch.fx traces in training mode (as in tests/test_torch.py): no `Pending`, the plain joins."""
    import torch.fx
    fast = incdsl.to_torch(net, seed=0, optimize="infer")
    traced = torch.fx.symbolic_trace(fast)
    x = torch.randn(2, *net.input_shape)
    torch.manual_seed(0)
    expect = fast(x)
    torch.manual_seed(0)
    torch.testing.assert_close(traced(x)[0], expect[0], rtol=0, atol=0)


def test_state_dict_is_the_specs(net):
    plain = incdsl.to_torch(net, seed=1)
    fast = incdsl.to_torch(net, seed=1, optimize="infer").eval()
    assert list(fast.state_dict()) == list(plain.state_dict())


# --- the join itself -----------------------------------------------------------------------

ACTS = {"relu": torch.nn.ReLU, "relu6": torch.nn.ReLU6, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}


def part_strategy(depth=0):
    leaf = st.tuples(st.integers(1, 4), st.sampled_from([None, *ACTS]))
    if depth:
        return leaf
    return st.one_of(leaf, st.lists(part_strategy(1), min_size=1, max_size=3))


def build(spec, gen, layout):
    """(input of Concat, what torch.cat is given) for one strategy value."""
    if isinstance(spec, list):
        built = [build(s, gen, layout) for s in spec]
        return Pending(parts=[b for b, _ in built]), torch.cat([e for _, e in built], 1)
    width, act = spec
    value = torch.randn(2, width, 3, 5, generator=gen).contiguous(memory_format=layout)
    if act is None:
        return value, value
    module = ACTS[act]()
    return Pending(value.clone(), module), module(value)


@settings(max_examples=40, deadline=None)
@given(st.lists(part_strategy(), min_size=1, max_size=5), st.booleans(), st.integers(0, 2**16))
def test_pending_parts_join_as_torch_cat(parts, channels_last, seed):
    gen = torch.Generator().manual_seed(seed)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    built = [build(p, gen, layout) for p in parts]
    got = Concat()(*(b for b, _ in built))
    expect = torch.cat([e for _, e in built], 1)
    assert torch.equal(got, expect)
    widths = [w for w, _ in leaves(parts)]
    if min(widths) > 1:  # one channel: both layouts are one, torch.cat calls it contiguous
        assert got.stride() == expect.stride()  # torch.cat's layout


def leaves(parts):
    return [leaf for p in parts for leaf in (leaves(p) if isinstance(p, list) else [p])]


def test_mixed_dtypes_fall_back_to_torch_cats_promotion():
    a, b = torch.randn(1, 2, 3, 3), torch.randn(1, 3, 3, 3, dtype=torch.float64)
    got = Concat()(Pending(a.clone(), torch.nn.ReLU()), b)
    assert got.dtype == torch.float64
    assert torch.equal(got, torch.cat([a.relu(), b], 1))


def test_a_fused_module_defers_only_the_flagged_members():
    convs = [ConvBnAct(4, c, 1, bn_eps=1e-5, act=torch.nn.ReLU(inplace=True)) for c in (2, 3, 4)]
    fused = FusedConvBnAct(convs).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expect = fused(x)
        out = fused(x, defer=(True, False, True))
    assert [isinstance(o, Pending) for o in out] == [True, False, True]
    torch.testing.assert_close(out[1], expect[1])
    torch.testing.assert_close(Concat()(*out), torch.cat(expect, 1))
