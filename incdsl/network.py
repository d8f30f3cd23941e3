"""`Network`: a checked spec with its IR, and `load()`, the front door of the API."""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import networkx as nx

from .diagnostics import IncdslError, error
from .ir import format_graph, format_shape, lint, trunk_nodes
from .lower import MAX_CALL_DEPTH, MAX_NODES, Lowerer, load_program


@dataclass
class Network:
    """A checked network: its IR graph plus what the spec said about it."""

    graph: nx.DiGraph
    sources: dict
    file: str
    warnings: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.graph.graph["name"]

    @property
    def input(self) -> str:
        return self.graph.graph["input"]

    @property
    def output(self) -> str:
        return self.graph.graph["output"]

    @property
    def input_shape(self) -> tuple:
        return self.graph.nodes[self.input]["shape"]

    @property
    def output_shape(self) -> tuple:
        return self.graph.nodes[self.output]["shape"]

    @property
    def aux_heads(self) -> list[dict]:
        return list(self.graph.graph["aux"])

    @property
    def params(self) -> dict:
        """The network's parameters (after overrides)."""
        return dict(self.graph.graph["params"])

    @property
    def layers(self) -> list[str]:
        """Layer nodes of the inference graph (no input, no aux heads)."""
        return [n for n in trunk_nodes(self.graph) if n != self.input]

    def format(self) -> str:
        return format_graph(self.graph)

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a network as its overall diagram (text repr when Graphviz is absent)."""
        from .render.graphviz import GraphvizNotFound, render_svg
        try:
            return render_svg(self)
        except GraphvizNotFound:
            return None

    def __repr__(self) -> str:
        return f"<Network {self.name}: {len(self.layers)} layers, {format_shape(self.input_shape)} -> {format_shape(self.output_shape)}>"


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a network is built.

    Lowering makes a dozen long-lived objects per layer and almost no cyclic garbage; the
    collector would scan the growing graph again and again for nothing, which made a
    100k-layer network twice as slow per layer as a 10k one. The previous state is restored.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_spec(spec: str | os.PathLike, file: str | None = None) -> tuple[str, str]:
    """(text, file name) of a spec given as a path or as its text (no spec fits on one line).

    Raises:
        IncdslError: when the file cannot be read.
    """
    if isinstance(spec, os.PathLike) or "\n" not in str(spec):
        path = str(spec)
        try:
            return _read(path), file or path
        except FileNotFoundError:
            raise error(f"no such spec file: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise error(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return str(spec), file or "<spec>"


def load(spec: str | os.PathLike, *, params: dict | None = None, input: tuple | None = None,
         file: str | None = None, max_nodes: int = MAX_NODES, debug: bool = False) -> Network:
    """Parse, lower and check a spec.

    Parameters:
        spec: a path to a `.inc` file, or the spec text itself (anything with a newline).
        params: overrides for the network's parameters, e.g. ``{"classes": 10}``.
        input: another input shape ``(c, h, w)``; every shape is inferred again.
        file: the name to report for text specs (and to resolve includes from).
        debug: also check the IR's invariants (`ir.lint`), as tests and `--debug` do.
    Returns:
        the checked `Network`.
    Raises:
        IncdslError: for every problem in the spec, with its location.

    Example:
        >>> net = load("specs/inception_v4.inc")
        >>> net.output_shape
        (1000,)
    """
    text, file = read_spec(spec, file)
    try:
        with _gc_paused():
            network = _load(text, file, params, input, max_nodes)
        if debug:
            lint(network.graph)
        return network
    except RecursionError:  # blocks within blocks within ... past Python's stack
        raise error("the spec nests too deeply to lower", None,
                    hint=f"blocks may nest at most {MAX_CALL_DEPTH} deep; flatten the nesting") from None


def _load(text: str, file: str, params, input, max_nodes: int) -> Network:
    program = load_program(text, file, _read)
    if program.network is None:
        raise IncdslError(error("the spec defines no network", None,
                                hint="add `network NAME:` with `input CxHxW` as its first line").diagnostics,
                          program.sources)
    lowerer = Lowerer(program, max_nodes=max_nodes)
    overrides = {k: (v, None) for k, v in (params or {}).items()}
    graph = lowerer.lower_network(program.network, overrides, input)
    return Network(graph, program.sources, file, lowerer.warnings)
