"""Normalisation layers on their own.

`bn`: batch normalisation: gamma and beta per channel are parameters (running statistics are
buffers); they are not weights for `--against`. Attributes: eps, and momentum, the weight of
each batch in training's running averages (PyTorch's `momentum`, 0.1 by default; TensorFlow's
decay 0.99 is momentum 0.01, as MobileNetV3 and EfficientNet-B5..B7 use).

`layer_norm`: layer normalisation (Ba et al. 2016, arXiv 1607.06450) over the channels at each
position: each position's C values are normalised to mean 0 and variance 1 (biased), then
scaled and shifted per channel; on a flat input, over its features. On a CxHxW input it is
torchvision's `LayerNorm2d` (models/convnext.py: `nn.LayerNorm` applied channels-last), which
ConvNeXt uses (Liu et al. 2022, arXiv 2201.03545, section 2.6). Attribute: eps (1e-5, PyTorch's
default; ConvNeXt's 1e-6). Parameters: 2C (gamma, beta), not weights for `--against`; no
running statistics, so the same in training and eval, and never folded into a conv (it
normalises by each position's own statistics, which no fixed affine map can do). MACs: none,
as batch norm (the convention of `passes/cost.py`)."""
from __future__ import annotations

from ..lang.values import show, t_float, t_posfloat
from .base import Op, Signature, p_num, same_shape


TORCH_MOMENTUM = 0.1  # nn.BatchNorm2d's default: left out of compiled source


def t_momentum(v):
    v = t_float(v)
    if not 0 < v <= 1:
        raise TypeError(f"expected a batch-norm momentum in (0, 1], found `{show(v)}`")
    return v


def momentum_arg(momentum: float, lit, name: str = "momentum") -> str:
    """`, momentum=0.01` where it is not PyTorch's default."""
    return f", {name}={lit(momentum)}" if momentum != TORCH_MOMENTUM else ""


def cost(attrs, ins, out):
    return 2 * ins[0][0], 0


def torch(a, ins, out, lit) -> str:
    return (f"nn.BatchNorm{2 if len(ins[0]) == 3 else 1}d({lit(ins[0][0])}, eps={lit(a['eps'])}"
            f"{momentum_arg(a['momentum'], lit)})")


def layer_norm_torch(a, ins, out, lit) -> str:
    cls = "LayerNorm2d" if len(ins[0]) == 3 else "nn.LayerNorm"
    return f"{cls}({lit(ins[0][0])}, eps={lit(a['eps'])})"


OPS = (
    Op("bn", "norm", Signature({"eps": t_posfloat, "momentum": t_momentum}, {"eps": 1e-5, "momentum": TORCH_MOMENTUM},
                               (("eps", p_num),), False, "an epsilon"),
       same_shape, lambda a: "BatchNorm", torch, cost=cost, weights=lambda a, params: 0,
       example=("bn", "bn 0.001 momentum = 0.01")),
    Op("layer_norm", "norm", Signature({"eps": t_posfloat}, {"eps": 1e-5}, (("eps", p_num),), False, "an epsilon"),
       same_shape, lambda a: "LayerNorm", layer_norm_torch, cost=cost, weights=lambda a, params: 0, head=True,
       example=("layer_norm", "layer_norm 1e-6 -> gap -> layer_norm -> flatten -> layer_norm eps = 0.001")),
)
