"""`--weights`: where fine-tuning starts. A state dict file, one of our checkpoints, or a library
model's pretrained weights (`timm:NAME`, `torchvision:NAME`), mapped onto the spec's network
by `load_weights` (layers paired by order, kind and shape).

The classifier is kept (`skip_classifier`) when the class counts differ, and auxiliary heads
are loaded where both sides have them (`aux="skip"`): torchvision's pretrained GoogLeNet, for
one, comes without its heads. The library forms download through timm or torchvision (their
caches, their network access); a machine without a network can save a state dict elsewhere
and pass the file.
"""
from __future__ import annotations

import os

import torch

from ..diagnostics import error

SAVE_HINT = ("where the network is reachable: python -c \"import torch, timm; "
             "torch.save(timm.create_model('NAME', pretrained=True).state_dict(), 'NAME.pt')\"; then --weights NAME.pt")


def _timm_state(name: str) -> dict:
    import timm
    return timm.create_model(name, pretrained=True).state_dict()


def _torchvision_state(name: str) -> dict:
    from torchvision import models
    return models.get_model(name, weights="DEFAULT").state_dict()


# library prefix -> loader of that library's pretrained state dict (tests replace these)
LIBRARIES = {"timm": _timm_state, "torchvision": _torchvision_state}


def _known_models(library: str) -> list | None:
    """The model names `library` knows (no download), or None when it cannot say."""
    try:
        if library == "timm":
            import timm
            return list(timm.list_models())
        from torchvision import models
        return list(models.list_models())
    except Exception:  # noqa: BLE001  (only to improve a message)
        return None


def read_state_dict(source: str) -> dict:
    """The state dict `--weights SOURCE` names. Raises IncdslError, one line with a hint."""
    library, colon, name = source.partition(":")
    if colon and library in LIBRARIES and not os.path.exists(source):
        try:
            state = LIBRARIES[library](name)
        except ImportError as exc:
            raise error(f"--weights {source} needs {library}: {exc}", hint=f"pip install {library}") from None
        except Exception as exc:  # unknown names, no network, a broken cache: each library words its own
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            known = _known_models(library)
            if known is not None and name not in known:
                from ..diagnostics import did_you_mean
                raise error(f"{library} has no model `{name}`",
                            hint=did_you_mean(name, known) or f"list them with {library}.list_models()") from None
            raise error(f"cannot get the pretrained weights of {library} model `{name}`: {first}",
                        hint=SAVE_HINT.replace("NAME", name) if library == "timm" else
                        f"where the network is reachable, save torchvision.models.get_model('{name}', "
                        f"weights='DEFAULT').state_dict() with torch.save and pass the file") from None
        return state
    return _read_file(source)


def check_source(source: str) -> None:
    """Raise IncdslError, before anything is loaded or written, for a `--weights FILE` that is
    no file or no file torch.save wrote (a library's NAME is checked when it is fetched)."""
    from .checkpoint import saved_by_torch
    library, colon, _ = source.partition(":")
    if colon and library in LIBRARIES and not os.path.exists(source):
        return
    if not os.path.isfile(source):
        raise error(f"no weights file {source}",
                    hint="pass a state dict saved with torch.save, a checkpoint of `incdsl train`, "
                         "or timm:NAME / torchvision:NAME")
    if os.path.getsize(source) == 0 or not saved_by_torch(source):
        raise error(f"cannot read weights {source}: it is no file torch.save wrote",
                    hint="a state dict saved with torch.save (weights only) is expected")


def _read_file(path: str) -> dict:
    check_source(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise error(f"cannot read weights {path}: {type(exc).__name__}: {first}",
                    hint="a state dict saved with torch.save (weights only) is expected") from None
    return _state_of(state, path)


def _state_of(value, path: str) -> dict:
    """The state dict in what a weights file holds: itself, `state_dict`, or our checkpoint's
    weights (the average when it keeps one: the weights its accuracy was measured with)."""
    if isinstance(value, dict) and value.get("format") is not None and isinstance(value.get("model"), dict):
        ema = value.get("ema")
        value = ema["module"] if isinstance(ema, dict) and isinstance(ema.get("module"), dict) else value["model"]
    elif isinstance(value, dict) and isinstance(value.get("state_dict"), dict):
        value = value["state_dict"]
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise error(f"{path} holds no state dict (a dict of tensors)",
                    hint="save one with torch.save(model.state_dict(), PATH)")
    return value


def reference_classes(state: dict) -> int | None:
    """The class count of a state dict's main classifier: its last linear layer outside aux heads."""
    from ..torch.weights import split_reference, units
    trunk, _ = split_reference(units(state))
    linear = [u for u in trunk if u.kind == "linear"]
    return int(linear[-1].tensors["weight"].shape[0]) if linear else None


def load_pretrained(model, source: str):
    """Load `--weights SOURCE` into `model`; returns `load_weights`' report. Raises IncdslError."""
    from ..torch.weights import WeightsError, load_weights
    state = read_state_dict(source)
    skip_classifier = reference_classes(state) != model.num_classes
    try:
        return load_weights(model, state, aux="skip", skip_classifier=skip_classifier)
    except WeightsError as exc:
        raise error(f"the weights of {source} do not fit this network: {exc}",
                    hint="pass weights of the same architecture (layers are paired in order by kind and shape), "
                         "or the spec they were trained with") from None
