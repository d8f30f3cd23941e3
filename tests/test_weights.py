"""`load_weights`: reference implementations' state dicts drive our compiled specs to the same outputs.

Each reference model (timm, torchvision) is built with random weights and randomised batch-norm
statistics, its state dict is loaded into the compiled spec, and the logits must agree to 1e-4
in eval mode. Networks whose shapes allow it run at a small input (the weights do not depend
on it: global pooling before the classifier).
"""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import incdsl  # noqa: E402
from incdsl.torch.weights import WeightsError, load_weights, units  # noqa: E402
from modellib import randomise_norms  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
DATA = Path(__file__).resolve().parent / "data"


def timm_model(name, **kwargs):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return randomise_norms(timm.create_model(name, pretrained=False, **kwargs)).eval()


def torchvision_model(name, **kwargs):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    return randomise_norms(getattr(models, name)(weights=None, init_weights=True, transform_input=False,
                                                 **kwargs)).eval()


def compare(spec, reference, size, aux="strict", batch=2):
    net = incdsl.load(str(SPECS / spec), input=(3, size, size))
    ours = incdsl.to_torch(net, seed=0).eval()
    mapping = load_weights(ours, reference.state_dict(), aux=aux)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-4
    return ours, mapping


def test_timm_inception_v4():
    ref = timm_model("inception_v4")
    ours, mapping = compare("inception_v4.inc", ref, 75)
    assert mapping["stem.conv2d_1a_3x3.conv.weight"] == "features.0.conv.weight"
    assert mapping["inception_c.2.branch_3.conv_0.bn.running_var"] == "features.21.branch3.1.bn.running_var"
    assert mapping["last_linear.weight"] == "last_linear.weight"
    assert len(mapping) == len(ref.state_dict())


def test_timm_inception_resnet_v2():
    ref = timm_model("inception_resnet_v2")
    _, mapping = compare("inception_resnet_v2.inc", ref, 75)
    assert len(mapping) == len(ref.state_dict())
    assert any(v == "repeat.0.conv2d.bias" for v in mapping.values())  # the up-projection keeps its bias


def test_timm_inception_v3_without_aux_head():
    ref = timm_model("inception_v3")  # timm builds no aux head by default
    ours, mapping = compare("inception_v3.inc", ref, 299, aux="skip", batch=1)
    assert not any(k.startswith("aux") for k in mapping)
    with pytest.raises(WeightsError, match="auxiliary head"):
        load_weights(ours, ref.state_dict())


def test_torchvision_googlenet_with_aux_heads_registered_last():
    ref = torchvision_model("googlenet", aux_logits=True)
    _, mapping = compare("variants/googlenet_torchvision.inc", ref, 224, batch=1)
    assert mapping["aux1.fc1.weight"] == "aux1.fc1.weight" and mapping["fc.weight"] == "fc.weight"
    assert len(mapping) == len(ref.state_dict())


@pytest.mark.slow
def test_torchvision_inception_v3_with_aux_head_in_training_mode():
    ref = torchvision_model("inception_v3", aux_logits=True)
    ours, mapping = compare("inception_v3.inc", ref, 299)
    assert len(mapping) == len(ref.state_dict())
    x = torch.randn(2, 3, 299, 299)
    ours.train(), ref.train()
    torch.manual_seed(0)
    logits, (aux,) = ours(x)
    torch.manual_seed(0)
    out = ref(x)
    assert (logits - out.logits).abs().max() < 1e-4 and (aux - out.aux_logits).abs().max() < 1e-4


def tiny(**params):
    return incdsl.to_torch(incdsl.load(str(DATA / "torch_tiny.inc"), params=params or None), seed=0)


def test_our_own_state_dict_maps_onto_itself():
    a, b = tiny(), incdsl.to_torch(incdsl.load(str(DATA / "torch_tiny.inc")), seed=1)
    mapping = load_weights(b, a.state_dict())
    assert all(k == v for k, v in mapping.items()) and len(mapping) == len(a.state_dict())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in mapping)


def test_a_data_parallel_prefix_is_ignored():
    a, b = tiny(), incdsl.to_torch(incdsl.load(str(DATA / "torch_tiny.inc")), seed=1)
    mapping = load_weights(b, {f"module.{k}": v for k, v in a.state_dict().items()})
    assert mapping["conv_0.conv.weight"] == "conv_0.conv.weight"
    assert torch.equal(b.state_dict()["linear_0.weight"], a.state_dict()["linear_0.weight"])


def test_a_shape_mismatch_names_both_keys():
    src = tiny(classes=5).state_dict()
    with pytest.raises(WeightsError) as info:
        load_weights(tiny(), src)
    msg = str(info.value)
    assert "`linear_0.weight` has shape [10, 36]" in msg and "[5, 36]" in msg
    # keeping our classifiers loads the rest
    model = tiny()
    mapping = load_weights(model, src, skip_classifier=True)
    assert "linear_0.weight" not in mapping and "conv_0.conv.weight" in mapping


def test_a_different_structure_is_reported_at_the_first_difference():
    ref = timm_model("inception_v4")
    net = incdsl.load(str(SPECS / "inception_resnet_v2.inc"), input=(3, 75, 75))
    with torch.device("meta"):
        ours = incdsl.to_torch(net)
    with pytest.raises(WeightsError, match=r"trunk, layer \d+: .*reference"):
        load_weights(ours, ref.state_dict())


def test_units_group_tensors_by_module():
    found = units(tiny().state_dict())
    assert [u.kind for u in found[:3]] == ["conv", "bn", "conv"]
    assert found[0].prefix == "conv_0.conv" and set(found[1].tensors) == {
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
