"""Fine-tuning (`incdsl train --weights`) and the weights API: `load_weights`' report, its hints,
`strict`, and the signatures `help()` shows.

The library forms (timm:NAME, torchvision:NAME) download where a machine can; here their
loaders are replaced by local state dicts (monkeypatch), the FILE form runs for real.
"""
from __future__ import annotations

import inspect
import os
import pydoc

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import incdsl  # noqa: E402
from incdsl.torch.weights import LoadReport, WeightsError, load_weights  # noqa: E402
from incdsl.cli import main  # noqa: E402
from incdsl.train import checkpoint as ckpt  # noqa: E402
from incdsl.train import pretrained  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY = os.path.join(DATA, "train_tiny.inc")
SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")
# lr so small that one epoch leaves the loaded weights as they were (to 1e-6)
STILL = ["--device", "cpu", "--threads", "1", "--data", "synthetic", "--synthetic-size", "12", "--batch-size", "4",
         "--epochs", "1", "--lr", "1e-12", "--weight-decay", "0"]


def train(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def tiny_model(**params):
    return incdsl.to_torch(incdsl.load(TINY, params=params or None), seed=3)


def assert_trunk_equal(state, reference, skip=("linear_0.", "side.linear_0.")):
    for key, value in reference.items():
        if key.startswith(skip) or key.endswith("num_batches_tracked") or "running_" in key:
            continue  # batch-norm statistics move in training mode whatever the learning rate
        assert torch.allclose(state[key], value, atol=1e-6), key


@pytest.mark.parametrize("wrap", ["plain", "state_dict"])
def test_weights_file_starts_the_run_and_keeps_another_classifier(capsys, tmp_path, wrap):
    source = tiny_model().state_dict()
    path = tmp_path / "w.pt"
    torch.save(source if wrap == "plain" else {"state_dict": source}, path)
    out = tmp_path / "run"
    code, stdout, err = train(capsys, TINY, "--classes", 4, "--weights", path, "--out", out, *STILL)
    assert code == 0, err
    assert f"weights: 30 tensors loaded, 1 aux head, 2 layers kept (linear_0, side.linear_0) from {path}" in stdout
    assert_trunk_equal(ckpt.load(str(out / "final.pt"))["model"], source)


def test_weights_of_the_same_class_count_load_the_classifier_too(capsys, tmp_path):
    source = tiny_model().state_dict()
    torch.save(source, tmp_path / "w.pt")
    code, stdout, err = train(capsys, TINY, "--weights", tmp_path / "w.pt", "--out", tmp_path / "run", *STILL)
    assert code == 0, err
    assert "weights: 34 tensors loaded, 1 aux head from" in stdout
    assert_trunk_equal(ckpt.load(str(tmp_path / "run" / "final.pt"))["model"], source, skip=())


def test_a_checkpoint_of_ours_gives_its_averaged_weights(capsys, tmp_path):
    first = tmp_path / "first"
    assert train(capsys, TINY, "--out", first, "--ema-decay", "0.5", *STILL[:-4])[0] == 0
    state = ckpt.load(str(first / "final.pt"))
    code, _, err = train(capsys, TINY, "--classes", 3, "--weights", first / "final.pt", "--out", tmp_path / "b",
                         *STILL)
    assert code == 0, err
    assert_trunk_equal(ckpt.load(str(tmp_path / "b" / "final.pt"))["model"], state["ema"]["module"])


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_library_weights_come_through_their_loader(capsys, tmp_path, monkeypatch, library):
    source, asked = tiny_model(classes=1000).state_dict(), []

    def fake(name):  # what timm.create_model(name, pretrained=True).state_dict() would give
        asked.append(name)
        return source

    monkeypatch.setitem(pretrained.LIBRARIES, library, fake)
    code, stdout, err = train(capsys, TINY, "--weights", f"{library}:tiny_net", "--out", tmp_path / "run", *STILL)
    assert code == 0, err
    assert asked == ["tiny_net"] and f"from {library}:tiny_net" in stdout and "2 layers kept" in stdout
    assert_trunk_equal(ckpt.load(str(tmp_path / "run" / "final.pt"))["model"], source)


def test_a_library_without_network_says_how_to_bring_the_file(capsys, tmp_path, monkeypatch):
    def offline(name):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setitem(pretrained.LIBRARIES, "timm", offline)
    monkeypatch.setattr(pretrained, "_known_models", lambda library: ["inception_v3"])
    code, _, err = train(capsys, TINY, "--weights", "timm:inception_v3", "--out", tmp_path / "run", *STILL)
    assert code == 1
    assert "cannot get the pretrained weights of timm model `inception_v3`: <urlopen error" in err
    assert "torch.save(timm.create_model('inception_v3', pretrained=True).state_dict()" in err


def test_an_unknown_library_model_gets_suggestions(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_known_models", lambda library: ["inception_v3", "inception_v4"])
    monkeypatch.setitem(pretrained.LIBRARIES, "timm", lambda name: (_ for _ in ()).throw(RuntimeError("Unknown")))
    code, _, err = train(capsys, TINY, "--weights", "timm:inception_v5", "--out", tmp_path / "run", *STILL)
    assert code == 1 and "timm has no model `inception_v5`" in err and "did you mean" in err


@pytest.mark.parametrize("content, message", [
    (b"garbage", "cannot read weights"),
    ("list", "holds no state dict"),
    ("other", "do not fit this network"),
])
def test_bad_weights_files_are_one_line_errors(capsys, tmp_path, content, message):
    path = tmp_path / "w.pt"
    if content == "list":
        torch.save([1, 2, 3], path)
    elif content == "other":
        torch.save(incdsl.to_torch(incdsl.load(os.path.join(DATA, "torch_tiny.inc"))).state_dict(), path)
    else:
        path.write_bytes(content)
    code, _, err = train(capsys, TINY, "--weights", path, "--out", tmp_path / "run", *STILL)
    assert code == 1 and message in err and "Traceback" not in err
    code, _, err = train(capsys, TINY, "--weights", tmp_path / "missing.pt", "--out", tmp_path / "run", *STILL)
    assert code == 1 and "no weights file" in err


# the Python API ----------------------------------------------------------------------------

def torch_tiny(**params):
    return incdsl.to_torch(incdsl.load(os.path.join(DATA, "torch_tiny.inc"), params=params or None), seed=0)


def test_the_report_is_a_one_line_mapping():
    source = torch_tiny().state_dict()
    report = load_weights(torch_tiny(), source)
    assert isinstance(report, LoadReport)
    assert repr(report) == f"<LoadReport: {len(report)} tensors loaded, 1 aux head>"
    assert "\n" not in repr(report) and report["conv_0.conv.weight"] == "conv_0.conv.weight"
    assert dict(report) == report.loaded and report.skipped == [] and report.aux_heads == 1


def test_a_classifier_of_another_size_suggests_skip_classifier():
    with pytest.raises(WeightsError, match=r"linear_0.weight` has shape \[10, .*skip_classifier=True"):
        load_weights(torch_tiny(), torch_tiny(classes=5).state_dict())
    report = load_weights(torch_tiny(), torch_tiny(classes=5).state_dict(), skip_classifier=True)
    assert "2 layers kept (linear_0, aux1.linear_0)" in repr(report)


def test_not_strict_loads_what_fits():
    source = torch_tiny(classes=5).state_dict()
    model = torch_tiny()
    report = load_weights(model, source, strict=False)
    assert report.skipped == ["linear_0", "aux1.linear_0"]
    assert torch.equal(model.state_dict()["conv_0.conv.weight"], source["conv_0.conv.weight"])


def test_googlenet_conv_biases_point_to_the_torchvision_variant():
    from torchvision.models import googlenet
    reference = googlenet(weights=None, init_weights=False, aux_logits=True)
    with torch.device("meta"):
        ours = incdsl.to_torch(incdsl.load(os.path.join(SPECS, "googlenet.inc")))
    with pytest.raises(WeightsError, match="specs/variants/googlenet_torchvision.inc"):
        load_weights(ours, reference.state_dict())


def test_to_torch_loads_weights_and_keeps_the_report():
    source = torch_tiny().state_dict()
    model = incdsl.to_torch(incdsl.load(os.path.join(DATA, "torch_tiny.inc"), params={"classes": 3}),
                            weights=source, skip_classifier=True)
    assert model.weights_report.skipped == ["linear_0", "aux1.linear_0"]
    assert torch.equal(model.state_dict()["conv_0.conv.weight"], source["conv_0.conv.weight"])


def test_help_shows_the_real_signatures():
    for function, names in ((incdsl.to_torch, {"num_classes", "seed", "weights", "aux", "skip_classifier", "strict"}),
                            (incdsl.load_weights, {"aux", "skip_classifier", "strict"})):
        assert names <= set(inspect.signature(function).parameters)
        text = pydoc.render_doc(function, renderer=pydoc.plaintext)
        assert all(name in text for name in names) and "Returns" in text
    assert "LoadReport" in incdsl.load_weights.__doc__
