"""Channel shuffle: ShuffleNet's permutation of channels that lets grouped or split branches
exchange information (Zhang et al. 2017, arXiv 1707.01083, section 3.1; Ma et al. 2018,
ShuffleNet V2, arXiv 1807.11164, Figure 3).

`shuffle 2` reads the C channels as `groups` rows of C / groups and transposes them: output
channel i is input channel (i % groups) * (C / groups) + i // groups, as torchvision's
`channel_shuffle` (models/shufflenetv2.py: view, transpose, reshape) and `nn.ChannelShuffle`.

Attributes: groups. Free: no parameters, no multiply-adds (it moves values); no counter
(fvcore, ptflops, thop, torchinfo, torch's flop counter) counts it. Keeps the receptive field
(each output position reads one input position). Compiles to `layers.ChannelShuffle`, which
views and transposes as torchvision does (ONNX has no `channel_shuffle` operator).
"""
from __future__ import annotations

from ..lang.values import t_count
from .base import Op, Signature, keep_field, p_int
from .window import ShapeError, fmt, spatial


def shape(attrs, ins):
    c, h, w = spatial("shuffle", ins[0])
    g = attrs["groups"]
    if c % g:
        fits = [d for d in range(2, c) if c % d == 0][:4]  # groups of one channel each change nothing
        hint = (f"groups that divide {c}: " + ", ".join(str(d) for d in fits)) if fits else \
            f"make the input's depth a multiple of {g}"
        raise ShapeError(f"`shuffle {g}` needs a depth divisible by {g}, found the {fmt(ins[0])} input's {c} channels",
                         hint=hint)
    return (c, h, w), []


def label(a) -> str:
    return f"Channel shuffle ({a['groups']} groups)"


def torch(a, ins, out, lit) -> str:
    return f"ChannelShuffle({lit(a['groups'])})"


OPS = (
    Op("shuffle", "reshape", Signature({"groups": t_count}, {}, (("groups", p_int),), False,
                                       "the number of groups, such as `2`"),
       shape, label, torch, receptive=keep_field, example=("shuffle 2", "conv 1x1 6 -> shuffle groups = 3")),
)
