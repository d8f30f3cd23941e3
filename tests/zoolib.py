"""The zoo's tables: each ImageNet zoo configuration, the library model it equals and that model's
counts. One place for them, so the test modules that check the zoo (test_zoo, test_zoo_mobile,
test_zoo_shuffle_regnet, test_zoo_convnext, test_zoo_against) import no tables from one another."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check_fails(tmp_path: Path, text: str) -> tuple[Path, str]:
    """`incdsl check` on `text` written to bad.inc: exit 1 with an error and no traceback. Returns
    the file's path (which the error's location names) and the error output."""
    spec = tmp_path / "bad.inc"
    spec.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "incdsl", "check", str(spec)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    return spec, result.stderr


# --- torchvision's classic models (test_zoo) ---------------------------------------------------

VGG = {"vgg11": dict(), "vgg13": dict(n1=2, n2=2), "vgg16": dict(n1=2, n2=2, n3=3, n4=3, n5=3),
       "vgg19": dict(n1=2, n2=2, n3=4, n4=4, n5=4)}

# torchvision name -> (spec, --set values, parameters, multiply-adds at 224x224)
CLASSIC = {
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


# --- MobileNets and EfficientNets (test_zoo_mobile) ---------------------------------------------

# torchvision name -> (spec, --set values, torchvision builder and its arguments,
#                      parameters, multiply-adds at the input, input side)
EFFICIENTNET = {  # torchvision's (width, depth, dropout, resolution); B5..B7 with batch-norm eps 1e-3, momentum 0.01
    1: (1.0, 1.1, 0.2, 240), 2: (1.1, 1.2, 0.3, 260), 3: (1.2, 1.4, 0.3, 300), 4: (1.4, 1.8, 0.4, 380),
    5: (1.6, 2.2, 0.4, 456), 6: (1.8, 2.6, 0.5, 528), 7: (2.0, 3.1, 0.5, 600)}

EFFICIENTNET_COUNTS = {1: (7_794_184, 686_802_832), 2: (9_109_994, 993_561_872), 3: (12_233_232, 1_827_141_392),
                       4: (19_341_616, 4_393_771_024), 5: (30_389_784, 10_266_384_752),
                       6: (43_040_704, 19_067_593_536), 7: (66_347_960, 37_745_884_192)}

B5_NORM = {"bn": 1e-3, "bn_momentum": 0.01}

# torchvision's MobileNetV3 at the paper's other multipliers (section 6.2): (parameters, multiply-adds)
MOBILENET_V3_WIDTHS = {
    ("large", 0.35): (997_064, 35_278_408), ("large", 0.5): (1_734_576, 64_962_192),
    ("large", 0.75): (3_377_576, 140_033_816), ("large", 1.25): (8_164_744, 343_461_000),
    ("small", 0.35): (558_744, 11_238_936), ("small", 0.5): (917_264, 18_970_736),
    ("small", 0.75): (1_653_920, 39_115_576), ("small", 1.25): (3_644_912, 88_155_944)}

MOBILE = {
    "mobilenet_v2": ("mobilenet_v2.inc", {}, ("mobilenet_v2", {}), 3_504_872, 300_774_272, 224),
    "mobilenet_v3_large": ("mobilenet_v3_large.inc", {}, ("mobilenet_v3_large", {}), 5_483_032, 216_589_760, 224),
    "mobilenet_v3_small": ("mobilenet_v3_small.inc", {}, ("mobilenet_v3_small", {}), 2_542_856, 56_510_400, 224),
    "efficientnet_b0": ("efficientnet.inc", {}, ("efficientnet_b0", {}), 5_288_548, 385_814_752, 224),
    **{f"mobilenet_v2_{w}": ("mobilenet_v2.inc", dict(width=w), ("mobilenet_v2", dict(width_mult=w)), p, m, 224)
       for w, p, m in ((0.35, 1_677_128, 59_285_808), (0.5, 1_968_680, 97_131_840),
                       (0.75, 2_636_424, 209_069_792), (1.4, 6_108_776, 582_195_824))},
    **{f"mobilenet_v3_{size}_{w}": (f"mobilenet_v3_{size}.inc", dict(width=w), (f"mobilenet_v3_{size}", dict(width_mult=w)),
                                    *counts, 224)
       for (size, w), counts in MOBILENET_V3_WIDTHS.items()},
    **{f"efficientnet_b{b}": ("efficientnet.inc", dict(width=w, depth=d, dropout=drop, **(B5_NORM if b >= 5 else {})),
                              (f"efficientnet_b{b}", {}), *EFFICIENTNET_COUNTS[b], r)
       for b, (w, d, drop, r) in EFFICIENTNET.items()},
}

# the four models at their defaults (the others are --set configurations of their specs)
MOBILE_DEFAULT = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0")

# the --set configurations with rows of their own in specs/tables/zoo.csv (the paper's Table 3)
MOBILE_PAPER = ("mobilenet_v3_large_0.75", "mobilenet_v3_small_0.75")


# --- ShuffleNet V2 and RegNet (test_zoo_shuffle_regnet) ------------------------------------------

SHUFFLE_WIDTHS = {"x0_5": dict(c2=48, c3=96, c4=192), "x1_0": {}, "x1_5": dict(c2=176, c3=352, c4=704),
                  "x2_0": dict(c2=244, c3=488, c4=976, c5=2048)}

# torchvision name -> (spec, --set values, parameters, multiply-adds at 224x224), as torchvision counts them
SHUFFLE_REGNET = {
    "shufflenet_v2_x0_5": ("shufflenet_v2.inc", SHUFFLE_WIDTHS["x0_5"], 1_366_792, 40_476_448),
    "shufflenet_v2_x1_0": ("shufflenet_v2.inc", {}, 2_278_604, 144_907_992),
    "shufflenet_v2_x1_5": ("shufflenet_v2.inc", SHUFFLE_WIDTHS["x1_5"], 3_503_624, 295_759_392),
    "shufflenet_v2_x2_0": ("shufflenet_v2.inc", SHUFFLE_WIDTHS["x2_0"], 7_393_996, 583_253_464),
    "regnet_x_400mf": ("regnet_x_400mf.inc", {}, 5_495_976, 413_812_608),
    "regnet_y_400mf": ("regnet_y_400mf.inc", {}, 4_344_144, 401_842_848),
}

SHUFFLE_REGNET_DEFAULT = ("shufflenet_v2_x1_0", "regnet_x_400mf", "regnet_y_400mf")  # each spec at its defaults


# --- ConvNeXt (test_zoo_convnext) ---------------------------------------------------------------

CONVNEXT_SIZES = {"convnext_tiny": {}, "convnext_small": dict(n3=27, drop_path=0.4),
         "convnext_base": dict(n3=27, c1=128, c2=256, c3=512, c4=1024, drop_path=0.5)}

# torchvision name -> (spec, --set values, parameters, multiply-adds at 224x224), as torchvision counts them
CONVNEXT = {name: ("convnext.inc", sets, *counts) for (name, sets), counts in zip(CONVNEXT_SIZES.items(), [
    (28_589_128, 4_455_531_264), (50_223_688, 8_683_712_256), (88_591_464, 15_354_729_472)])}

CONVNEXT_DEFAULT = ("convnext_tiny",)  # the spec at its defaults
