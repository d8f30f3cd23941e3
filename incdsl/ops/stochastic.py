"""Layers that drop a residual branch (or unit) at random while training, deterministic at
inference. `residual(survive = ...)`, `residual(drop_path = ...)` and `residual(swapout = ...)`
put them on the branch (and, for swapout, on the shortcut); they are layers too:

* `stochastic_depth SURVIVE` (Huang et al. 2016, "Deep Networks with Stochastic Depth", eq. 2
  and 5): in training the whole input is kept, unscaled, with probability SURVIVE for the
  whole mini-batch, and zeroed otherwise; at inference it is multiplied by SURVIVE.
  `split = N` drops channels [0, N) and [N, C) independently: PyramidNet's separated
  stochastic depth (Yamada et al. 2016, "Deep Pyramidal Residual Networks with Separated
  Stochastic Depth", arXiv 1612.01230: the branch's channels that meet the shortcut's real
  ones, and those that meet its zero padding).
* `drop_path P` (timm's `DropPath`, "drop path" of Larsson et al.'s FractalNet applied per
  sample): each sample's input is zeroed with probability P and the kept ones scaled by
  1 / (1 - P); the identity at inference.
* `swapout KEEP` (Singh et al. 2016, "Swapout: Learning an ensemble of deep architectures",
  eq. 4): an independent Bernoulli(KEEP) mask on every unit, unscaled; at inference the input
  times KEEP (the paper's deterministic inference).

Attributes: survive (float in (0, 1]) and split (int, 0: no split); p (float in [0, 1));
keep (float in (0, 1]). Parameters and MACs: none: they scale or zero values, which the
convention of `passes/cost.py` counts as free, and they change no layer's counts.
"""
from __future__ import annotations

from ..lang.values import show, t_nonneg, t_prob
from .base import Op, Signature, p_num, same_shape
from .marks import num


def t_survival(v):
    """A probability of keeping: in (0, 1] (0 would remove the branch for good)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1:
        return float(v)
    raise TypeError(f"expected a survival probability in (0, 1], found `{show(v)}`")


def depth_label(a) -> str:
    marks = [f"survive {num(a['survive'])}"] + ([f"split at {a['split']}"] if a["split"] else [])
    return f"Stochastic depth ({', '.join(marks)})"


def depth_torch(a, ins, out, lit) -> str:
    split = f", split={lit(a['split'])}" if a["split"] else ""
    return f"StochasticDepth({lit(a['survive'])}{split})"


OPS = (
    Op("stochastic_depth", "dropout",
       Signature({"survive": t_survival, "split": t_nonneg}, {"split": 0}, (("survive", p_num),), False,
                 "a survival probability such as `0.8`"),
       same_shape, depth_label, depth_torch,
       example=("residual(survive = 0.8):", "    conv 3x3 4 S", "residual(survive = 0.5, separate = yes):",
                "    conv 3x3 6 S", "    shortcut: pad_channels 6", "stochastic_depth 0.7 split = 2")),
    Op("drop_path", "dropout", Signature({"p": t_prob}, {}, (("p", p_num),), False, "a drop probability such as `0.1`"),
       same_shape, lambda a: f"Drop path ({num(a['p'])})", lambda a, ins, out, lit: f"DropPath({lit(a['p'])})",
       example=("residual(drop_path = 0.1):", "    conv 3x3 4 S", "drop_path 0.2")),
    Op("swapout", "dropout", Signature({"keep": t_survival}, {}, (("keep", p_num),), False,
                                       "a keep probability such as `0.5`"),
       same_shape, lambda a: f"Swapout mask (keep {num(a['keep'])})", lambda a, ins, out, lit: f"Swapout({lit(a['keep'])})",
       example=("residual(swapout = (0.9, 0.5)):", "    conv 3x3 4 S")),
)
