"""`load_weights` given the reference module, where the reference concatenates branches in
another order than the spec (as weiaicunzai's pytorch-cifar100 Inception-v4 port does): the
branches pair by structure, and the layer reading the concatenation gets its input axis
permuted, so the loaded network computes exactly what the reference does."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings, strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import incdsl  # noqa: E402
from incdsl.torch.dataflow import INPUT, trace_flow  # noqa: E402
from incdsl.torch.weights import WeightsError, load_weights  # noqa: E402

# An Inception-A-like module: two towers that start alike (1x1 to 3), and a 1x1 conv that
# reads the stem directly beside one that reads it through a pool (the same shapes). After
# the concatenation a batch norm of its own, then a conv; a second concatenation is read by
# a linear layer through a flatten of 2x2 positions.
SPEC = """\
network permuted(classes = 3):
    input 3x8x8
    conv 3x3 8 S bn = 1e-5 as stem
    concat as mixed:
        branch: conv 1x1 4 bn = 1e-5
        branch: conv 1x1 3 bn = 1e-5 -> conv 3x3 5 S bn = 1e-5
        branch: conv 1x1 3 bn = 1e-5 -> conv 3x3 5 S bn = 1e-5 -> conv 3x3 5 S bn = 1e-5
        branch: avgpool 3x3 S -> conv 1x1 4 bn = 1e-5
    bn -> relu -> conv 1x1 6 bn = 1e-5
    concat as tail:
        branch: conv 1x1 2 bn = 1e-5
        branch: maxpool 3x3 S
    avgpool 4x4 /4 -> flatten -> linear classes
"""
SPEC_BRANCHES = ("b1x1", "b3x3", "stack", "pool")  # the spec's concatenation order


def cba(cin, cout, k=1, groups=1):
    """conv (no bias), batch norm, ReLU: our `conv ... bn = 1e-5`."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Permuted(nn.Module):
    """SPEC written by hand, its branches run in `run` order and concatenated in `cat` order;
    the tail's two parts concatenated in `tail` order. `pool` may be another pool than SPEC's."""

    def __init__(self, run=SPEC_BRANCHES, cat=SPEC_BRANCHES, tail=("conv", "pool"), pool=nn.AvgPool2d):
        super().__init__()
        self.stem = cba(3, 8, 3)
        self.stack = nn.Sequential(cba(8, 3), cba(3, 5, 3), cba(5, 5, 3))
        self.b3x3 = nn.Sequential(cba(8, 3), cba(3, 5, 3))
        self.pool = nn.Sequential(pool(3, 1, 1), cba(8, 4))
        self.b1x1 = cba(8, 4)
        self.bn = nn.BatchNorm2d(18)
        self.mix = cba(18, 6)
        self.tail_conv = cba(6, 2)
        self.fc = nn.Linear(8 * 4, 3)
        self.run, self.cat, self.tail = run, cat, tail

    def forward(self, x):
        x = self.stem(x)
        out = {name: getattr(self, name)(x) for name in self.run}
        x = self.mix(self.bn(torch.cat([out[n] for n in self.cat], 1)).relu())
        parts = {"pool": nn.functional.max_pool2d(x, 3, 1, 1), "conv": self.tail_conv(x)}
        x = torch.cat([parts[n] for n in self.tail], 1)
        return self.fc(nn.functional.avg_pool2d(x, 4).flatten(1))


def ours(text=SPEC):
    return incdsl.to_torch(incdsl.load(text), seed=0).eval()


def reference(module):
    from modellib import randomise_norms
    torch.manual_seed(0)
    return randomise_norms(module).eval()


def same_outputs(a, b):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-6)


def test_layouts_say_where_each_input_channel_comes_from():
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 1, 1), nn.Linear(3 * 4, 2)

        def forward(self, x):
            y = torch.cat([nn.functional.pad(self.b(x), (0, 1, 0, 1))[..., :6, :6].relu(),
                           nn.functional.avg_pool2d(self.a(x), 3, 1, 1)], 1)
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 2).flatten(1))
    flow = trace_flow(Small(), ["a", "b", "fc"], (3, 6, 6))
    assert flow.layouts["a"] == tuple(frozenset({(INPUT, i)}) for i in range(3))  # the network's input
    # the linear layer reads (layer, channel, position) after the flatten, b's channel first
    assert flow.layouts["fc"] == tuple(frozenset({(layer, c, s)}) for layer, c in (("b", 0), ("a", 0), ("a", 1))
                                       for s in range(4))
    assert flow.signatures["fc"] == ("View(AdaptiveAvgPool2D(Cat(AvgPool2D[(3, 3),(1, 1),(1, 1)](U),"
                                     "Relu(Slice(Slice(ConstantPadNd(U)))))))")


