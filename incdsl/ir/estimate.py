"""A lower bound of the layers a network makes, read off the AST before lowering.

Lets a network that would pass the layer limit (nested repeats, a block calling another
twice a hundred levels deep, FractalNet's rule expanded sixty times) fail at once, pointing
at the statement that passes it, instead of layer by layer. Repeat counts that are constants
(or read from known values) multiply; counts that depend on unknown values count as zero,
so the bound stays a bound. An `if` whose condition is known counts its chosen clause, else
the smallest clause (nothing, without `else`); a `let` whose value is known is known after it.

Blocks that call themselves (directly or through others) are estimated for the arguments of
each call where these are known, memoised per (block, arguments): FractalNet's `fractal(60)`
costs sixty look-ups, not 2**60. The work is bounded (`STEP_BUDGET` statements, see
`min_instance`); past `MAX_CALL_DEPTH` calls or `MAX_NESTING` bodies deep, a call counts as
nothing.
"""
from __future__ import annotations

import networkx as nx

from ..lang import syntax as s
from ..lang.values import EvalError, evaluate
from ..lang.walk import iter_elements, iter_exprs, iter_statements
from .limits import MAX_CALL_DEPTH, MAX_NESTING, SIZE_CAP

# Bodies within bodies the estimate goes into (it takes about 5 frames of Python stack a body,
# lowering 3): past it a body counts as nothing, still a lower bound.
ESTIMATE_NESTING = MAX_NESTING * 3 // 4

STEP_BUDGET = 20_000  # statements visited with known arguments, per program (FractalNet takes about a hundred)


