"""`Space`: a spec with choices, and what search needs from it.

    import random
    from incdsl.search import load_space

    space = load_space("specs/search/inception_space.inc")
    space.size                      # 22594362918480 points, exactly
    space.choices                   # Choice(id, ordinal, name, kind, options, span), ...
    rng = random.Random(0)
    p = space.sample(rng)           # {choice id: option index}
    q = space.mutate(p, rng)        # exactly one choice changed
    space.cost(q)                   # Cost(params, macs): no torch, no full graph
    text = space.to_spec(q)         # a concrete spec, no choices left
    net = space.network(q)          # the checked `Network`

A *point* is a dict from choice id (``file:line:col``) to the index of the chosen option.
Methods that take a point also accept a sequence of indices in `choices` order.
"""
from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import replace
from typing import Iterator, Mapping, Sequence

from ..diagnostics import Diagnostic, IncdslError
from ..io import Includes
from ..ir.lower import MAX_LAYERS, Lowerer, Program, load_program
from ..ir.network import SpecText, check_overrides, no_network, read_spec
from .choices import Choice, find_choices
from .resolve import Resolver
from .fastcost import Cost, CostCache, cost_lowerer, uncacheable_blocks

RESOLVED_LIMIT = 1024  # resolved definitions kept for reuse (a network of the Inception space: ~40 KB)


def load_space(spec: str | os.PathLike | SpecText, *, params: dict | None = None, input: tuple | None = None,
               file: str | None = None, include_path=None, max_layers: int = MAX_LAYERS) -> "Space":
    """Parse a spec that may hold choices and find them.

    Parameters:
        spec: a path to a `.inc` file, or spec text (anything with a newline).
        params: overrides for the network's parameters at every point, e.g. ``{"classes": 10}``.
        input: another input shape ``(c, h, w)`` for every point.
        file: the name to report for text specs (and to resolve includes from).
        include_path: more directories `include` may read from, as for `incdsl.load`.
        max_layers: refuse points of more layers (as `load`).
    Raises:
        IncdslError: for syntax errors, a spec without a network, or a malformed choice.
    """
    params, input = check_overrides(params, input)
    text, file = read_spec(spec, file)
    program = load_program(text, file, Includes.for_spec(file, include_path))
    if program.network is None:
        raise no_network(file, program.sources)
    return Space(program, file, params, input, max_layers)


