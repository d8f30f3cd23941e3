"""The zoo's ImageNet specs (specs/zoo/) against the models torchvision ships.

Totals are exact and asserted without torch; with torchvision, the reference module's parameter
count and its multiply-adds (torch's flop counter, halved) must equal them, and its state dict,
loaded into the compiled spec, must give the same logits. Networks that end in a global pool
run at a small input for the output check; VGG and AlexNet flatten a 7x7 / 6x6 grid and need
224x224.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import incdsl
from zoolib import CLASSIC as MODELS, TIMM

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"


# too slow for the default run at their required input size
FIXED_INPUT = {"alexnet"} | {name for name in MODELS if name.startswith("vgg")}
SLOW = {"resnet101", "resnet152", "wide_resnet50_2", "densenet169"} | FIXED_INPUT


def load(name, **kwargs):
    spec, params, _, _ = MODELS[name]
    return incdsl.load(str(ZOO / spec), params=params, **kwargs)


def marks(name):
    return [pytest.mark.slow] if name in SLOW else []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_totals_are_exact(name):
    costs = incdsl.count_costs(load(name))
    assert (costs.total.params, costs.total.macs) == MODELS[name][2:]


def test_every_zoo_spec_is_covered():
    from zoolib import CONVNEXT, MOBILE, SHUFFLE_REGNET

    used = {spec for spec, *_ in MODELS.values()} | {spec for spec, *_ in TIMM.values()} | {
        spec for spec, *_ in MOBILE.values()} | {spec for spec, *_ in SHUFFLE_REGNET.values()} | {
        spec for spec, *_ in CONVNEXT.values()}
    assert used == {p.name for p in ZOO.glob("*.inc")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in sorted(MODELS)])
def test_torchvision_module_has_the_same_costs_and_outputs(name):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    from torch.utils.flop_counter import FlopCounterMode
    from modellib import randomise_norms

    torch.manual_seed(0)
    reference = randomise_norms(getattr(models, name)()).eval()
    _, _, params, macs = MODELS[name]
    assert sum(p.numel() for p in reference.parameters()) == params
    size = 224 if name in FIXED_INPUT else 64
    x = torch.randn(1 if size == 224 else 2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        expected = reference(x)
    if size == 224:
        assert counter.get_total_flops() == 2 * macs * len(x)

    ours = incdsl.to_torch(load(name, input=(3, size, size)), seed=0).eval()
    incdsl.load_weights(ours, reference.state_dict())
    with torch.no_grad():
        got = ours(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize("name", sorted(TIMM))
def test_timm_totals_are_exact(name):
    spec, params, macs, _ = TIMM[name]
    costs = incdsl.count_costs(incdsl.load(str(ZOO / spec)))
    assert (costs.total.params, costs.total.macs) == (params, macs)


@pytest.mark.parametrize("name", sorted(TIMM))
def test_timm_module_has_the_same_costs_and_outputs(name):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from torch.utils.flop_counter import FlopCounterMode
    from modellib import randomise_norms

    spec, params, macs, size = TIMM[name]
    torch.manual_seed(0)
    reference = randomise_norms(timm.create_model(name)).eval()
    assert sum(p.numel() for p in reference.parameters()) == params
    full = incdsl.load(str(ZOO / spec)).input_shape
    with torch.device("meta"), FlopCounterMode(display=False) as counter:  # counts shapes, computes nothing
        reference.to("meta")(torch.empty(1, *full))
    assert counter.get_total_flops() == 2 * macs

    torch.manual_seed(0)
    reference = randomise_norms(timm.create_model(name)).eval()
    ours = incdsl.to_torch(incdsl.load(str(ZOO / spec), input=(3, size, size)), seed=0).eval()
    report = incdsl.load_weights(ours, reference)
    assert len(report) == len(reference.state_dict()) and not report.skipped
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, expected = ours(x), reference(x)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()
