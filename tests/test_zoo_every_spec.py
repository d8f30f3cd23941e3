"""Every ImageNet spec of the zoo (specs/zoo/*.inc, with the --set configurations the zoo
names: DenseNet-169, VGG-11..19 with and without batch norm) draws at network level and for
each of its blocks, compiles to standalone source that builds the module `to_torch` builds, and
trains a few SGD steps at a reduced input (issue 12). The CIFAR specs (specs/zoo/cifar/) have
their own test files.

Cheap by construction: drawings are DOT text (no Graphviz); compiled modules are compared on
the meta device (names and shapes, no weights initialised), and computed only for the small
networks; networks whose weights take seconds to initialise (AlexNet's and VGG's classifiers)
or whose steps do (ResNet-101/152, Wide ResNet, DenseNet-169) train only under -m slow.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import incdsl
from incdsl.cli import main
from incdsl.render.collect import block_names
from incdsl.render.graphviz import build_dot
from incdsl.render.style import DrawOptions

from speclib import assert_two_steps_learn
from modellib import one_torch_thread  # noqa: F401 (autouse fixture)
from zoolib import VGG

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"

# configuration -> (spec, --set values); one default configuration per spec, plus the variants
CONFIGS = {
    **{p.stem: (p.name, {}) for p in ZOO.glob("*.inc") if p.name not in {"densenet.inc", "vgg.inc"}},
    "densenet121": ("densenet.inc", {}),
    "densenet169": ("densenet.inc", dict(b3=32, b4=32)),
    **{name: ("vgg.inc", params) for name, params in VGG.items()},
    **{f"{name}_bn": ("vgg.inc", dict(params, bn=1e-5)) for name, params in VGG.items()},
    # stochastic depth off: in two SGD steps on two samples it may drop a block for both, which
    # then gets no gradient (tests/test_zoo_mobile.py checks it draws as torchvision's)
    "efficientnet": ("efficientnet.inc", dict(drop_path=0)),
}
SLOW_TRAINING = {"alexnet", "resnet34", "resnet101", "resnet152", "wide_resnet50_2", "densenet169"} | {
    name for name in CONFIGS if name.startswith("vgg")}
# computed, not only built, after compiling: small enough for the default run
COMPUTED = {"resnet18", "squeezenet1_1"}
# every zoo network ends in a global or adaptive pool: it runs at inputs this small (AlexNet's
# pools need 64x64)
SIZE = 32
# MobileNetV2 at 32x32 ends on a 1x1 grid, where training-mode batch norm after each linear
# bottleneck cancels the bottleneck's own batch-norm bias (no gradient): 64x64 leaves a 2x2 grid.
# So for ShuffleNet V2's depthwise convs (batch norm, no activation, then a 1x1 conv with batch
# norm); RegNet's first step at 32x32 sends the second's loss past 4000, where the softmax's
# saturated classifier bias gets no gradient
TRAIN_SIZE = {"alexnet": 64, "mobilenet_v2": 64, "shufflenet_v2": 64, "regnet_x_400mf": 64, "regnet_y_400mf": 64}


def load(name: str, **kwargs) -> incdsl.Network:
    spec, params = CONFIGS[name]
    return incdsl.load(str(ZOO / spec), params=params or None, **kwargs)


def test_every_top_level_spec_is_covered():
    assert {spec for spec, _ in CONFIGS.values()} == {p.name for p in ZOO.glob("*.inc")}
    assert {"densenet121", "densenet169", "vgg16_bn"} <= set(CONFIGS)


# --- drawing ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_draws_at_network_level_and_every_block(name):
    net = load(name)
    whole = build_dot(net, DrawOptions(level="network"))
    assert whole.startswith(f"digraph {net.name} {{") and '"#output"' in whole
    blocks = block_names(net.graph)
    assert blocks or name == "alexnet"  # AlexNet is a plain chain of layers
    for block in blocks:
        text = build_dot(net, DrawOptions(level="block", block=block))
        assert text.startswith(f'digraph "{net.name}.{block}" {{') and "Previous layer" in text, block


# --- compiling ----------------------------------------------------------------------------

def compile_module(name: str, tmp_path: Path, *extra: str):
    """The network class of the standalone source `incdsl compile` writes for `name`."""
    torch = pytest.importorskip("torch")
    spec, params = CONFIGS[name]
    out = tmp_path / f"{name}.py"
    sets = [arg for k, v in params.items() for arg in ("--set", f"{k}={v}")]
    assert main(["compile", str(ZOO / spec), *sets, *extra, "-o", str(out)]) == 0
    loader = importlib.util.spec_from_file_location(f"zoo_compiled_{name}", out)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module.__name__] = module
    loader.loader.exec_module(module)
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == module.__name__ and hasattr(v, "forward_head")]
    assert len(classes) == 1
    return classes[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compiles_to_the_module_to_torch_builds(name, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    network_class = compile_module(name, tmp_path)
    module = sys.modules[network_class.__module__]
    # names and shapes only: no weights are drawn (drawing on the meta device is slow)
    monkeypatch.setattr(module, "init_weights", lambda *args, **kwargs: None)
    with torch.device("meta"):
        compiled, ours = network_class(), incdsl.to_torch(load(name))
    got = {k: tuple(v.shape) for k, v in compiled.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in compiled.parameters()) == incdsl.count_costs(load(name)).total.params


@pytest.mark.parametrize("name", sorted(COMPUTED))
def test_compiled_module_computes_what_to_torch_computes(name, tmp_path):
    torch = pytest.importorskip("torch")
    network_class = compile_module(name, tmp_path, "--input", f"3x{SIZE}x{SIZE}")
    compiled, ours = network_class(seed=0).eval(), incdsl.to_torch(load(name, input=(3, SIZE, SIZE)), seed=0).eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(compiled(x), ours(x))


# --- training -----------------------------------------------------------------------------

def training_cases():
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_TRAINING else []) for n in sorted(CONFIGS)]


@pytest.mark.parametrize("name", training_cases())
def test_trains_a_few_steps(name):
    """Two SGD steps on a synthetic batch at 32x32: finite losses that change, and every
    parameter gets a gradient (nothing in the network is cut off from the loss)."""
    torch = pytest.importorskip("torch")
    size = TRAIN_SIZE.get(name, SIZE)
    # dropout draws from torch's global generator: seeded, the steps do not depend on what ran
    # before (EfficientNet at 32x32 after torch.manual_seed(6) leaves one batch-norm bias without gradient)
    torch.manual_seed(0)
    model = incdsl.to_torch(load(name, input=(3, size, size)), seed=0).train()
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 3, size, size, generator=gen), torch.randint(0, 1000, (2,), generator=gen)
    assert_two_steps_learn(model, x, y)
