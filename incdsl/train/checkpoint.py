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

from ..diagnostics import error

FORMAT = 1
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


def find(path: str) -> str:
    """The checkpoint file for `--resume PATH`: the file itself, or DIR/last.pt."""
    candidate = os.path.join(path, LAST) if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        raise error(f"no checkpoint at {candidate}",
                    hint="pass the run's --out folder or a .pt file it wrote to --resume")
    return candidate


def load(path: str) -> dict:
    """Read a checkpoint (tensors on the CPU). Raises IncdslError if it is not one of ours."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise error(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                    hint="it may be truncated or not written by `incdsl train`") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise error(f"{path} is not an `incdsl train` checkpoint (format {FORMAT})")
    return checkpoint


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and values), to compare copies."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