class Space:
    """The points of a spec with choices; see the module docstring."""

    def __init__(self, program: Program, file: str, params: dict | None = None, input: tuple | None = None,
                 max_layers: int = MAX_LAYERS):
        self.program = program
        self.max_layers = max_layers
        self.lowered = 0  # layers made by `cost` and `network` so far: what checking a space costs
        self.file = file
        self.params = dict(params or {})
        self.input_shape = tuple(input) if input is not None else None
        choices, sites, owner = find_choices(program, file)
        self.choices: tuple[Choice, ...] = tuple(choices)
        self._sites = sites
        self._by_id = {c.id: c for c in choices}
        self._by_name = {c.name: c for c in choices}
        groups: dict[tuple, list] = {}
        for k, site in enumerate(sites):
            groups.setdefault(owner[id(site.node)], []).append((k, site))
        self._resolvers = {}
        for (kind, name), members in groups.items():
            d = program.network if kind == "network" else program.blocks[name]
            self._resolvers[(kind, name)] = (Resolver(d, members), tuple(k for k, _ in members))
        self._resolved: dict = {}
        self._cache = CostCache(uncacheable_blocks(program))
        self._writer = None

    # --- the space
    @property
    def name(self) -> str:
        return self.program.network.name

    @property
    def size(self) -> int:
        """Number of points: the product of the option counts (exact; may be astronomically large)."""
        n = 1
        for c in self.choices:
            n *= len(c.options)
        return n

    def __repr__(self) -> str:
        return f"<Space {self.name}: {len(self.choices)} choices, {approximate(self.size)} points>"

    def choice(self, key: str) -> Choice:
        """A choice by id (``file:line:col``) or name."""
        found = self._by_id.get(key) or self._by_name.get(key)
        if found is None:
            from ..diagnostics import did_you_mean
            hint = did_you_mean(key, list(self._by_name))
            raise KeyError(f"no choice `{key}`" + (f"; {hint}" if hint else ""))
        return found

    # --- points
    def indices(self, point) -> tuple[int, ...]:
        """A point as a tuple of option indices in `choices` order (validated)."""
        if isinstance(point, Mapping):
            missing = [c.id for c in self.choices if c.id not in point]
            extra = [k for k in point if k not in self._by_id]
            if missing or extra:
                raise ValueError("not a point of this space: " + "; ".join(
                    part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                      f"unknown {', '.join(map(str, extra[:5]))}" if extra else "") if part))
            out = tuple(point[c.id] for c in self.choices)
        else:
            out = tuple(point)
            if len(out) != len(self.choices):
                raise ValueError(f"a point has {len(self.choices)} indices, given {len(out)}")
        for c, i in zip(self.choices, out):
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(c.options):
                raise ValueError(f"choice {c.name} ({c.id}) has {len(c.options)} options; index {i!r} is out of range")
        return out

    def as_point(self, indices: Sequence[int]) -> dict[str, int]:
        return {c.id: i for c, i in zip(self.choices, indices)}

    def point(self, values: Mapping[str, object] | None = None, default: str = "first") -> dict[str, int]:
        """The point with the given option values (keys: choice names or ids; values: option
        text or number); the others at their first option (``default="first"``) or required
        (``default="none"``).

        Example: ``space.point({"width": 1.0, "mixed_a.b0": 96})``
        """
        chosen = {}
        for key, value in (values or {}).items():
            c = self.choice(key)
            text = str(value)
            matches = [i for i, o in enumerate(c.options) if o == text or _same_number(o, value)]
            if not matches:
                raise ValueError(f"choice {c.name} ({c.id}) has no option {value!r}; options: {', '.join(c.options)}")
            chosen[c.id] = matches[0]
        if default == "none":
            missing = [c.name for c in self.choices if c.id not in chosen]
            if missing:
                raise ValueError(f"no value given for {', '.join(missing)}")
        return {c.id: chosen.get(c.id, 0) for c in self.choices}

    def first(self) -> dict[str, int]:
        """Every choice at its first option."""
        return {c.id: 0 for c in self.choices}

    def values(self, point) -> dict[str, str]:
        """The chosen option text per choice name."""
        return {c.name: c.options[i] for c, i in zip(self.choices, self.indices(point))}

    def sample(self, rng: random.Random | int | None = None) -> dict[str, int]:
        """A point drawn uniformly (each choice independently and uniformly)."""
        rng = _rng(rng)
        return {c.id: rng.randrange(len(c.options)) for c in self.choices}

    def mutate(self, point, rng: random.Random | int | None = None) -> dict[str, int]:
        """The point with exactly one choice (among those with two or more options) changed."""
        rng = _rng(rng)
        indices = list(self.indices(point))
        open_ = [k for k, c in enumerate(self.choices) if len(c.options) > 1]
        if not open_:
            raise ValueError("no choice of this space has two options: nothing to mutate")
        k = rng.choice(open_)
        other = rng.randrange(len(self.choices[k].options) - 1)
        indices[k] = other if other < indices[k] else other + 1
        return self.as_point(indices)

    def grid(self) -> Iterator[dict[str, int]]:
        """Every point, the last choice varying fastest."""
        for indices in itertools.product(*(range(len(c.options)) for c in self.choices)):
            yield self.as_point(indices)

    # --- one point
    def resolve(self, point) -> Program:
        """The program of a point: every choice replaced by its chosen option."""
        indices = self.indices(point)
        net = self.program.network
        blocks = dict(self.program.blocks)
        for (kind, name), (resolver, own) in self._resolvers.items():
            key = (kind, name, tuple(indices[k] for k in own))
            d = self._resolved.get(key)
            if d is None:
                if len(self._resolved) >= RESOLVED_LIMIT:
                    self._resolved.clear()
                d = self._resolved[key] = resolver.resolve(indices)
            if kind == "network":
                net = d
            else:
                blocks[name] = d
        return Program(net, blocks, self.program.sources)

    def network(self, point):
        """The checked `Network` of a point. Raises IncdslError (noting the point) when invalid."""
        from ..ir.network import Network
        program = self.resolve(point)
        lowerer = Lowerer(program, self.max_layers)
        try:
            graph = self._at(point, lambda: lowerer.lower_network(program.network, self._overrides(), self.input_shape))
        finally:
            self.lowered += lowerer.made()
        return Network(graph, program.sources, self.file, lowerer.warnings)

    def cost(self, point) -> Cost:
        """Trunk parameters and multiply-adds of a point, as `incdsl cost` counts them.

        Fast: no torch, and block instances seen before (in this point or an earlier one)
        are not lowered again. Raises IncdslError when the point is invalid.
        """
        program = self.resolve(point)
        self._cache.trim()
        lowerer = cost_lowerer(program, self._cache, self.max_layers)
        try:
            self._at(point, lambda: lowerer.lower_network(program.network, self._overrides(), self.input_shape))
        finally:
            self.lowered += lowerer.made()
        return Cost(lowerer.sink.params, lowerer.sink.macs)

    def check(self, point) -> Cost:
        """Like `cost`, but lowers the whole graph, as `incdsl check` does."""
        from ..passes.cost import count_costs
        total = count_costs(self.network(point)).total
        return Cost(total.params, total.macs)

    def to_spec(self, point, header: bool = True) -> str:
        """The concrete spec of a point: the space's text with each choice replaced by its
        option's text (comments and layout kept) and included files inlined, so it loads on
        its own from any directory."""
        if self._writer is None:
            from .spectext import SpecWriter
            self._writer = SpecWriter(self)
        return self._writer.render(self.indices(point), header)

    def _overrides(self) -> dict:
        return {k: (v, None) for k, v in self.params.items()}

    def _at(self, point, fn):
        try:
            return fn()
        except IncdslError as exc:
            note = "at the point " + ", ".join(f"{name} = {v}" for name, v in self.values(point).items())
            exc.diagnostics = [replace(d, notes=d.notes + (note,)) if isinstance(d, Diagnostic) else d
                               for d in exc.diagnostics[:1]] + exc.diagnostics[1:]
            raise


def approximate(n: int) -> str:
    """`2.26e+13` for any size of integer (a float holds none past 1e308)."""
    if n < 10**15:
        return f"{n:.3g}"
    exponent = math.floor(math.log10(n))  # log10 takes integers of any size
    mantissa = 10 ** (math.log10(n) - exponent)
    if mantissa >= 9.995:  # rounds up to 10.0
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.2f}e+{exponent}"


def _same_number(option: str, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(option) == float(value)
    except ValueError:
        return False


def _rng(rng) -> random.Random:
    if rng is None:
        return random.Random()
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    return rng
