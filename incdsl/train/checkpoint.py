"""Checkpoints: everything a run needs to continue exactly, as tensors and plain containers.

A checkpoint is a dict (format `FORMAT`)::

    format      1
    epoch       epochs completed
    model       the model's state_dict
    optimizer   the optimiser's state_dict
    scheduler   {"step": optimiser steps taken, "steps_per_epoch": ...}
    ema         WeightAverage.state_dict() or None
    scaler      GradScaler.state_dict() (fp16) or None
    rng         one dict per process: python, numpy, torch and its CUDA device's generator states
    spec        {"name", "file", "sources": {file: text}, "params", "input"}
    recipe      the hyper-parameters (recipes.as_dict)
    num_classes, seed, history (the metrics records so far)
    weights_sha256      `state_digest(model)`: checked on load, so damaged weights never resume
    ema_weights_sha256  the same for the weight average (or None)
    settings    how the run was started (data, amp, ...), so `--resume DIR` alone continues it

`load` checks every field's presence and type before anything reads it (`validate`); the
last three are optional, for checkpoints written before they existed.

Only tensors, numbers, strings, lists, tuples, dicts and None go in, so `torch.load` reads
it with `weights_only=True`: loading a checkpoint never runs code from it. Files are written
whole or not at all (a temp file, then a rename).
"""
from __future__ import annotations

import hashlib
import io
import os
import random

import numpy as np
import torch

from ..diagnostics import IncdslError, error
from . import MAX_SYNTHETIC

FORMAT = 1
DAMAGED_HINT = "it changed after `incdsl train` wrote it; resume from another copy (the run's final.pt, a backup)"
LAST = "last.pt"
FINAL = "final.pt"


def plain(value):
    """`value` with our str/int/tuple subclasses (Sym, Dims, InDepth) made builtin types."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def capture_rng() -> dict:
    """This process's random generator states."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        # this process's device only: asking every GPU would start a CUDA context on each
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])


def save(path: str, checkpoint: dict) -> None:
    """Write `checkpoint` to `path` atomically."""
    from ..io import write_atomic
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomic(path, buffer.getvalue())


def find(path: str, option: str = "--resume") -> str:
    """The checkpoint file for `--resume PATH` (or `option PATH`): the file itself, or DIR/last.pt."""
    candidate = os.path.join(path, LAST) if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        raise error(f"no checkpoint at {candidate}",
                    hint=f"pass the run's --out folder or a .pt file it wrote to {option}")
    return candidate


def load(path: str, *, verify: bool = True) -> dict:
    """Read a checkpoint (tensors on the CPU) and check it (`validate`).

    Raises IncdslError, one line, if it is unreadable, not one of ours, incomplete, or its
    weights do not match their stored digest.
    """
    try:
        if os.path.getsize(path) == 0:
            raise error(f"checkpoint {path} is empty", hint="it was not written by `incdsl train`, or was cut short")
        if not saved_by_torch(path):
            raise error(f"cannot read checkpoint {path}: it is no file torch.save wrote",
                        hint="it is damaged, or not a last.pt or final.pt that `incdsl train` wrote")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except IncdslError:
        raise
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise error(f"cannot read checkpoint {path}: {type(exc).__name__}: {first}",
                    hint="it may be truncated or not written by `incdsl train`") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        plain_weights = isinstance(checkpoint, dict) and checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values())
        raise error(f"{path} is not an `incdsl train` checkpoint (format {FORMAT})",
                    hint="it holds weights alone: start a run from them with `incdsl train SPEC --weights FILE`"
                    if plain_weights else "pass a last.pt or final.pt that `incdsl train` wrote (or its --out folder)")
    if verify:
        validate(checkpoint, path)
    return checkpoint