class SizeEstimate:
    """Lower bounds of the layers of blocks and bodies of one program (memoised per block)."""

    def __init__(self, blocks: dict, max_layers: int):
        self.blocks = blocks
        self.max_layers = max_layers
        # Found when first needed: a call to a block whose estimate is in progress is a cycle
        # (most specs have none, and a search checks thousands of points).
        self.recursive = self.endless = frozenset()
        self._active: set[str] = set()
        self.min_sizes: dict[str, int] = {}
        self.with_args: dict[tuple, int] = {}  # (recursive block, its known arguments) -> bound
        self.steps = 0
        self._steering: dict[str, frozenset] = {}
        self._depth = 0  # blocks the estimate is inside
        self._nesting = 0  # bodies the estimate is inside (each takes Python stack)

    def min_size(self, block: str) -> int:
        """A lower bound of the layers one instance of `block` makes, whatever its arguments."""
        if block not in self.min_sizes:
            if self._depth >= MAX_CALL_DEPTH:
                return 0  # still a lower bound; lowering reports the nesting
            self.min_sizes[block] = 0  # a call to a block being estimated counts as nothing
            self._depth += 1
            self._active.add(block)
            try:
                self.min_sizes[block] = self.min_body(self.blocks[block].body, {})
            finally:
                self._depth -= 1
                self._active.discard(block)
        elif block in self._active and not self.recursive:
            self.recursive, self.endless = recursive_blocks(self.blocks)
        return self.min_sizes[block]

    def min_instance(self, block: str, env: dict, nesting: int = 0) -> int:
        """A lower bound of the layers of `block` with its parameters bound to (some of) `env`:
        for recursive blocks; any other block gives `min_size`.

        Past `STEP_BUDGET` statements, only the values that steer the block (read by its `if`
        conditions and repeat counts) are kept: fewer distinct calls, the bound still a bound
        (an unknown value only makes it smaller). Past twice that, arguments are ignored.
        `nesting`: bodies already on the stack (lowering asks from deep inside a network)."""
        if nesting > self._nesting:
            outer, self._nesting = self._nesting, nesting
            try:
                return self.min_instance(block, env)
            finally:
                self._nesting = outer
        if block not in self.recursive or self.steps > 2 * STEP_BUDGET or self._depth >= MAX_CALL_DEPTH:
            return self.min_size(block)
        if self.steps > STEP_BUDGET:
            steering = self.steering(block)
            env = {k: v for k, v in env.items() if k in steering}
        key = (block, _frozen(env))
        if key not in self.with_args:
            self.with_args[key] = 0  # the same call inside itself: unbounded recursion, reported by lowering
            self._depth += 1
            try:
                self.with_args[key] = self.min_body(self.blocks[block].body, env)
            finally:
                self._depth -= 1
        return self.with_args[key]

    def steering(self, block: str) -> frozenset:
        """The names a block's `if` conditions and repeat counts read."""
        if block not in self._steering:
            exprs = [st.cond for st in iter_statements(self.blocks[block].body) if isinstance(st, s.IfClause) and st.cond]
            exprs += [st.count for st in iter_statements(self.blocks[block].body) if isinstance(st, s.RepeatStmt)]
            self._steering[block] = frozenset(e.id for x in exprs for e in iter_exprs(x) if isinstance(e, s.Name))
        return self._steering[block]

    def min_body(self, stmts, env: dict) -> int:
        if self._nesting > ESTIMATE_NESTING:
            return 0  # still a lower bound; lowering reports the nesting
        self._nesting += 1
        try:
            return min(sum(self.min_sizes_of(stmts, env)), SIZE_CAP)
        finally:
            self._nesting -= 1

    def min_sizes_of(self, stmts, env: dict) -> list[int]:
        """A lower bound of the layers of each statement of `stmts` (a `let` binds for those after it)."""
        sizes = []
        for st in stmts:
            if isinstance(st, s.LetStmt):
                env = _let(env, st)
                sizes.append(0)
            else:
                sizes.append(self.min_stmt(st, env))
        return sizes

    def min_element(self, e: s.Element, env: dict) -> int:
        """A block call counts as at least one: it costs time even if empty. `take` makes nothing."""
        if e.name not in self.blocks:
            return int(e.name != "take")
        if e.name in self.recursive:
            return max(1, self.min_instance(e.name, self.call_env(e, env)))
        return max(1, self.min_size(e.name))

    def min_stmt(self, st, env: dict) -> int:
        """The bound of one statement."""
        self.steps += 1
        if isinstance(st, s.Chain):
            size = 0
            for e in st.elements:  # `min_element`, inlined for the common case: every point of a search is checked
                size += self.min_element(e, env) if e.name in self.recursive else \
                    max(1, self.min_size(e.name)) if e.name in self.blocks else e.name != "take"
            return min(size, SIZE_CAP)
        if isinstance(st, s.IfStmt):
            return self.min_if(st, env)
        if isinstance(st, s.RepeatStmt):  # a repetition counts as at least one, like a block call
            inner = {k: v for k, v in env.items() if k != st.var} if st.var in env else env  # the loop variable is unknown
            return min(constant_count(st.count, env) * max(1, self.min_body(st.body, inner)), SIZE_CAP)
        body = self.min_body(st.body, env) if getattr(st, "body", None) else 0
        if isinstance(st, s.Composite):
            return body + 1
        if isinstance(st, (s.BranchStmt, s.ShortcutStmt, s.WithStmt, s.AuxStmt, s.IfClause)):
            return body
        return 0

    def min_if(self, st: s.IfStmt, env: dict) -> int:
        """The chosen clause where the conditions are known; else the smallest clause that may be chosen."""
        least = None
        for clause in st.body:
            holds = True if clause.cond is None else _known_condition(clause.cond, env)
            if holds is False:
                continue
            size = self.min_body(clause.body, env)
            least = size if least is None else min(least, size)
            if holds is True:
                return least
        return 0  # no clause holds for certain: perhaps none is taken

    def call_env(self, e: s.Element, env: dict) -> dict:
        """The parameters of block call `e` whose values are known from `env` (unknown ones left out)."""
        d = self.blocks[e.name]
        names = [p.name for p in d.params]
        bound: dict = {}
        positional = [a for a in e.args if a.kind == "pos"]
        for name, arg in zip(names, positional):
            value = _known(arg.value, env)
            if value is not _UNKNOWN:
                bound[name] = value
        given = set(names[:len(positional)])
        for arg in e.args:
            if arg.kind == "kw" and arg.name in names:
                given.add(arg.name)
                value = _known(arg.value, env)
                if value is not _UNKNOWN:
                    bound[arg.name] = value
        for p in d.params:
            if p.name not in given and p.default is not None:
                value = _known(p.default, bound)
                if value is not _UNKNOWN:
                    bound[p.name] = value
        return bound

    def network_sizes(self, body, env: dict) -> list[int]:
        """`min_sizes_of` the network's body: recursion found on the way (a block met inside
        its own estimate) is counted again, its calls with their arguments."""
        known = self.recursive
        sizes = self.min_sizes_of(body, env)
        if self.recursive is not known:
            sizes = self.min_sizes_of(body, env)
        return sizes

    def oversize(self, body, env: dict):
        """Where `body` (the network's, after its input) passes the limit, if it does:
        (the estimate, the span to point at, notes), or None.

        Points at the statement (or chain element) where the running total passes it."""
        sizes = self.network_sizes(body, env)
        total = 1  # the input
        for st, size in zip(body, sizes):
            if total + size <= self.max_layers:
                total += size
                continue
            estimate = min(min(sum(sizes), SIZE_CAP) + 1, SIZE_CAP)
            if isinstance(st, s.Chain):
                for e in st.elements:
                    least = self.min_element(e, env)
                    total += least
                    if total > self.max_layers:
                        notes = [f"block `{e.name}` makes at least {least:,}"] if e.name in self.blocks else []
                        return estimate, e.name_span, notes
            if isinstance(st, s.RepeatStmt):
                count = constant_count(st.count, env)
                each = max(1, self.min_body(st.body, {k: v for k, v in env.items() if k != st.var}))
                return estimate, st.count.span, [f"each of its {count:,} repetitions makes at least {each:,}"]
            return estimate, st.span, []
        return None