def test_a_port_that_concatenates_in_another_order_loads_exactly():
    """weiaicunzai's Inception-A order: double tower, tower, pool, 1x1 (run and concatenated)."""
    port = ("stack", "b3x3", "pool", "b1x1")
    model, ref = ours(), reference(Permuted(run=port, cat=port, tail=("pool", "conv")))
    with pytest.raises(WeightsError):
        load_weights(model, ref.state_dict())  # registration order cannot pair it
    report = load_weights(model, ref)
    assert len(report) == len(ref.state_dict()) and not report.skipped
    assert report["mixed.branch_0.conv_0.conv.weight"] == "b1x1.0.weight"
    assert report["mixed.branch_2.conv_2.conv.weight"] == "stack.2.0.weight"
    assert report["mixed.branch_3.conv_0.conv.weight"] == "pool.1.0.weight"  # through the pool, as in the spec
    # the batch norm after the concatenation holds the reference's channels in our order
    order = [ref.cat.index(name) for name in SPEC_BRANCHES]
    widths = {"b1x1": 4, "b3x3": 5, "stack": 5, "pool": 4}
    starts = {name: sum(widths[n] for n in ref.cat[:ref.cat.index(name)]) for name in ref.cat}
    perm = [starts[name] + k for name in SPEC_BRANCHES for k in range(widths[name])]
    assert order != sorted(order) and torch.equal(model.bn_0.weight, ref.bn.weight[perm])
    assert same_outputs(model, ref)


@settings(max_examples=10, deadline=None)
@given(run=st.permutations(SPEC_BRANCHES), cat=st.permutations(SPEC_BRANCHES),
       tail=st.permutations(("conv", "pool")))
def test_any_running_and_concatenation_order_loads_exactly(run, cat, tail):
    model, ref = ours(), reference(Permuted(tuple(run), tuple(cat), tuple(tail)))
    report = load_weights(model, ref)
    assert len(report) == len(ref.state_dict())
    assert same_outputs(model, ref)


def test_branches_told_apart_only_by_a_pool_of_another_kind_are_refused():
    """The reference's pool branch max-pools where the spec average-pools: whichever 1x1 conv
    takes which weights, the network computes something else, and the load says so."""
    model = ours()
    ref = reference(Permuted(cat=("pool", "b1x1", "b3x3", "stack"), pool=nn.MaxPool2d))
    with pytest.raises(WeightsError, match="computes what the reference does"):
        load_weights(model, ref)


TWINS = """\
network twins(classes = 2):
    input 3x8x8
    concat:
        branch: conv 1x1 4 bn = 1e-5
        branch: conv 1x1 4 bn = 1e-5
        branch: conv 1x1 2 bn = 1e-5
    conv 3x3 6 S groups = GROUPS bn = 1e-5
    gap -> flatten -> linear classes
"""


class Twins(nn.Module):
    """TWINS with its concatenation reversed."""

    def __init__(self, groups):
        super().__init__()
        self.a, self.b, self.c = cba(3, 4), cba(3, 4), cba(3, 2)
        self.conv = cba(10, 6, 3, groups) if groups != 10 else cba(10, 10, 3, 10)
        self.fc = nn.Linear(self.conv[0].out_channels, 2)

    def forward(self, x):
        y = self.conv(torch.cat([self.c(x), self.b(x), self.a(x)], 1))
        return self.fc(y.mean((2, 3)))


def test_identical_branches_in_another_order_load_either_way():
    model = ours(TWINS.replace("GROUPS", "1"))
    ref = reference(Twins(1))
    load_weights(model, ref)
    assert same_outputs(model, ref)


def test_a_depthwise_conv_after_the_concatenation_is_permuted_with_it():
    model = ours(TWINS.replace("conv 3x3 6 S groups = GROUPS", "conv 3x3 10 S groups = 10"))
    ref = reference(Twins(10))
    load_weights(model, ref)
    assert same_outputs(model, ref)


def test_a_grouped_conv_after_a_concatenation_in_another_order_is_refused():
    model, ref = ours(TWINS.replace("GROUPS", "2")), reference(Twins(2))
    with pytest.raises(WeightsError, match="a grouped convolution cannot be reordered"):
        load_weights(model, ref)


def test_strict_false_reorders_what_it_can_and_keeps_a_grouped_conv():
    """strict=False pairs in running order without searching, but reorders input channels too."""
    model = ours(TWINS.replace("GROUPS", "2"))
    ref = reference(Twins(2))
    report = load_weights(model, ref, strict=False)
    assert report.skipped == ["conv_0.conv"] and "conv_0.conv.weight" not in report
    model = ours(SPEC)
    ref = reference(Permuted(cat=("pool", "stack", "b1x1", "b3x3")))
    assert len(load_weights(model, ref, strict=False)) == len(ref.state_dict()) and same_outputs(model, ref)
