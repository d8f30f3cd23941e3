"""AST of the incdsl language: frozen dataclasses, each carrying its source span.

Built by `parse.py` from the Lark tree; read by `lower.py`. Nothing here knows about
shapes or the IR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..diagnostics import Span


# --- expressions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class DimsLit:
    """`3x3`, `1x7`, `3x299x299`."""
    values: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Attr:
    """`in.c`: an attribute of a name."""
    obj: str
    attr: str
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * / // %, comparisons == != < <= > >=, `and`, `or`
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Not:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class RangeLit:
    """`0:64`, a layer argument: a channel range (start included, stop excluded)."""
    start: "Expr"
    stop: "Expr"
    span: Span


@dataclass(frozen=True)
class TupleLit:
    items: tuple["Expr", ...]
    span: Span


Expr = Union[Num, DimsLit, Name, Attr, Call, BinOp, Neg, Not, TupleLit, RangeLit]


@dataclass(frozen=True)
class Arg:
    """One argument of a layer or call. kind: 'pos', 'kw' or 'stride' (`/2`)."""
    kind: str
    value: Expr
    span: Span
    name: str | None = None
    name_span: Span | None = None


# --- statements ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Element:
    """A layer (`conv 3x3 96 /2 V`) or a block call (`reduction_a(k = 192)`)."""
    name: str
    args: tuple[Arg, ...]
    label: str | None
    span: Span
    name_span: Span
    label_span: Span | None = None


@dataclass(frozen=True)
class Chain:
    elements: tuple[Element, ...]
    span: Span


@dataclass(frozen=True)
class InputStmt:
    shape: Expr
    span: Span


@dataclass(frozen=True)
class Composite:
    """`concat`, `add` or `residual` with its body."""
    kind: str
    args: tuple[Arg, ...]
    label: str | None
    body: tuple["Stmt", ...]
    span: Span
    label_span: Span | None = None


@dataclass(frozen=True)
class BranchStmt:
    label: str | None
    body: tuple["Stmt", ...]
    span: Span
    label_span: Span | None = None
    source: str | None = None  # `branch from NAME:`: a labelled tensor (or `in`) the branch reads
    source_span: Span | None = None


@dataclass(frozen=True)
class ShortcutStmt:
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class RepeatStmt:
    count: Expr
    var: str | None
    label: str | None
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class ScopeDefault:
    op: str
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True)
class WithStmt:
    defaults: tuple[ScopeDefault, ...]
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class AuxStmt:
    name: str
    args: tuple[Arg, ...]
    tap: str | None
    body: tuple["Stmt", ...]
    span: Span
    tap_span: Span | None = None


@dataclass(frozen=True)
class LetStmt:
    """`let NAME = EXPR`: a value for the statements after it in the same body."""
    name: str
    value: "Expr"
    span: Span
    name_span: Span


@dataclass(frozen=True)
class IfClause:
    """One clause of an `if`: kind 'if', 'elif' or 'else' (whose `cond` is None)."""
    kind: str
    cond: "Expr | None"
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class IfStmt:
    """`if` / `elif` / `else`: its clauses, in order, as its body (walkers see every clause)."""
    body: tuple[IfClause, ...]
    span: Span


@dataclass(frozen=True)
class RequireStmt:
    """`require EXPR` or `require EXPR, "message"`: lowering fails unless EXPR is yes; no layer."""
    cond: "Expr"
    message: str | None
    span: Span


Stmt = Union[Chain, InputStmt, Composite, BranchStmt, ShortcutStmt, RepeatStmt, WithStmt, AuxStmt, LetStmt,
             IfStmt, IfClause, RequireStmt]


# --- top level -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Definition:
    """`block NAME(params): body` or `network NAME(params): body`."""
    kind: str  # "block" | "network"
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Include:
    path: str
    span: Span


@dataclass(frozen=True)
class Module:
    """One parsed source file."""
    file: str
    includes: tuple[Include, ...]
    definitions: tuple[Definition, ...]