_UNKNOWN = object()


def _known(expr, env: dict):
    """The value of `expr` from `env` alone, or `_UNKNOWN` (a name not known, `in.c`, an error)."""
    try:
        return evaluate(expr, env, None)
    except EvalError:
        return _UNKNOWN


def _known_condition(expr, env: dict) -> bool | None:
    value = _known(expr, env)
    return value if isinstance(value, bool) else None


def _let(env: dict, st: s.LetStmt) -> dict:
    value = _known(st.value, env)
    if value is _UNKNOWN:
        return {k: v for k, v in env.items() if k != st.name} if st.name in env else env
    return {**env, st.name: value}


def _frozen(env: dict) -> tuple:
    """A hashable key of known values that keeps types apart (True is not 1, 1 is not 1.0)."""
    def key(v):
        return (type(v).__name__, tuple(key(x) for x in v)) if isinstance(v, tuple) else (type(v).__name__, v)
    return tuple(sorted((k, key(v)) for k, v in env.items()))


def constant_count(expr, env: dict) -> int:
    """A repeat count known before lowering (a constant, or read from `env`), else 0."""
    try:
        count = evaluate(expr, env, None)
    except EvalError:
        return 0
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def recursive_blocks(blocks: dict) -> tuple[frozenset, frozenset]:
    """(blocks on a cycle of calls, those of them whose cycle holds no `if`): a block calling
    itself, directly or through others; without an `if` on the way it can never stop."""
    calls = nx.DiGraph()
    for name, d in blocks.items():
        calls.add_node(name)
        calls.add_edges_from((name, e.name) for e in iter_elements(d.body) if e.name in blocks)
    recursive, endless = set(), set()
    for part in nx.strongly_connected_components(calls):  # iterative: no stack limit
        if len(part) == 1 and not calls.has_edge(*part, *part):
            continue
        recursive |= part
        if not any(isinstance(st, s.IfStmt) for name in part for st in iter_statements(blocks[name].body)):
            endless |= part
    return frozenset(recursive), frozenset(endless)
