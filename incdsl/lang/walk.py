"""The one walker over the statement trees of the AST (`syntax.py`).

Statements with a body (`concat`, `add`, `residual`, `branch`, `shortcut`, `repeat`, `with`,
`aux`, `if` (whose body is its clauses) and each clause) nest other statements; chains hold
elements; expressions nest expressions (`expr_children`). Every pass that needs the whole tree
(the choices of a search space, the labels an `aux` head taps, the block calls a body makes,
the names a layer reads) goes through these functions instead of recursing by hand, so a new
statement or expression kind is taught to one place. Lowering and the size estimate dispatch
on the kind (each kind means something different there, and a `let` binds for the statements
after it) and are not walks.
"""
from __future__ import annotations

from typing import Callable, Iterator, TypeVar

from . import syntax as s

T = TypeVar("T")


def children(stmt) -> tuple:
    """The statements nested directly in `stmt` (or in a definition); none for a chain or `input`."""
    return getattr(stmt, "body", None) or ()


def walk_statements(body) -> Iterator[tuple[s.Stmt, tuple]]:
    """(statement, its enclosing statements, outermost first) for every statement of `body`,
    depth first, in source order: a statement comes before the statements of its body."""
    stack = [(iter(body), ())]
    while stack:
        it, path = stack[-1]
        st = next(it, None)
        if st is None:
            stack.pop()
            continue
        yield st, path
        inner = children(st)
        if inner:
            stack.append((iter(inner), path + (st,)))


def iter_statements(body) -> Iterator[s.Stmt]:
    """Every statement of `body`, nested ones included, in source order."""
    for st, _ in walk_statements(body):
        yield st


def iter_elements(body) -> Iterator[s.Element]:
    """Every chain element (layer or block call) of `body`, nested ones included, in source order."""
    for st, _ in walk_statements(body):
        if isinstance(st, s.Chain):
            yield from st.elements


def expr_children(e) -> tuple:
    """The expressions nested directly in expression `e` (operands, call arguments, tuple items)."""
    if isinstance(e, s.BinOp):
        return (e.left, e.right)
    if isinstance(e, (s.Neg, s.Not)):
        return (e.operand,)
    if isinstance(e, s.Call):
        return e.args
    if isinstance(e, s.TupleLit):
        return e.items
    if isinstance(e, s.RangeLit):
        return (e.start, e.stop)
    return ()


def iter_exprs(e) -> Iterator:
    """`e` and every expression nested in it, outermost first, in source order."""
    todo = [e]
    while todo:
        e = todo.pop()
        yield e
        todo.extend(reversed(expr_children(e)))


def fold_statements(body, combine: Callable[[s.Stmt, list, tuple], T], path: tuple = ()) -> list[T]:
    """Bottom-up: `combine(stmt, values of its body's statements, enclosing statements)` for each
    statement of `body`, in source order; a statement's body is folded before the statement."""
    values = []
    for st in body:
        inner = getattr(st, "body", None)  # `children`, inlined: lowering folds every network it checks
        values.append(combine(st, fold_statements(inner, combine, path + (st,)) if inner else [], path))
    return values
