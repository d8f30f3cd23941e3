"""Box texts in the style of the papers' figures: ``1x1 Conv (96)``, ``3x3 MaxPool (stride 2 V)``.

The Inception-v4 paper marks valid-padded layers with ``V`` and leaves same-padded ones
unmarked; it writes tensor shapes height x width x channels (``35x35x384``). We follow both.
"""
from __future__ import annotations

ACT_NAMES = {"relu": "ReLU", "relu6": "ReLU6", "gelu": "GELU", "silu": "SiLU", "sigmoid": "Sigmoid",
             "tanh": "Tanh", "elu": "ELU", "leaky_relu": "Leaky ReLU"}

# words written specially when a block name is shown as a title (`inception_resnet_a`)
_WORDS = {"resnet": "ResNet", "bn": "BN", "aux": "Aux"}


def hwc(shape) -> str:
    """``(384, 35, 35)`` -> ``"35x35x384"`` (as the papers write it); ``(1536,)`` -> ``"1536"``."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(v) for v in shape)


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


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pair(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _padding(kernel, pad) -> str | None:
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


def _window_marks(attrs) -> list[str]:
    marks = []
    if attrs["stride"] != (1, 1):
        marks.append(f"stride {_pair(attrs['stride'])}")
    pad = _padding(attrs["kernel"], attrs["pad"])
    if pad:
        marks.append(pad)
    return marks


def _with_marks(head: str, marks: list[str]) -> str:
    return f"{head} ({' '.join(marks)})" if marks else head


def _conv(a) -> str:
    marks = [str(a["filters"])] + _window_marks(a)
    if a["dilation"] != (1, 1):
        marks.append(f"dilation {_pair(a['dilation'])}")
    if a["groups"] != 1:
        marks.append(f"groups {a['groups']}")
    if a["act"] is None:
        marks.append("Linear")  # the papers' word for a convolution without activation
    elif a["act"] != "relu":
        marks.append(ACT_NAMES[a["act"]])
    return _with_marks(f"{a['kernel'][0]}x{a['kernel'][1]} Conv", marks)


def _pool(name: str):
    def label(a) -> str:
        marks = _window_marks(a)
        if a["ceil"]:
            marks.append("ceil")
        return _with_marks(f"{a['kernel'][0]}x{a['kernel'][1]} {name}", marks)
    return label


def _linear(a) -> str:
    marks = [str(a["units"])]
    if a["act"]:
        marks.append(ACT_NAMES[a["act"]])
    return _with_marks("Linear", marks)


LAYER_LABELS = {
    "input": lambda a: f"Input ({hwc(a['shape'])})",
    "conv": _conv,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("Avg Pooling"),
    "gap": lambda a: "Global Avg Pooling",
    "lrn": lambda a: "LocalRespNorm",
    "bn": lambda a: "BatchNorm",
    "act": lambda a: f"{ACT_NAMES[a['fn']]} activation",
    "dropout": lambda a: f"Dropout (keep {1 - a['p']:.4g})",
    "flatten": lambda a: "Flatten",
    "linear": _linear,
    "softmax": lambda a: "Softmax",
    "identity": lambda a: "Identity",
    "concat": lambda a: "Filter concat",
    "add": lambda a: "+",
}


def layer_label(op: str, attrs: dict) -> str:
    """The box text of one layer.

    Example:
        >>> layer_label("conv", {"filters": 384, "kernel": (3, 3), "stride": (2, 2), "pad": "V",
        ...                      "dilation": (1, 1), "groups": 1, "act": "relu"})
        '3x3 Conv (384 stride 2 V)'
    """
    return LAYER_LABELS[op](attrs)


def act_label(fn: str) -> str:
    """The box after a residual sum: ``Relu activation`` in the papers."""
    return f"{ACT_NAMES[fn]} activation"


def scale_note(scale: float) -> str:
    """The mark on the residual branch's edge into the sum."""
    return f"scale {_num(scale)}"
