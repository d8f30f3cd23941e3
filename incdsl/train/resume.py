"""What `--resume DIR` takes from a checkpoint: the network (spec text, parameters, input size,
class count) and the run's settings, so the command needs nothing else.

The spec is read from the files the checkpoint names when they still hold the same text
(diagnostics then point at real files); otherwise the checkpoint's copy of every source is
written to a temporary folder, in the same layout, and loaded from there.
"""
from __future__ import annotations

import os
import tempfile

from ..diagnostics import error

MAX_SPEC_BYTES = 16 * 2**20  # a spec file bigger than this is not the checkpoint's copy


def spec_params(values: dict) -> dict:
    """A checkpoint's plain parameter values as `load` takes them (words, `3x3` literals)."""
    from ..lang.values import Dims, Sym
    out = {}
    for name, value in values.items():
        if isinstance(value, str):
            out[name] = Sym(value)
        elif isinstance(value, list):
            out[name] = Dims(value) if all(isinstance(v, int) for v in value) else tuple(value)
        else:
            out[name] = value
    return out


def _same_text(path: str, text: str) -> bool:
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_SPEC_BYTES:
            return False
        with open(path, encoding="utf-8") as f:
            return f.read() == text
    except (OSError, UnicodeDecodeError, ValueError):  # ValueError: a NUL in a damaged name
        return False


def load_checkpoint_spec(spec: dict, *, params: dict | None = None, input: tuple | None = None):
    """The network of a checkpoint's `spec` entry, with `params` and `input` overriding its own.

    Raises IncdslError when the saved spec no longer loads (e.g. the language changed).
    """
    from ..ir.network import load
    params = {**spec_params(spec["params"]), **(params or {})}
    input = input or tuple(spec["input"])
    sources, main = spec["sources"], spec["file"]
    if all(_same_text(path, text) for path, text in sources.items()):
        return load(main, params=params, input=input)
    with tempfile.TemporaryDirectory(prefix="incdsl-resume-") as tmp:
        try:
            main_copy = _write_sources(sources, main, tmp)
        except (OSError, ValueError) as exc:
            raise error(f"cannot rebuild the spec saved in the checkpoint: {exc}",
                        hint="pass the spec file before --resume") from None
        return load(main_copy, params=params, input=input)


def _write_sources(sources: dict, main: str, folder: str) -> str:
    """Write every source under `folder` in its original layout; returns the main file's copy."""
    files = {path: os.path.abspath(path) for path in sources}
    base = os.path.commonpath([os.path.dirname(p) for p in files.values()])
    for path, text in sources.items():
        # relpath from a common ancestor never climbs out of it, whatever the names say
        target = os.path.join(folder, os.path.relpath(files[path], base))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    return os.path.join(folder, os.path.relpath(files[main], base))


def classes_to_reset(network, num_classes: int) -> int | None:
    """The `num_classes` to give `to_torch` so the network has the checkpoint's class count."""
    shape = network.output_shape
    own = shape[0] if len(shape) == 1 else None
    return None if own == num_classes else num_classes


def data_source(settings: dict | None, given: str | None) -> str:
    """`--data` as given, or the run's (from the checkpoint's settings)."""
    if given:
        return given
    if settings and settings.get("data"):
        data = settings["data"]
        if data not in ("digits", "synthetic") and not os.path.isdir(data):
            raise error(f"the run's data folder {data} (named in the checkpoint) is gone",
                        hint="pass --data DIR: a folder of the same classes")
        return data
    raise error("the checkpoint does not say which data the run used", hint="pass --data DIR|digits|synthetic")
