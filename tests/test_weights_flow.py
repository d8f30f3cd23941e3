"""`load_weights` given the reference module: layers paired by the data flow of a forward pass.

Registration order fails where a reference registers a shortcut before its main path or runs it
between a pre-activation and the first conv; the flow (which weight layers each layer reads
from) does not depend on either. The timm models themselves are checked in test_zoo.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings, strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import incdsl  # noqa: E402
from incdsl.torch.dataflow import trace_flow  # noqa: E402
from incdsl.torch.weights import WeightsError, load_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class ShortcutFirst(nn.Module):
    """Registers its shortcut first and runs it last; a head reads the sum."""

    def __init__(self):
        super().__init__()
        self.skip = nn.Conv2d(3, 8, 1, bias=False)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.bn(self.conv(x)).relu_()
        y += self.skip(x)
        return self.head(y.relu())


SHORTCUT_SPEC = """\
network shortcut_first(classes = 4):
    input 3x8x8
    residual(act = off):
        conv 3x3 8 pad = 1 bn = 1e-5 bias = no
        shortcut: conv 1x1 8 bias = no act = off
    relu -> conv 1x1 classes act = off
"""


def spec_net(text, tmp_path, name="net.inc", seed=1):
    path = tmp_path / name
    path.write_text(text)
    return incdsl.to_torch(incdsl.load(str(path)), seed=seed).eval()


def randomised(model):
    from modellib import randomise_norms
    return randomise_norms(model).eval()


def test_trace_flow_gives_running_order_and_what_each_layer_reads():
    torch.manual_seed(0)
    model = ShortcutFirst().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    flow = trace_flow(model, ["skip", "conv", "bn", "head"], (3, 8, 8))
    assert flow.order == ("conv", "bn", "skip", "head")
    assert flow.reads == {"conv": frozenset(), "bn": {"conv"}, "skip": frozenset(), "head": {"bn", "skip"}}
    # nothing changes: modes, batch-norm statistics, the global random state
    assert model.training and model.bn.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())


def test_a_shortcut_registered_first_loads_from_the_module_not_from_its_state_dict(tmp_path):
    ours, reference = spec_net(SHORTCUT_SPEC, tmp_path), randomised(ShortcutFirst())
    with pytest.raises(WeightsError, match="trunk, layer 0"):
        load_weights(ours, reference.state_dict())  # registration order: skip first
    report = load_weights(ours, reference)
    assert report["shortcut.conv_0.conv.weight"] == "skip.weight"
    assert report["conv_0.conv.weight"] == "conv.weight"
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_a_conv_classifier_loads_into_a_linear_one(tmp_path):
    reference = randomised(ShortcutFirst())
    ours = spec_net(SHORTCUT_SPEC.replace("relu -> conv 1x1 classes act = off",
                                          "relu -> gap -> flatten -> linear classes"), tmp_path)
    report = load_weights(ours, {k: v for k, v in reference.state_dict().items()}, strict=False)
    assert "linear_0.weight" in report  # 4x8x1x1 into 4x8 (state-dict path, registration order)
    assert torch.equal(ours.state_dict()["linear_0.weight"], reference.head.weight.flatten(1))


class Parallel(nn.Module):
    """The two convs of SHORTCUT_SPEC's residual side by side, both reading the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.skip = nn.Conv2d(3, 8, 1, bias=False)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head((self.bn(self.conv(x)) + self.skip(x)).relu())


class Unsummed(Parallel):
    """The same layers and shapes, another network: the head reads the batch norm alone."""

    def forward(self, x):
        self.skip(x)
        return self.head(self.bn(self.conv(x)).relu())


def test_layers_of_the_right_shapes_but_another_flow_are_refused(tmp_path):
    ours, reference = spec_net(SHORTCUT_SPEC, tmp_path), Unsummed().eval()
    with pytest.raises(WeightsError) as info:
        load_weights(ours, reference)
    msg = str(info.value)
    assert "the reference's conv `head`" in msg and "reads from `bn`," in msg
    assert "no layer of ours left reads from their counterparts" in msg
    report = load_weights(ours, Parallel().eval())  # the same layers in this flow fit
    assert len(report) == len(Parallel().state_dict())


def test_strict_false_keeps_ours_where_the_reference_differs(tmp_path):
    ours = spec_net(SHORTCUT_SPEC.replace("conv 1x1 classes", "conv 1x1 5"), tmp_path)
    report = load_weights(ours, randomised(ShortcutFirst()), strict=False)
    assert report.skipped == ["conv_1.conv"] and "conv_0.bn.running_var" in report


def test_the_input_size_is_needed_when_the_module_does_not_say(tmp_path):
    ours = spec_net(SHORTCUT_SPEC, tmp_path)
    del ours.input_shape  # as a class compiled before `input_shape` existed
    with pytest.raises(ValueError, match="input_size"):
        load_weights(ours, ShortcutFirst())
    assert load_weights(ours, ShortcutFirst(), input_size=(3, 8, 8))


def test_a_reference_that_cannot_run_at_the_input_size_is_named(tmp_path):
    ours = spec_net(SHORTCUT_SPEC, tmp_path)
    wrong = nn.Sequential(nn.Conv2d(1, 8, 3))
    with pytest.raises(WeightsError, match=r"a forward pass of the reference on a 1x3x8x8 input failed"):
        load_weights(ours, wrong)


BRANCHES = """\
network branches(classes = 3):
    input 3x6x6
    concat:
        branch: conv 1x1 2 bn = 1e-5
        branch: conv 3x3 3 pad = 1
        branch: conv 1x1 4 -> conv 3x3 5 pad = 1 bn = 1e-5
    gap -> flatten -> linear classes
"""


class Branches(nn.Module):
    """BRANCHES with its branches registered and run in the orders given, concatenated in the
    spec's order."""

    def __init__(self, registered, run):
        super().__init__()
        make = {0: lambda: nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU()),
                1: lambda: nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()),
                2: lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1, bias=False),
                                         nn.BatchNorm2d(5), nn.ReLU())}
        for i in registered:
            self.add_module(f"b{i}", make[i]())
        self.run = run
        self.fc = nn.Linear(10, 3)

    def forward(self, x):
        out = {i: getattr(self, f"b{i}")(x) for i in self.run}
        return self.fc(torch.cat([out[0], out[1], out[2]], 1).mean((2, 3)))


@settings(max_examples=12, deadline=None)
@given(registered=st.permutations([0, 1, 2]), run=st.permutations([0, 1, 2]))
def test_branches_in_any_registration_and_running_order(tmp_path_factory, registered, run):
    ours = spec_net(BRANCHES, tmp_path_factory.mktemp("b"))
    torch.manual_seed(0)
    reference = randomised(Branches(registered, run))
    load_weights(ours, reference)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("spec, name", [("inception_v4.inc", "inception_v4"),
                                        ("zoo/squeezenet1_1.inc", "squeezenet1_1")])
def test_the_flow_pairs_models_in_order_as_their_state_dict_does(spec, name):
    if name.startswith("inception"):
        reference = pytest.importorskip("timm").create_model(name).eval()
    else:
        reference = getattr(pytest.importorskip("torchvision.models"), name)().eval()
    net = incdsl.load(str(ROOT / "specs" / spec), input=(3, 75, 75))
    ours = incdsl.to_torch(net, seed=0)
    assert dict(load_weights(ours, reference)) == dict(load_weights(ours, reference.state_dict()))
