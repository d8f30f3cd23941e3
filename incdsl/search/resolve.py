"""Substituting a point's options into the AST of a definition."""
from __future__ import annotations

from dataclasses import fields

from ..lang import syntax as s
from ..diagnostics import Span
from .choices import Site


class Resolver:
    """Rebuilds a definition with each of its choice sites replaced by the chosen option.

    Subtrees without choices are shared, not copied, so resolving is cheap and unchanged parts
    keep their identity (the cost cache relies on that).
    """

    def __init__(self, definition: s.Definition, sites: list[tuple[int, Site]]):
        self.definition = definition
        self.sites = {id(site.node): (k, site) for k, site in sites}
        self.paths: dict[int, tuple[str, ...] | None] = {}  # id(node on a path) -> fields to rebuild
        self._mark(definition)

    def _mark(self, node) -> bool:
        if id(node) in self.sites:
            self.paths[id(node)] = None
            return True
        if isinstance(node, tuple):
            hit = False
            for child in node:
                hit |= self._mark(child)
            if hit:
                self.paths[id(node)] = ()
            return hit
        if not hasattr(node, "__dataclass_fields__") or isinstance(node, Span):
            return False
        marked = tuple(f.name for f in fields(node) if self._mark(getattr(node, f.name)))
        if marked:
            self.paths[id(node)] = marked
        return bool(marked)

    def resolve(self, indices) -> s.Definition:
        """The definition under a point (`indices`: option index per choice ordinal)."""
        return self._rebuild(self.definition, indices)

    def _rebuild(self, node, indices):
        marked = self.paths.get(id(node), False)
        if marked is False:
            return node
        if marked is None:
            k, site = self.sites[id(node)]
            return site.replacements[indices[k]]
        if isinstance(node, tuple):
            return tuple(self._rebuild(x, indices) for x in node)
        # A frozen dataclass copied field by field (dataclasses.replace re-runs __init__, slower).
        new = object.__new__(type(node))
        state = dict(node.__dict__)
        for name in marked:
            state[name] = self._rebuild(state[name], indices)
        new.__dict__.update(state)
        return new
