"""Box texts in the style of the papers' figures: ``1x1 Conv (96)``, ``3x3 MaxPool (stride 2 V)``.

Each layer's text comes from its op's `label` rule (`ops/`, marks in `ops/marks.py`); block
titles are made here.
"""
from __future__ import annotations

from ..ops.activation import act_label  # noqa: F401  (the box after a residual sum)
from ..ops.marks import hwc  # noqa: F401  (re-exported: shapes as the papers write them)
from ..ops.table import OPS

# words written specially when a block name is shown as a title (`inception_resnet_a`)
_WORDS = {"resnet": "ResNet", "bn": "BN", "aux": "Aux"}


def pretty_name(name: str) -> str:
    """A block or scope name as a title: ``inception_resnet_a`` -> ``Inception-ResNet-A``."""
    words = []
    for word in name.split("_"):
        if not word:
            continue
        if word.lower() in _WORDS:
            words.append(_WORDS[word.lower()])
        elif len(word) == 1:
            words.append(word.upper())
        else:
            words.append(word[0].upper() + word[1:])
    return "-".join(words) or name


def layer_label(op: str, attrs: dict) -> str:
    """The box text of one layer.

    Example:
        >>> layer_label("conv", {"filters": 384, "kernel": (3, 3), "stride": (2, 2), "pad": "V",
        ...                      "dilation": (1, 1), "groups": 1, "act": "relu"})
        '3x3 Conv (384 stride 2 V)'
    """
    return OPS[op].label(attrs)
