"""A lower bound of the layers a network makes, read off the AST before lowering.

Lets a network that would pass the layer limit (nested repeats, a block calling another
twice a hundred levels deep) fail at once, pointing at the statement that passes it, instead
of layer by layer. Repeat counts that are constants multiply; counts that depend on
parameters count as zero, so the bound stays a bound.
"""
from __future__ import annotations

from functools import partial

from ..lang import syntax as s
from ..lang.values import EvalError, evaluate
from ..lang.walk import fold_statements
from .limits import MAX_CALL_DEPTH, SIZE_CAP


class SizeEstimate:
    """Lower bounds of the layers of blocks and bodies of one program (memoised per block)."""

    def __init__(self, blocks: dict, max_layers: int):
        self.blocks = blocks
        self.max_layers = max_layers
        self.min_sizes: dict[str, int] = {}
        self._depth = 0  # blocks `min_size` is inside

    def min_size(self, block: str) -> int:
        """A lower bound of the layers one instance of `block` makes."""
        if block not in self.min_sizes:
            if self._depth >= MAX_CALL_DEPTH:
                return 0  # still a lower bound; lowering reports the nesting
            self.min_sizes[block] = 0  # a recursive call is reported elsewhere
            self._depth += 1
            try:
                self.min_sizes[block] = self.min_body(self.blocks[block].body, {})
            finally:
                self._depth -= 1
        return self.min_sizes[block]

    def min_body(self, stmts, env: dict) -> int:
        return min(sum(self.min_sizes_of(stmts, env)), SIZE_CAP)

    def min_sizes_of(self, stmts, env: dict) -> list[int]:
        """A lower bound of the layers of each statement of `stmts`."""
        return fold_statements(stmts, partial(self._min_stmt, env=env))

    def min_element(self, e: s.Element) -> int:
        """A block call counts as at least one: it costs time even if empty."""
        return max(1, self.min_size(e.name)) if e.name in self.blocks else 1

    def _min_stmt(self, st, inner: list[int], path: tuple, *, env: dict) -> int:
        """The bound of one statement, given those of the statements of its body (`inner`)."""
        if isinstance(st, s.Chain):
            size = 0
            for e in st.elements:  # `min_element`, inlined: every point of a search is checked
                size += max(1, self.min_size(e.name)) if e.name in self.blocks else 1
            return size
        body = min(sum(inner), SIZE_CAP)
        if isinstance(st, s.Composite):
            return body + 1
        if isinstance(st, s.RepeatStmt):  # a repetition counts as at least one, like a block call
            return min(self.repeat_count(st, env, path) * max(1, body), SIZE_CAP)
        if isinstance(st, (s.BranchStmt, s.ShortcutStmt, s.WithStmt, s.AuxStmt)):
            return body
        return 0

    def repeat_count(self, st: s.RepeatStmt, env: dict, path: tuple) -> int:
        hidden = [p.var for p in path if isinstance(p, s.RepeatStmt) and p.var in env]  # a loop variable hides a parameter
        return constant_count(st.count, {k: v for k, v in env.items() if k not in hidden} if hidden else env)

    def oversize(self, body, env: dict):
        """Where `body` (the network's, after its input) passes the limit, if it does:
        (the estimate, the span to point at, notes), or None.

        Points at the statement (or chain element) where the running total passes it."""
        sizes = self.min_sizes_of(body, env)
        total = 1  # the input
        for st, size in zip(body, sizes):
            if total + size <= self.max_layers:
                total += size
                continue
            estimate = min(min(sum(sizes), SIZE_CAP) + 1, SIZE_CAP)
            if isinstance(st, s.Chain):
                for e in st.elements:
                    total += self.min_element(e)
                    if total > self.max_layers:
                        notes = [f"block `{e.name}` makes at least {self.min_element(e):,}"] if e.name in self.blocks else []
                        return estimate, e.name_span, notes
            if isinstance(st, s.RepeatStmt):
                count = self.repeat_count(st, env, ())
                each = max(1, self.min_body(st.body, {k: v for k, v in env.items() if k != st.var}))
                return estimate, st.count.span, [f"each of its {count:,} repetitions makes at least {each:,}"]
            return estimate, st.span, []
        return None


def constant_count(expr, env: dict) -> int:
    """A repeat count known before lowering (a constant, or read from `env`), else 0."""
    try:
        count = evaluate(expr, env, None)
    except EvalError:
        return 0
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
