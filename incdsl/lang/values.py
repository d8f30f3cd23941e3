"""Values of the language: evaluating expressions and checking layer arguments.

Values are ints, floats, bools, `Sym` (a bare word such as `relu`, `V` or `S`), `Dims`
(a literal `3x3`), tuples, and None. Layer arguments are checked against each op's signature
(in `ops/`) with the type checkers below, and normalised into the plain data the IR stores.
"""
from __future__ import annotations

import math
from typing import Callable

from . import syntax as s
from ..diagnostics import Span


class Sym(str):
    """A bare word used as a value: `relu`, `V`, `S`."""


class Dims(tuple):
    """A literal such as `3x3` or `3x299x299`."""


class ChannelRange(tuple):
    """A literal `A:B` (start, stop): the channels a `channels` layer keeps."""


class InDepth(int):
    """`in.c`: a depth that matches the input, so a width multiplier leaves it alone.

    Arithmetic on it gives a plain int: `in.c // 2` is scaled like any other count."""


class EvalError(Exception):
    def __init__(self, message: str, span: Span, hint: str | None = None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


INT_LIMIT = 10 ** 100  # no count or size comes near; larger results are errors
ROUND_DIGITS = 100  # `round(x, n)` with |n| up to this; round(8, -10**30) would compute 10**(10**30)

_WORDS = {"yes": True, "on": True, "true": True, "no": False, "off": False, "false": False, "none": None}
WORDS = frozenset(_WORDS)


def symbols() -> frozenset:
    """Bare words that are values (`relu`, `V`): those the ops' arguments accept."""
    from ..ops.table import SYMBOLS  # read lazily: the ops' modules import this one
    return SYMBOLS


def show(value) -> str:
    if isinstance(value, Dims):
        return "x".join(map(str, value))
    if isinstance(value, ChannelRange):
        return ":".join(show(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return repr(value) if isinstance(value, Learned) else str(value)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checked(value, span: Span):
    """`value` if it is a finite number of sane size; an EvalError at `span` otherwise.

    Every literal and every result goes through here, so no later step sees inf, nan or an
    integer past `INT_LIMIT` (past 10**100 numbers only make huge messages, and past 4300
    digits Python refuses to print them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise EvalError("number is not finite", span, "numbers must stay below about 1e308")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        raise EvalError("number too large", span, "integers have at most 100 digits")
    return value


def _check_round_digits(digits, span: Span) -> None:
    # Checked before computing: round(8, -10**30) would build 10**(10**30) and never return.
    if not isinstance(digits, int) or abs(digits) > ROUND_DIGITS:
        raise EvalError(f"`round` digits must be an integer from -{ROUND_DIGITS} to {ROUND_DIGITS}, "
                        f"found `{show(digits)}`", span)


def divisible(v, d=8, min_value=None):
    """Round v to the nearest multiple of d, never below 90% of v (MobileNet's rule)."""
    min_value = min_value or d
    out = max(min_value, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


class Learned:
    """`learned(INIT)` (or the bare word `learned`, INIT 0): a value the network learns,
    starting at INIT, where an argument takes one (`residual(scale = learned)`)."""

    def __init__(self, init: float = 0.0):
        self.init = float(init)

    def __eq__(self, other):
        return isinstance(other, Learned) and other.init == self.init

    def __hash__(self):
        return hash(("learned", self.init))

    def __repr__(self):
        return f"learned({self.init:g})"


_FUNCS: dict[str, Callable] = {
    "min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round,
    "ceil": math.ceil, "floor": math.floor, "divisible": divisible, "learned": Learned,
}


def evaluate(expr: s.Expr, env: dict, in_shape: tuple | None):
    """Value of an expression. `env` maps names to values; `in_shape` backs `in.c/h/w`."""
    if isinstance(expr, s.Num):
        return checked(expr.value, expr.span)  # 1e400 reads as inf
    if isinstance(expr, s.DimsLit):
        return Dims(expr.values)
    if isinstance(expr, s.Name):
        if expr.id in env:
            return env[expr.id]
        if expr.id in _WORDS:
            return _WORDS[expr.id]
        if expr.id in symbols():
            return Sym(expr.id)
        from ..diagnostics import did_you_mean
        raise EvalError(f"unknown name `{expr.id}`", expr.span,
                        did_you_mean(expr.id, list(env) + sorted(symbols())) or
                        "parameters are declared in the header: `block name(p = 1):`")
    if isinstance(expr, s.Attr):
        if expr.obj != "in":
            raise EvalError(f"`{expr.obj}` has no attributes", expr.span, "only `in.c`, `in.h` and `in.w` exist")
        if expr.attr not in ("c", "h", "w"):
            raise EvalError(f"`in` has no attribute `{expr.attr}`", expr.span, "use `in.c`, `in.h` or `in.w`")
        if in_shape is None:
            raise EvalError("`in` is not defined in parameter defaults of the network", expr.span)
        if expr.attr != "c" and len(in_shape) != 3:
            raise EvalError(f"the input is flat ({in_shape[0]}); it has no `{expr.attr}`", expr.span)
        value = in_shape["chw".index(expr.attr)]
        return InDepth(value) if expr.attr == "c" else value
    if isinstance(expr, s.Neg):
        v = evaluate(expr.operand, env, in_shape)
        if not _is_num(v):
            raise EvalError(f"cannot negate `{show(v)}`", expr.span)
        return -v
    if isinstance(expr, s.Not):
        return not truth(evaluate(expr.operand, env, in_shape), expr.operand.span, "`not`")
    if isinstance(expr, s.BinOp) and expr.op in ("and", "or"):
        # Short-circuit, as in Python: `i > 0 and n // i > 2` never divides by zero.
        left = truth(evaluate(expr.left, env, in_shape), expr.left.span, f"`{expr.op}`")
        if left == (expr.op == "or"):
            return left
        return truth(evaluate(expr.right, env, in_shape), expr.right.span, f"`{expr.op}`")
    if isinstance(expr, s.BinOp) and expr.op in _COMPARE:
        return compare(expr.op, evaluate(expr.left, env, in_shape), evaluate(expr.right, env, in_shape), expr.span)
    if isinstance(expr, s.BinOp):
        a, b = evaluate(expr.left, env, in_shape), evaluate(expr.right, env, in_shape)
        if not (_is_num(a) and _is_num(b)):
            raise EvalError(f"`{expr.op}` needs numbers, found `{show(a)}` and `{show(b)}`", expr.span)
        if expr.op in ("/", "//", "%") and b == 0:
            raise EvalError("division by zero", expr.span)
        try:
            value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                     "//": lambda: a // b, "%": lambda: a % b}[expr.op]()
        except OverflowError:
            raise EvalError("number too large", expr.span) from None
        return checked(value, expr.span)
    if isinstance(expr, s.Call):
        if expr.func == "choice":
            raise EvalError("this spec is a search space: `choice` has no single value here", expr.span,
                            "`incdsl check` describes the space; `incdsl sample` writes concrete specs from it")
        if expr.func not in _FUNCS:
            from ..diagnostics import did_you_mean
            raise EvalError(f"unknown function `{expr.func}`", expr.span,
                            did_you_mean(expr.func, _FUNCS) or "functions: " + ", ".join(sorted(_FUNCS)))
        args = [evaluate(a, env, in_shape) for a in expr.args]
        if not args or not all(_is_num(a) for a in args):
            raise EvalError(f"`{expr.func}` needs numeric arguments", expr.span)
        if expr.func == "round" and len(args) == 2:
            _check_round_digits(args[1], expr.args[1].span)
        try:
            value = _FUNCS[expr.func](*args)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise EvalError(f"`{expr.func}`: {exc}", expr.span) from None
        return checked(value, expr.span)
    if isinstance(expr, s.TupleLit):
        return tuple(evaluate(e, env, in_shape) for e in expr.items)
    if isinstance(expr, s.RangeLit):
        return ChannelRange((evaluate(expr.start, env, in_shape), evaluate(expr.stop, env, in_shape)))
    raise AssertionError(f"unknown expression {expr!r}")


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def truth(value, span: Span, what: str) -> bool:
    """A condition's value: yes or no only (a number or a word is a mistake, not true)."""
    if not isinstance(value, bool):
        raise EvalError(f"{what} needs yes or no, found `{show(value)}`", span,
                        "compare it to get yes or no: `n > 0`, `act == relu`")
    return value


def compare(op: str, a, b, span: Span) -> bool:
    """`==` and `!=` compare any two values (a number is never equal to a word); `<`, `<=`,
    `>`, `>=` only numbers."""
    if op in ("==", "!="):
        same = _is_num(a) == _is_num(b) and isinstance(a, bool) == isinstance(b, bool) and a == b
        return same if op == "==" else not same
    if not (_is_num(a) and _is_num(b)):
        raise EvalError(f"`{op}` needs numbers, found `{show(a)}` and `{show(b)}`", span)
    return _COMPARE[op](a, b)


# --- argument types: each checks a value and returns its normalised form, or raises TypeError

def _int_value(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool):  # 96.0 too: `//` gives integers
        raise TypeError(f"expected an integer, found `{show(v)}`")
    return v


def t_count(v):
    v = _int_value(v)
    if v < 1:
        raise TypeError(f"expected a positive integer, found `{v}`")
    return v


def t_nonneg(v):
    v = _int_value(v)
    if v < 0:
        raise TypeError(f"expected a non-negative integer, found `{v}`")
    return v


def t_pair(v):
    if isinstance(v, (Dims, tuple)) and len(v) == 2:
        return (t_count(v[0]), t_count(v[1]))
    if isinstance(v, (Dims, tuple)):
        raise TypeError(f"expected one size or two (height, width), found `{show(v)}`")
    n = t_count(v)
    return (n, n)


def t_pad(v):
    if isinstance(v, Sym) and v in ("V", "S"):
        return str(v)
    if isinstance(v, (tuple, Dims)):
        if len(v) == 2:
            ph, pw = t_nonneg(v[0]), t_nonneg(v[1])
            return (ph, ph, pw, pw)
        if len(v) == 4:
            return tuple(t_nonneg(x) for x in v)
        raise TypeError(f"expected padding V, S, p, (ph, pw) or (top, bottom, left, right), found `{show(v)}`")
    try:
        p = t_nonneg(v)
    except TypeError:
        raise TypeError(f"expected padding V, S or a number of pixels, found `{show(v)}`") from None
    return (p, p, p, p)


def t_bool(v):
    if not isinstance(v, bool):
        raise TypeError(f"expected yes or no, found `{show(v)}`")
    return v


def t_bn(v):
    if v is None or v is False:
        return None
    if v is True:
        return 1e-5
    if _is_num(v) and v > 0:
        return float(v)
    raise TypeError(f"expected `on`, `off` or an epsilon such as 0.001, found `{show(v)}`")


def t_prob(v):
    if not _is_num(v) or not 0 <= v < 1:
        raise TypeError(f"expected a probability in [0, 1), found `{show(v)}`")
    return float(v)


def t_float(v):
    if not _is_num(v):
        raise TypeError(f"expected a number, found `{show(v)}`")
    return float(v)


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32


def t_weight(v):
    """A number the compiled network multiplies a float32 tensor by (a scale, a weight, a learned
    value's start): torch refuses to convert a larger one, at the first forward pass."""
    v = t_float(v)
    if abs(v) > FLOAT32_MAX:
        raise TypeError(f"expected a number of at most {FLOAT32_MAX:.3g} in size (a float32 weight), found `{show(v)}`")
    return v


def t_loss_weight(v):
    """An auxiliary loss's weight: 0 (the head is computed but not trained) or more; a negative
    one would train the trunk to make the head's predictions worse."""
    v = t_weight(v)
    if v < 0:
        raise TypeError(f"expected a loss weight of 0 or more, found `{show(v)}`")
    return v


def t_posfloat(v):
    v = t_float(v)
    if v <= 0:
        raise TypeError(f"expected a positive number, found `{show(v)}`")
    return v


def t_shape(v):
    if not isinstance(v, (Dims, tuple)) or len(v) != 3:
        raise TypeError(f"expected an input size such as `3x224x224`, found `{show(v)}`")
    return tuple(t_count(x) for x in v)


def parse_value(text: str):
    """A value given on the command line (`--set NAME=VALUE`): integer, float, yes/no, or a bare word."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text in _WORDS:
        return _WORDS[text]
    return Sym(text)
