"""Pieces of box texts in the style of the papers' figures: ``1x1 Conv (96)``,
``3x3 MaxPool (stride 2 V)``.

The Inception-v4 paper marks valid-padded layers with ``V`` and leaves same-padded ones
unmarked; it writes tensor shapes height x width x channels (``35x35x384``). We follow both.
"""
from __future__ import annotations


def hwc(shape) -> str:
    """``(384, 35, 35)`` -> ``"35x35x384"`` (as the papers write it); ``(1536,)`` -> ``"1536"``."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(v) for v in shape)


def num(v) -> str:
    """A number in a box text: a float to three significant digits (``keep 0.833``, not the
    ``0.833333`` that a linear rule such as 1 - 5/6 * 0.2 computes), an integer as it is."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def pair(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def padding(kernel, pad) -> str | None:
    """The padding mark: ``V`` for valid, nothing for same, the numbers otherwise."""
    if kernel == (1, 1):
        return None  # padding changes nothing for a 1x1 window at any stride
    if pad == "S":
        return None
    if pad == "V" or not any(pad):
        return "V"
    kh, kw = kernel
    if pad == (kh // 2, kh // 2, kw // 2, kw // 2):
        return None  # the conventional "same" padding written out (Caffe, PyTorch)
    top, bottom, left, right = pad
    if top == bottom and left == right:
        return f"pad {top}" if top == left else f"pad {top},{left}"
    return "pad " + ",".join(str(p) for p in pad)


def window_marks(attrs) -> list[str]:
    marks = []
    if attrs["stride"] != (1, 1):
        marks.append(f"stride {pair(attrs['stride'])}")
    pad = padding(attrs["kernel"], attrs["pad"])
    if pad:
        marks.append(pad)
    return marks


def with_marks(head: str, marks: list[str]) -> str:
    return f"{head} ({' '.join(marks)})" if marks else head
