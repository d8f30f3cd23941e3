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

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"

VGG = {"vgg11": dict(), "vgg13": dict(n1=2, n2=2), "vgg16": dict(n1=2, n2=2, n3=3, n4=3, n5=3),
       "vgg19": dict(n1=2, n2=2, n3=4, n4=4, n5=4)}

# torchvision name -> (spec, --set values, parameters, multiply-adds at 224x224)
MODELS = {
    "resnet18": ("resnet18.inc", {}, 11_689_512, 1_814_073_344),
    "resnet34": ("resnet34.inc", {}, 21_797_672, 3_663_761_408),
    "resnet50": ("resnet50.inc", {}, 25_557_032, 4_089_184_256),
    "resnet101": ("resnet101.inc", {}, 44_549_160, 7_801_405_440),
    "resnet152": ("resnet152.inc", {}, 60_192_808, 11_513_626_624),
    "wide_resnet50_2": ("wide_resnet50_2.inc", {}, 68_883_240, 11_398_021_120),
    "resnext50_32x4d": ("resnext50_32x4d.inc", {}, 25_028_904, 4_230_479_872),
    "densenet121": ("densenet.inc", {}, 7_978_856, 2_834_161_664),
    "densenet169": ("densenet.inc", dict(b3=32, b4=32), 14_149_480, 3_359_843_328),
    "squeezenet1_0": ("squeezenet1_0.inc", {}, 1_248_424, 818_924_576),
    "squeezenet1_1": ("squeezenet1_1.inc", {}, 1_235_496, 349_151_936),
    "alexnet": ("alexnet.inc", {}, 61_100_840, 714_188_480),
    "vgg11": ("vgg.inc", VGG["vgg11"], 132_863_336, 7_609_090_048),
    "vgg13": ("vgg.inc", VGG["vgg13"], 133_047_848, 11_308_466_176),
    "vgg16": ("vgg.inc", VGG["vgg16"], 138_357_544, 15_470_264_320),
    "vgg19": ("vgg.inc", VGG["vgg19"], 143_667_240, 19_632_062_464),
    "vgg11_bn": ("vgg.inc", dict(VGG["vgg11"], bn=1e-5), 132_868_840, 7_609_090_048),
    "vgg13_bn": ("vgg.inc", dict(VGG["vgg13"], bn=1e-5), 133_053_736, 11_308_466_176),
    "vgg16_bn": ("vgg.inc", dict(VGG["vgg16"], bn=1e-5), 138_365_992, 15_470_264_320),
    "vgg19_bn": ("vgg.inc", dict(VGG["vgg19"], bn=1e-5), 143_678_248, 19_632_062_464),
}
# timm name -> (spec, parameters, multiply-adds at the spec's input size, input for the output check).
# Both register or run their shortcuts out of our order, so their layers are paired by data flow
# (`load_weights` given the module).
TIMM = {
    "legacy_xception": ("xception.inc", 22_855_952, 8_357_403_496, 71),
    "resnetv2_50": ("resnetv2_50.inc", 25_549_352, 4_089_184_256, 64),
}
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
    from test_zoo_mobile import MODELS as MOBILE  # MobileNets and EfficientNets: their own file
    from test_zoo_shuffle_regnet import MODELS as SHUFFLE_REGNET  # ShuffleNet V2, RegNet: theirs
    from test_zoo_convnext import MODELS as CONVNEXT  # ConvNeXt: its own

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
