"""Export a compiled network to ONNX (needs torch, onnx and onnxscript)."""
from __future__ import annotations

import os
import tempfile

import torch


class MissingDependency(RuntimeError):
    """An optional package that the export needs is not installed; `install` says how."""

    def __init__(self, message: str, install: str):
        super().__init__(message)
        self.install = install


def check_onnx() -> None:
    """Raise `MissingDependency` naming what to install when ONNX export cannot run."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependency(f"ONNX export needs {' and '.join(missing)}", f"pip install {' '.join(missing)}")


def export_onnx(model: torch.nn.Module, input_shape: tuple, opset: int | None = None) -> bytes:
    """The ONNX bytes of `model` in eval mode, batch size dynamic, input `x`, output `logits`.

    The model is left in the mode it was in, and torch's global random state is not touched.

    Parameters:
        model: a compiled network (`to_torch` or a generated class).
        input_shape: (c, h, w) of one image.
    Returns:
        the serialised ONNX model (one file, weights included).
    """
    check_onnx()
    training = model.training
    # its own generator: exporting must not move torch's global random state
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        model.eval()
        with tempfile.TemporaryDirectory(prefix="incdsl-onnx-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, opset_version=opset,
                              verbose=False, input_names=["x"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
            with open(path, "rb") as f:
                return f.read()
    finally:
        model.train(training)  # the caller's model comes back in the mode it was in
