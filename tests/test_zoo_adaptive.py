"""Adaptive pooling keeps the zoo exact at input sizes other than 224x224: AlexNet's 6x6 and
VGG's 7x7 pools before the classifier, torchvision GoogLeNet's 4x4 auxiliary pools. Costs
(parameters; multiply-adds by torch's flop counter on the meta device) and outputs equal
torchvision's at 256x256, and adaptive pooling's window rule is torch's.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import incdsl
from incdsl.ops.adaptive_pool import largest, windows

ROOT = Path(__file__).resolve().parent.parent
SIZE = 256

# torchvision name -> (spec, --set values)
MODELS = {
    "alexnet": ("specs/zoo/alexnet.inc", {}),
    "vgg11": ("specs/zoo/vgg.inc", {}),
    "vgg16_bn": ("specs/zoo/vgg.inc", dict(n1=2, n2=2, n3=3, n4=3, n5=3, bn=1e-5)),
}


def load(name, size=SIZE):
    spec, params = MODELS[name]
    return incdsl.load(str(ROOT / spec), params=params, input=(3, size, size))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_classifier_input_does_not_change_with_the_input_size(name):
    at_224, at_256 = incdsl.count_costs(load(name, 224)), incdsl.count_costs(load(name))
    assert at_256.total.params == at_224.total.params
    assert at_256.total.macs > at_224.total.macs  # the convs see a larger grid


@pytest.mark.parametrize("name", sorted(MODELS))
def test_costs_equal_torchvision_at_256(name):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        reference = getattr(models, name)()
        with FlopCounterMode(display=False) as counter:
            reference(torch.empty(1, 3, SIZE, SIZE))
    costs = incdsl.count_costs(load(name))
    assert costs.total.params == sum(p.numel() for p in reference.parameters())
    assert 2 * costs.total.macs == counter.get_total_flops()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg11"])
def test_outputs_equal_torchvision_at_256(name):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    reference = getattr(models, name)().eval()
    ours = incdsl.to_torch(load(name), seed=0).eval()
    incdsl.load_weights(ours, reference.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # builds two GoogLeNets with their aux heads: seconds
def test_googlenet_aux_heads_equal_torchvision_at_256():
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    from modellib import randomise_norms
    net = incdsl.load(str(ROOT / "specs/variants/googlenet_torchvision.inc"), input=(3, SIZE, SIZE))
    torch.manual_seed(0)
    reference = randomise_norms(models.googlenet(aux_logits=True, init_weights=True)).eval()
    costs = incdsl.count_costs(net)
    assert costs.total_with_aux.params == sum(p.numel() for p in reference.parameters())
    ours = incdsl.to_torch(net, seed=0).eval()
    incdsl.load_weights(ours, reference.state_dict())
    taps = {}
    reference.inception4a.register_forward_hook(lambda m, i, o: taps.setdefault("a", o))
    reference.inception4d.register_forward_hook(lambda m, i, o: taps.setdefault("d", o))
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference(x)
        expected = [reference.aux1(taps["a"]), reference.aux2(taps["d"])]  # eval mode: no dropout
        _, ours_taps = ours.forward_trunk(x)
        got = ours.forward_aux(*ours_taps)
    assert taps["a"].shape[-1] == 16  # a grid that 4x4 divides differently from 5x5 /3
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-4), (g - e).abs().max()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), o=st.integers(1, 12))
def test_windows_are_torchs(n, o):
    """Pooling an axis of n values 0..n-1 (each a power of two, so every window sum is unique)
    gives each window's mean as torch computes it."""
    torch = pytest.importorskip("torch")
    x = (2.0 ** torch.arange(n, dtype=torch.float64)).view(1, 1, 1, n)
    got = torch.nn.functional.adaptive_avg_pool2d(x, (1, o)).flatten().tolist()
    want = [sum(2.0 ** i for i in range(a, b)) / (b - a) for a, b in windows(n, o)]
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("n, o", [(15, 4), (14, 4), (7, 3), (10, 6), (5, 7), (13, 13), (9, 1)])
def test_receptive_field_is_the_largest_window(n, o):
    """Probed per output cell with gradients: the widest window is what the cost pass reports."""
    torch = pytest.importorskip("torch")
    net = incdsl.load(f"network p:\n    input 1x{n}x{n}\n    adaptive_maxpool {o}x{o}\n")
    assert incdsl.count_costs(net).by_name()[net.output].rf == (largest(n, o), largest(n, o))
    widest = 0
    for i in range(o):
        x = torch.arange(n * n, dtype=torch.float64).view(1, 1, n, n).requires_grad_()
        y = torch.nn.functional.adaptive_avg_pool2d(x, (o, o))
        y[0, 0, i, 0].backward()
        rows = (x.grad[0, 0] != 0).any(dim=1).nonzero().flatten()
        widest = max(widest, int(rows.max() - rows.min()) + 1)
    assert widest == largest(n, o)


def test_adaptive_pool_errors(load_error):
    assert "needs a CxHxW input" in load_error("network p:\n    input 3x8x8\n    flatten -> adaptive_avgpool 2x2\n").render()
    assert "`adaptive_maxpool` needs `size`" in load_error("network p:\n    input 3x8x8\n    adaptive_maxpool\n").render()
    assert "expected a positive integer" in load_error("network p:\n    input 3x8x8\n    adaptive_avgpool 0x2\n").render()
