"""`learned_scale`: a learned scalar that multiplies its input: the weight of a residual branch in Weighted
Residual Networks (Shen & Zeng 2016, "Weighted Residuals for Very Deep Networks", arXiv
1605.08831: ``y = x + lambda * F(x)`` with one learned lambda per residual unit, optimised by
projected SGD, which keeps it in [-1, 1]; the projection is the optimiser's business and is
not done here). Written `residual(scale = learned)` or `residual(scale = learned(0.1))`, or as
the layer `learned_scale 0.1`.

Attribute: init, the starting value (0 by default: every weighted unit starts as the identity).
Parameters: 1 (a weight for `--against`). MACs: none: an element-wise product, free by the
convention of `passes/cost.py`.

`layer_scale`: a learned multiplier per channel (Touvron et al. 2021, CaiT, arXiv 2103.17239,
section 2.2), as ConvNeXt's blocks end (Liu et al. 2022, arXiv 2201.03545; torchvision's
`CNBlock.layer_scale`, models/convnext.py). Attribute: init, every channel's starting value
(1e-6 by default, ConvNeXt's). Parameters: C (weights for `--against`, as `learned_scale`'s
scalar); its state-dict tensor is `layer_scale` of shape [C, 1, 1], torchvision's name and
shape. MACs: none (an element-wise product).
"""
from __future__ import annotations

from ..lang.values import t_weight
from .base import Op, Signature, p_num, same_shape
from .marks import num

LEARNED = "learned"


def cost(attrs, ins, out):
    return 1, 0


def layer_scale_cost(attrs, ins, out):
    return ins[0][0], 0


def layer_scale_torch(a, ins, out, lit) -> str:
    flat = ", flat=True" if len(ins[0]) != 3 else ""
    return f"LayerScale({lit(ins[0][0])}, {lit(a['init'])}{flat})"


OPS = (
    Op("learned_scale", "norm", Signature({"init": t_weight}, {"init": 0.0}, (("init", p_num),), False,
                                          "a starting value such as `0.1`"),
       same_shape, lambda a: f"Learned scale (init {num(a['init'])})",
       lambda a, ins, out, lit: f"LearnedScale({lit(a['init'])})", cost=cost, words=(LEARNED,),
       # a branch that starts at 0 passes no gradient: the 3x3 one starts at 0.5 for the field probe
       example=("residual(scale = learned(0.5)):", "    conv 3x3 4 S", "residual(scale = learned):", "    conv 1x1 4",
                "learned_scale 2")),
    Op("layer_scale", "norm", Signature({"init": t_weight}, {"init": 1e-6}, (("init", p_num),), False,
                                        "a starting value such as `1e-6`"),
       same_shape, lambda a: f"Layer scale (init {num(a['init'])})",
       layer_scale_torch,
       cost=layer_scale_cost, head=True, example=("layer_scale 0.5", "layer_scale -> flatten -> layer_scale init = 2")),
)
