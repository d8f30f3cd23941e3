"""Lowering's control forms: `let` bindings, `if` / `elif` / `else`, `require`, and the branches
of a join written with `repeat`, `if`, `let` and `require` among its `branch:` statements.

All of them are decided while lowering, from values known then (parameters, loop variables,
`in.c`): none makes a node of its own. A mixin of `lower.Lowerer` (it uses the Lowerer's
`fail`, `eval`, `count_values` and `lower_body`).
"""
from __future__ import annotations

from ..diagnostics import Label
from ..lang import syntax as s
from ..lang.values import EvalError, show, t_nonneg, truth
from ..lang.walk import iter_exprs
from .program import KEYWORDS, RESERVED

_AXES = {"c": 0, "h": 1, "w": 2}  # `in.c`, `in.h`, `in.w`


class ControlFlow:
    def bind_let(self, stmt: s.LetStmt, ctx):
        """The context after `let NAME = EXPR`: NAME bound for the rest of the body."""
        if stmt.name in RESERVED or stmt.name in KEYWORDS:
            self.fail(f"`{stmt.name}` is a reserved word and cannot be bound", stmt.name_span, ctx)
        if stmt.name in ctx.env:
            self.fail(f"`{stmt.name}` is already bound here", stmt.name_span, ctx,
                      labels=self._binding_labels(stmt.name, ctx),
                      hint=f"a `let` names a new value: choose another name, such as `{stmt.name}2`, "
                           "or compute the value where it is first bound")
        value = self.eval(stmt.value, ctx)
        self.count_values(len(ctx.env) + 1, stmt.span, ctx)
        return ctx.but(env={**ctx.env, stmt.name: value})

    def check_loop_name(self, st: s.RepeatStmt, ctx) -> None:
        """`repeat N as NAME` binds a new name, as `let` does: shadowing a parameter, a `let` or
        an outer loop's name would silently change what the body computes."""
        if st.var and st.var in ctx.env:
            self.fail(f"`{st.var}` is already bound here", st.span, ctx, labels=self._binding_labels(st.var, ctx),
                      hint=f"a repeat's index is a new name: choose another, such as `{st.var}2`")

    def _binding_labels(self, name: str, ctx) -> list:
        """Where `name` is declared, when it is a parameter of the definition being lowered."""
        d = self.blocks.get(ctx.block) if ctx.block is not None else self.program.network
        for p in (d.params if d is not None else ()):
            if p.name == name:
                return [Label(p.span, "declared here as a parameter")]
        return []

    def chosen_clause(self, stmt: s.IfStmt, ctx) -> s.IfClause | None:
        """The first clause of an `if` whose condition holds (an `else` always does), or None."""
        for clause in stmt.body:
            if clause.cond is None or self.condition(clause.cond, ctx):
                return clause
        return None

    def condition(self, expr, ctx) -> bool:
        value = self.eval(expr, ctx)
        try:
            return truth(value, expr.span, "a condition")
        except EvalError as exc:
            self.fail(exc.message, exc.span, ctx, exc.hint)

    def check_requirement(self, stmt: s.RequireStmt, ctx) -> None:
        """`require EXPR[, "message"]`: nothing when EXPR is yes; else a spec error at EXPR in the
        author's words (or the condition's), noting the values it read and where they came from."""
        value = self.eval(stmt.cond, ctx)
        try:
            holds = truth(value, stmt.cond.span, "a requirement")
        except EvalError as exc:
            self.fail(exc.message, exc.span, ctx, exc.hint)
        if holds:
            return
        message = stmt.message if stmt.message else f"requirement failed: {self.source_text(stmt.cond.span)}"
        self.fail(message, stmt.cond.span, ctx, notes=self.requirement_notes(stmt.cond, ctx))

    def source_text(self, span) -> str:
        """The text of `span` on one line, its runs of spaces (and line continuations) made one space."""
        lines = self.program.sources.get(span.file, "").split("\n")[span.line - 1:span.end_line]
        if not lines:
            return "the condition"
        lines[-1] = lines[-1][:span.end_col - 1]
        lines[0] = lines[0][span.col - 1:]
        return " ".join(" ".join(lines).replace("\\", " ").split())

    def requirement_notes(self, cond, ctx) -> list[str]:
        """The values of the names `cond` reads (`width = -0.5, in.c = 24`) and which of them were
        given from outside (`--set`): the author sees why it failed without adding prints."""
        shown, given = {}, []
        for e in iter_exprs(cond):
            if isinstance(e, s.Name) and e.id in ctx.env:
                shown.setdefault(e.id, show(ctx.env[e.id]))
                if ctx.block is None and e.id in self.overridden and e.id not in given:
                    given.append(e.id)  # in the network's body a parameter cannot be rebound
            elif isinstance(e, s.Attr) and _read_axis(e, ctx.in_shape) is not None:
                shown.setdefault(f"in.{e.attr}", str(_read_axis(e, ctx.in_shape)))
        notes = [", ".join(f"{name} = {value}" for name, value in shown.items())] if shown else []
        notes += [f"`{name}` is given with `--set` (or `load(params=...)`)" for name in given]
        if ctx.block is not None and self.overridden:  # a block's values may come from them through calls
            notes.append("the network's parameters given with `--set` (or `load(params=...)`): " +
                         ", ".join(f"{name} = {show(value)}" for name, value in self.overridden.items()))
        return notes

    def residual_statements(self, stmts, ctx) -> tuple:
        """A residual's statements with each `if` that holds a `shortcut:` in a clause replaced by
        its chosen clause's statements: `if stride == 2: shortcut: ...` chooses the shortcut
        (its condition is read before the body's `let`s)."""
        if not any(isinstance(st, s.IfStmt) and _holds_shortcut(st) for st in stmts):
            return stmts
        out = []
        for st in stmts:
            if isinstance(st, s.IfStmt) and _holds_shortcut(st):
                clause = self.chosen_clause(st, ctx)
                out.extend(self.residual_statements(clause.body, ctx) if clause is not None else ())
            else:
                out.append(st)
        return tuple(out)

    def lower_if(self, stmt: s.IfStmt, cur: str, ctx) -> str:
        clause = self.chosen_clause(stmt, ctx)
        return self.lower_body(clause.body, cur, ctx) if clause is not None else cur

    def join_branches(self, stmts, kind: str, ctx):
        """(`branch:` statement, context) for each branch of a join, in order: `repeat N [as i]:`
        repeats the branches of its body, `if` chooses some, `let` binds a value for those after it.

        Any other statement directly in the join is an error (a join holds branches)."""
        for st in stmts:
            if isinstance(st, s.BranchStmt):
                yield st, ctx
            elif isinstance(st, s.LetStmt):
                ctx = self.bind_let(st, ctx)
            elif isinstance(st, s.RequireStmt):
                self.check_requirement(st, ctx)
            elif isinstance(st, s.IfStmt):
                clause = self.chosen_clause(st, ctx)
                if clause is not None:
                    yield from self.join_branches(clause.body, kind, ctx)
            elif isinstance(st, s.RepeatStmt):
                yield from self.repeated_branches(st, kind, ctx)
            else:
                self.fail(f"only `branch:` statements may appear directly in `{kind}`", st.span, ctx,
                          hint="wrap it: `branch: ...`")

    def repeated_branches(self, st: s.RepeatStmt, kind: str, ctx):
        try:
            count = t_nonneg(self.eval(st.count, ctx))
        except TypeError as exc:
            self.fail(f"repeat count: {exc}", st.count.span, ctx)
        if st.var and (st.var in RESERVED or st.var in KEYWORDS):
            self.fail(f"`{st.var}` is a reserved word", st.span, ctx)
        self.check_loop_name(st, ctx)
        if self.made() + count > self.max_layers:  # each branch makes a layer or counts as one
            self.too_big(self.made() + count, st.count.span, ctx)
        for i in range(count):
            inner = ctx
            if st.var:
                self.count_values(len(ctx.env) + 1, st.count.span, ctx)
                inner = ctx.but(env={**ctx.env, st.var: i})
            yield from self.join_branches(st.body, kind, inner)


def _read_axis(e: s.Attr, in_shape) -> int | None:
    """The value of `in.c`, `in.h` or `in.w` where the input has that axis; else None."""
    axis = _AXES.get(e.attr) if e.obj == "in" else None
    return in_shape[axis] if axis is not None and in_shape is not None and axis < len(in_shape) else None


def _holds_shortcut(st: s.IfStmt) -> bool:
    return any(isinstance(inner, s.ShortcutStmt) or isinstance(inner, s.IfStmt) and _holds_shortcut(inner)
               for clause in st.body for inner in clause.body)
