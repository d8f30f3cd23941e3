"""Printing Python: a line printer, straight-line methods and module-construction expressions."""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from pathlib import Path

from ..ir.names import literal
from .plan import Container, Lits

# Containers nested in one expression: deeper ones are filled by later statements, so no
# statement nests near the 200 brackets Python's parser allows, however deep the spec.
MAX_NESTING = 8


class Printer:
    """Lines of source with an indentation level (pegen's generator style)."""

    def __init__(self):
        self.lines: list[str] = []
        self.level = 0

    def __call__(self, line: str = "") -> None:
        self.lines.append("    " * self.level + line if line else "")

    @contextmanager
    def indent(self):
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def docstring(self, text: str, quoted: tuple[str, ...] = ()) -> None:
        """Print `text` as a docstring at the current indentation (written by `literal`).

        `quoted` are the pieces of `text` that come from a spec or a user: when one spans lines
        (or holds any other unprintable character) the docstring is one escaped line instead,
        so that indenting the lines does not change that piece. Lone surrogates, which a
        docstring cannot hold, are shown as `\\udcff` escapes.
        """
        # a class's __doc__ must encode as UTF-8: a lone surrogate (from an undecodable file name) is shown escaped
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        pad = "    " * self.level
        first, *rest = text.split("\n")
        if all(q.isprintable() for q in quoted):
            if rest:
                text = "\n".join([first] + [pad + line if line else "" for line in rest]) + "\n" + pad
            first, *rest = literal(text, doc=True).split("\n")
        else:
            first, rest = literal(text), []
        self(first)
        self.lines.extend(rest)


def prelude() -> str:
    """The layer classes, cut from `layers.py` between its marker comments."""
    text = Path(__file__).with_name("layers.py").read_text(encoding="utf-8")
    start = text.index("# --- incdsl layers: begin")
    end = text.index("# --- incdsl layers: end")
    return text[start:end] + text[end:].splitlines()[0] + "\n"


def emit_method(pr: Printer, signature: str, params: list[str], items: list[tuple], returns: list[str],
                ret_format=None, before: dict | None = None, opening: list[str] = ()) -> None:
    """Print a method that runs `items` in order.

    Items are (callee, input values, output values[, keyword arguments' text, such as
    ", defer=True"]). Each value gets a variable named `x`,
    `x1`, ... and a variable is reused once its value is dead, so tensors are freed as soon as
    possible, as in hand-written code. `before` maps an item index to a function of the
    variables that prints extra lines before that item; `opening` lines come first (the
    first parameter is `x`).
    """
    last = {}
    for i, (_, ins, *_) in enumerate(items):
        for v in ins:
            last[v] = i
    keep = set(returns)
    free: list[int] = []
    count = 0
    slot: dict[str, int] = {}

    def alloc(v):
        nonlocal count
        if free:
            free.sort()
            slot[v] = free.pop(0)
        else:
            slot[v], count = count, count + 1

    def var(v):
        return "x" if slot[v] == 0 else f"x{slot[v]}"

    for v in params:
        alloc(v)
    pr(signature.format(*[var(v) for v in params]))
    with pr.indent():
        for line in opening:
            pr(line)
        for i, (callee, ins, outs, *keywords) in enumerate(items):
            if before and i in before:
                before[i](lambda v: var(v))
            args = ", ".join(var(v) for v in ins) + "".join(keywords)
            for v in dict.fromkeys(ins):
                if last[v] == i and v not in keep:
                    free.append(slot[v])
            names = []
            for v in outs:
                if v in last or v in keep:
                    alloc(v)
                    names.append(var(v))
                else:
                    names.append("_")
            pr(f"{', '.join(names)} = self.{callee}({args})")
        vals = [var(v) for v in returns]
        pr("return " + (ret_format(vals) if ret_format else ", ".join(vals)))


def build_lines(pr: Printer, tree: Container, leaf_text) -> None:
    """Print `self.name = ...` for each child of an owner's tree.

    A container nested deeper than MAX_NESTING is created empty, bound to a local (`_m1`;
    generated names never start with `_`), and filled by the statements that follow, in the
    same order, so modules register (and state-dict keys come) in the same order.
    """
    temps = itertools.count(1)
    work = [("self", tree)]
    while work:
        target, container = work.pop(0)
        pending: list = []
        for key in (container.children if container.kind == "scope" else range(max(container.children) + 1)):
            child = container.children.get(key)
            text = "Scope()" if child is None else _expr(child, leaf_text, pr.level, 0, temps, pending)
            first, *rest = text.split("\n")
            pr(f"{target}.{key} = {first}" if container.kind == "scope" else f"{target}.append({first}")
            pr.lines.extend(rest)
            if container.kind == "list":
                pr.lines[-1] += ")"
        work[:0] = pending


def _expr(child, leaf_text, level: int, depth: int, temps, pending: list) -> str:
    if not isinstance(child, Container):
        return leaf_text(child)
    if not child.children:
        return "Scope()"
    if depth >= MAX_NESTING:
        temp = f"_m{next(temps)}"
        pending.append((temp, child))
        return f"({temp} := {'nn.ModuleList()' if child.kind == 'list' else 'Scope()'})"
    pad = "    " * (level + 1)
    if child.kind == "list":
        n = max(child.children) + 1
        texts = [_expr(child.children[i], leaf_text, level + 1, depth + 1, temps, pending) if i in child.children
                 else "Scope()" for i in range(n)]
        if n > 1 and len(set(texts)) == 1 and "\n" not in texts[0] and Lits.MARK not in texts[0]:
            return f"nn.ModuleList([{texts[0]} for _ in range({n})])"
        return "nn.ModuleList([\n" + "".join(f"{pad}{t},\n" for t in texts) + "    " * level + "])"
    body = "".join(f"{pad}{k}={_expr(v, leaf_text, level + 1, depth + 1, temps, pending)},\n"
                   for k, v in child.children.items())
    return "Scope(\n" + body + "    " * level + ")"
