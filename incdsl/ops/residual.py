"""The `residual(...)` statement: its arguments, and the layers they put on each path.

    residual(scale = 0.17, act = relu)      act(shortcut + 0.17 * branch)
    residual(survive = 0.8)                 stochastic depth on the branch (Huang et al. 2016)
    residual(survive = p, separate = yes)   ... the branch's channels beyond the input's depth
                                            dropped apart (PyramidNet, Yamada et al. 2016)
    residual(drop_path = 0.1)               per-sample drop path on the branch (timm)
    residual(swapout = (0.9, 0.5))          swapout masks on shortcut and branch (Singh et al. 2016)
    residual(scale = learned)               a learned scalar on the branch, from 0 (Shen & Zeng 2016)
    residual(scale = learned(0.1))          ... from 0.1

A residual lowers to its paths, these layers at their ends (`ops/stochastic.py`), and an `add`
node of (shortcut, scale * branch). A probability that keeps everything (survive 1, drop_path
0, keep 1) adds no layer.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..lang.values import Learned, Sym, show, t_bool, t_prob, t_weight
from .activation import t_act
from .base import Signature, p_num
from .learned_scale import LEARNED
from .stochastic import t_survival


def t_scale(v):
    """A fixed scale (a number), or one to learn: `learned` (from 0) or `learned(INIT)`."""
    if isinstance(v, Learned):
        return Learned(t_weight(v.init))
    if isinstance(v, Sym) and v == LEARNED:
        return Learned(0.0)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return t_weight(v)
    raise TypeError(f"expected a number, `learned` or `learned(INIT)`, found `{show(v)}`")


def p_scale(v):
    return p_num(v) or isinstance(v, Learned) or (isinstance(v, Sym) and v == LEARNED)


def t_swapout(v):
    """(keep probability of the shortcut, keep probability of the branch)."""
    if isinstance(v, tuple) and len(v) == 2:
        try:
            return (t_survival(v[0]), t_survival(v[1]))
        except TypeError:
            pass
    raise TypeError(f"expected two survival probabilities in (0, 1], (shortcut, branch) such as `(0.9, 0.5)`, "
                    f"found `{show(v)}`")


RESIDUAL = Signature(
    {"scale": t_scale, "act": t_act, "survive": t_survival, "drop_path": t_prob, "swapout": t_swapout,
     "separate": t_bool},
    {"scale": 1.0, "act": "relu", "survive": None, "drop_path": None, "swapout": None, "separate": False},
    (("scale", p_scale),), False, "a scale factor")


@dataclass(frozen=True)
class Parts:
    """What a residual's arguments add: layers (op, attrs) at the end of each path, and the sum's scale."""
    shortcut: tuple = ()
    branch: tuple = ()
    scale: float = 1.0


def residual_parts(attrs: dict, in_depth: int) -> Parts:
    """The layers `attrs` put on the shortcut and the branch of a residual whose input has
    `in_depth` channels (where `separate = yes` splits the branch).

    Raises:
        TypeError: arguments that do not go together (the whole message).
    """
    chosen = [k for k in ("survive", "drop_path", "swapout") if attrs[k] is not None]
    if len(chosen) > 1:
        raise TypeError(f"`residual` takes one of `survive`, `drop_path` and `swapout`, found "
                        f"{' and '.join(f'`{k}`' for k in chosen)}")
    if attrs["separate"] and attrs["survive"] is None:
        raise TypeError("`separate = yes` splits stochastic depth: give `survive` too")
    shortcut, branch = [], []
    if attrs["survive"] is not None and attrs["survive"] < 1:
        branch.append(("stochastic_depth", {"survive": attrs["survive"], "split": in_depth if attrs["separate"] else 0}))
    if attrs["drop_path"]:
        branch.append(("drop_path", {"p": attrs["drop_path"]}))
    if attrs["swapout"] is not None:
        keep_shortcut, keep_branch = attrs["swapout"]
        if keep_shortcut < 1:
            shortcut.append(("swapout", {"keep": keep_shortcut}))
        if keep_branch < 1:
            branch.append(("swapout", {"keep": keep_branch}))
    scale = attrs["scale"]
    if isinstance(scale, Learned):
        branch.append(("learned_scale", {"init": scale.init}))
        scale = 1.0
    return Parts(tuple(shortcut), tuple(branch), scale)