def saved_by_torch(path: str) -> bool:
    """Whether the file starts as torch.save's files do: a zip archive (the default format) or a
    pickle (the legacy one, protocol 2 and up). Anything else gets a plain error instead of
    torch's, which speaks of `weights_only` whatever the file is."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _spec_ok(spec) -> bool:
    return (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("file"), str)
            and isinstance(spec.get("sources"), dict) and spec.get("file") in spec["sources"]
            and all(isinstance(k, str) and isinstance(v, str) for k, v in spec["sources"].items())
            and isinstance(spec.get("params"), dict) and all(isinstance(k, str) for k in spec["params"])
            and isinstance(spec.get("input"), list)
            and len(spec["input"]) == 3 and all(_is_int(d) and d >= 1 for d in spec["input"]))


def _scheduler_ok(s) -> bool:
    return (isinstance(s, dict) and _is_int(s.get("step")) and s["step"] >= 0
            and _is_int(s.get("steps_per_epoch")) and s["steps_per_epoch"] >= 1)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_ok(r) -> bool:
    """An epoch record as the loop writes it: the summary reads its epoch, accuracy and time."""
    return (isinstance(r, dict) and _is_int(r.get("epoch")) and _is_number(r.get("val_top1"))
            and (r.get("val_top5") is None or _is_number(r["val_top5"]))
            and (r.get("seconds") is None or _is_number(r["seconds"])))


# setting -> check of its value; a resumed run takes them as if given on the command line
SETTINGS = {
    "data": lambda v: v is None or isinstance(v, str),
    "synthetic_size": lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_SYNTHETIC),
    "amp": lambda v: v in (None, "bf16", "fp16"),
    "channels_last": lambda v: v is None or isinstance(v, bool),
    "deterministic": lambda v: isinstance(v, bool),
    "compile": lambda v: isinstance(v, bool),
    "optimize": lambda v: v in (None, "none", "train", "infer"),
    "skip_bad_images": lambda v: isinstance(v, bool),
    "weights": lambda v: v is None or isinstance(v, str),
}


def _settings_ok(v) -> bool:
    return isinstance(v, dict) and all(ok(v[name]) for name, ok in SETTINGS.items() if name in v)


# field -> (check, what it should be); checked in this order
FIELDS = {
    "epoch": (lambda v: _is_int(v) and v >= 0, "a count of epochs >= 0"),
    "model": (lambda v: _tensor_dict(v) and len(v) > 0, "a state dict of tensors"),
    "optimizer": (lambda v: isinstance(v, dict) and "state" in v and "param_groups" in v, "an optimiser state"),
    "scheduler": (_scheduler_ok, "{step, steps_per_epoch}"),
    "ema": (lambda v: v is None or (isinstance(v, dict) and _tensor_dict(v.get("module")) and _is_int(v.get("updates"))),
            "None or {module, updates}"),
    "scaler": (lambda v: v is None or isinstance(v, dict), "None or a GradScaler state"),
    "rng": (lambda v: isinstance(v, list) and len(v) > 0 and all(
        isinstance(r, dict) and {"python", "numpy", "torch", "cuda"} <= set(r) for r in v), "one state per process"),
    "spec": (_spec_ok, "{name, file, sources, params, input}"),
    "recipe": (lambda v: isinstance(v, dict), "the recipe's values"),
    "num_classes": (lambda v: _is_int(v) and v >= 0, "a class count"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "a seed in [0, 2**32)"),
    "history": (lambda v: isinstance(v, list) and all(_record_ok(r) for r in v), "a list of epoch records"),
}
OPTIONAL = {
    "weights_sha256": (lambda v: isinstance(v, str), "a hex digest"),
    "ema_weights_sha256": (lambda v: v is None or isinstance(v, str), "a hex digest or None"),
    "settings": (_settings_ok, "the run's settings"),
}


def validate(checkpoint: dict, path: str) -> None:
    """Raise IncdslError naming the first missing or malformed field, or damaged weights."""
    missing = [name for name in FIELDS if name not in checkpoint]
    if missing:
        raise error(f"checkpoint {path} is incomplete: no {', '.join(f'`{m}`' for m in missing)}",
                    hint="it was cut short or not written by `incdsl train`; resume from another checkpoint")
    for name, (ok, expected) in (*FIELDS.items(), *OPTIONAL.items()):
        if name in checkpoint and not ok(checkpoint[name]):
            raise error(f"checkpoint {path} is damaged: `{name}` is not {expected}", hint=DAMAGED_HINT)
    if len(checkpoint["history"]) != checkpoint["epoch"]:
        raise error(f"checkpoint {path} is damaged: epoch {checkpoint['epoch']} but "
                    f"{len(checkpoint['history'])} epoch records", hint=DAMAGED_HINT)
    _verify_digest(checkpoint.get("weights_sha256"), checkpoint["model"], "weights", path)
    if checkpoint["ema"] is not None:
        _verify_digest(checkpoint.get("ema_weights_sha256"), checkpoint["ema"]["module"], "averaged weights", path)


def _verify_digest(expected: str | None, state: dict, what: str, path: str) -> None:
    if expected is not None and state_digest(state) != expected:
        raise error(f"checkpoint {path} is damaged: its {what} do not match their stored SHA-256",
                    hint="the file changed after it was written; resume from another copy")


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and values), to compare copies."""
    return state_digest(module.state_dict())


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict (names, dtypes, shapes and values); `weights_digest` of its module."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_mismatch(module: torch.nn.Module, state: dict) -> list:
    """Why `state` does not load into `module`, as note lines (none if it fits): how many weights
    are missing or unknown, each with an example, and the first tensor whose shape differs.
    (torch's own error starts with a line that says none of this, then lists every key.)"""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unknown = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
              if isinstance(state.get(k), torch.Tensor) and state[k].shape != own[k].shape]
    notes = []
    if missing:
        notes.append(f"{len(missing)} of this network's weights are not in the checkpoint, e.g. `{missing[0]}`")
    if unknown:
        notes.append(f"{len(unknown)} of the checkpoint's weights are not in this network, e.g. `{unknown[0]}`")
    if shapes:
        key, saved, here = shapes[0]
        more = f" ({len(shapes) - 1} more differ)" if len(shapes) > 1 else ""
        notes.append(f"`{key}` has shape {saved} in the checkpoint, {here} here{more}")
    return notes


def spec_note(state: dict, network) -> list:
    """A note naming the checkpoint's network when it is not this one."""
    saved = state["spec"]
    if saved["name"] == network.name:
        return []
    return [f"the checkpoint holds network `{saved['name']}` (from {os.path.basename(saved['file'])}), "
            f"this is `{network.name}`"]
