"""Activations: the one list of activation functions, the `act` layer and its `relu` spelling.

Every other op that takes an activation (`conv`, `linear`, `add`) checks it with `t_act`, draws
it from `ACTIVATIONS` and compiles it with `fused_act`: the compiled layers receive the module,
not its name, so this is the only activation table. The `act` layer's attribute: fn, the name.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..lang.values import Sym, show
from .base import Op, Signature, same_shape


@dataclass(frozen=True)
class Activation:
    label: str  # as the papers write it
    module: str  # the torch class, e.g. "nn.ReLU"; compiled layers receive the module, not the name
    takes_inplace: bool = False  # whether its constructor takes `inplace` (ReLU does, GELU does not)

    def torch(self, inplace: bool = False) -> str:
        """Constructor source; in place only where the caller knows the input is fresh (nothing
        else reads it) and the module can do it."""
        return f"{self.module}(inplace=True)" if inplace and self.takes_inplace else f"{self.module}()"


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("ReLU", "nn.ReLU", True),
    "relu6": Activation("ReLU6", "nn.ReLU6", True),
    "gelu": Activation("GELU", "nn.GELU"),
    "silu": Activation("SiLU", "nn.SiLU", True),
    "sigmoid": Activation("Sigmoid", "nn.Sigmoid"),
    "tanh": Activation("Tanh", "nn.Tanh"),
    "elu": Activation("ELU", "nn.ELU", True),
    "leaky_relu": Activation("Leaky ReLU", "nn.LeakyReLU", True),
    # MobileNetV3's piecewise-linear stand-ins (Howard et al. 2019, arXiv 1905.02244, section 5.2):
    # x * relu6(x + 3) / 6 and relu6(x + 3) / 6
    "hardswish": Activation("Hard swish", "nn.Hardswish", True),
    "hardsigmoid": Activation("Hard sigmoid", "nn.Hardsigmoid", True),
}


def fused_act(fn: str | None) -> str:
    """Source of a layer's ``act=`` argument: the activation applied to the layer's own fresh
    output (conv, linear, sum), so in place where the module can; ``None`` for none."""
    return ACTIVATIONS[fn].torch(inplace=True) if fn is not None else "None"


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
       same_shape, lambda a: act_label(a["fn"]), lambda a, ins, out, lit: ACTIVATIONS[a["fn"]].torch(),
       aliases={"relu": {"fn": "relu"}}, words=tuple(ACTIVATIONS), head=True,
       example=tuple(f"act {fn}" for fn in ACTIVATIONS)),
)
