"""Activations: the one list of activation functions, the `act` layer and its `relu` spelling.

Every other op that takes an activation (`conv`, `linear`, `add`) checks it with `t_act` and
draws and compiles it from `ACTIVATIONS`. The `act` layer's attribute: fn, the name.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..lang.values import Sym, show
from .base import Op, Signature, same_shape


@dataclass(frozen=True)
class Activation:
    label: str  # as the papers write it
    torch: str  # constructor source; the compiled layers' `make_act` builds the same by name


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("ReLU", "nn.ReLU()"),
    "relu6": Activation("ReLU6", "nn.ReLU6()"),
    "gelu": Activation("GELU", "nn.GELU()"),
    "silu": Activation("SiLU", "nn.SiLU()"),
    "sigmoid": Activation("Sigmoid", "nn.Sigmoid()"),
    "tanh": Activation("Tanh", "nn.Tanh()"),
    "elu": Activation("ELU", "nn.ELU()"),
    "leaky_relu": Activation("Leaky ReLU", "nn.LeakyReLU()"),
}


def t_act(v):
    if v is None or v is False:
        return None
    if v is True:
        return "relu"
    if isinstance(v, Sym) and v in ACTIVATIONS:
        return str(v)
    raise TypeError(f"expected an activation ({', '.join(ACTIVATIONS)}) or `off`, found `{show(v)}`")


def p_act(v):
    return isinstance(v, Sym) and v in ACTIVATIONS


def act_label(fn: str) -> str:
    """The box of an activation on its own: ``ReLU activation``."""
    return f"{ACTIVATIONS[fn].label} activation"


OPS = (
    Op("act", "act", Signature({"fn": t_act}, {"fn": "relu"}, (("fn", p_act),), False, "an activation name"),
       same_shape, lambda a: act_label(a["fn"]), lambda a, ins, out, lit: ACTIVATIONS[a["fn"]].torch,
       aliases={"relu": {"fn": "relu"}}, words=tuple(ACTIVATIONS), head=True,
       example=tuple(f"act {fn}" for fn in ACTIVATIONS)),
)
