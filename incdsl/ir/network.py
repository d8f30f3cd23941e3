"""`Network`: a checked spec with its IR, and `load()`, the front door of the API."""
from __future__ import annotations

import gc
import numbers
import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import networkx as nx

from ..diagnostics import IncdslError, Span, error
from ..io import STDIN, Includes, ReadError, os_reason, read_text
from .graph import format_graph, format_shape, lint, trunk_nodes
from ..lang.parse import end_position
from ..lang.values import parse_value
from .lower import MAX_CALL_DEPTH, MAX_LAYERS, Lowerer, load_program


@dataclass(eq=False)
class Network:
    """A checked network: its IR graph plus what the spec said about it.

    Two networks are equal when they compute the same thing: the same layers, names, attributes,
    shapes, edges, aux heads and parameters. Where they were written (files, spans, warnings) is
    provenance and does not count, so one spec loaded twice, or two spellings of one network,
    compare equal. Networks are mutable (their graph is), so they are not hashable.
    """

    graph: nx.DiGraph
    sources: dict
    file: str
    warnings: list = field(default_factory=list)
    # the parameters given to `load` (`params=`, `--set`), as given: provenance, so not compared;
    # a compiled model repeats them where it says how to build the network at another size
    settings: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The network's name, as written after `network`."""
        return self.graph.graph["name"]

    @property
    def input(self) -> str:
        """The input node's name (`input`)."""
        return self.graph.graph["input"]

    @property
    def output(self) -> str:
        """The output node's name: the last layer of the inference graph."""
        return self.graph.graph["output"]

    @property
    def input_shape(self) -> tuple:
        """(C, H, W) of one input image."""
        return self.graph.nodes[self.input]["shape"]

    @property
    def output_shape(self) -> tuple:
        """The output's shape: ``(classes,)`` for a classifier, (C, H, W) otherwise."""
        return self.graph.nodes[self.output]["shape"]

    @property
    def aux_heads(self) -> list[dict]:
        """One dict per auxiliary head (`name`, loss `weight`, the `tap` it reads, its `output` node), in spec order."""
        return list(self.graph.graph["aux"])

    @property
    def params(self) -> dict:
        """The network's parameters (after overrides)."""
        return dict(self.graph.graph["params"])

    @property
    def changed_params(self) -> tuple[str, ...]:
        """The parameters given (`--set`, `load(params=)`) a value other than the spec's default."""
        return tuple(self.graph.graph.get("changed", ()))

    @property
    def layers(self) -> list[str]:
        """Layer nodes of the inference graph (no input, no aux heads)."""
        return [n for n in trunk_nodes(self.graph) if n != self.input]

    def format(self) -> str:
        """The IR as text: one line per node with its op, attributes and output shape."""
        return format_graph(self.graph)

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a network as its overall diagram (text repr when Graphviz is absent,
        or the diagram too large to lay out)."""
        from ..render.graphviz import DotTimeout, DrawTooLarge, GraphvizNotFound, render_svg
        try:
            return render_svg(self)
        except (GraphvizNotFound, DrawTooLarge, DotTimeout):
            return None

    def __eq__(self, other) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return self is other or _meaning(self.graph) == _meaning(other.graph)

    __hash__ = None

    def __repr__(self) -> str:
        return f"<Network {self.name}: {len(self.layers)} layers, {format_shape(self.input_shape)} -> {format_shape(self.output_shape)}>"


def _without_span(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "span"}


def _meaning(graph: nx.DiGraph) -> tuple:
    """What a graph computes, without where it was written: for `Network.__eq__`."""
    nodes = {node: _without_span(data) for node, data in graph.nodes(data=True)}
    edges = {(a, b): data for a, b, data in graph.edges(data=True)}
    info = dict(graph.graph)
    info.pop("changed", None)  # how the values were given, not what the graph computes
    info["instances"] = {scope: _without_span(inst) for scope, inst in info.get("instances", {}).items()}
    return nodes, edges, info


def network_graph(network, caller: str) -> nx.DiGraph:
    """The IR graph of `network`, or a TypeError naming `caller` when it is no `Network`."""
    graph = getattr(network, "graph", None)
    if not isinstance(graph, nx.DiGraph):
        hint = f"; load it first: {caller}(incdsl.load(path))" if isinstance(network, (str, os.PathLike)) else ""
        raise TypeError(f"{caller}() takes a Network from incdsl.load, got {type(network).__name__} {network!r:.60}{hint}")
    return graph


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


STDIN_NAMES = (STDIN, "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")


@dataclass(frozen=True)
class SpecText:
    """A spec already read: its text and the name its diagnostics and includes go by."""
    text: str
    file: str


def read_spec_file(path: str) -> SpecText:
    """The spec at `path` (`-`: standard input, read once), within `incdsl.io.MAX_FILE_BYTES`.

    Raises:
        IncdslError: when it cannot be read: missing, not a regular file, too large, not UTF-8
        (at the line and column of the first bad byte).
    """
    stdin = path in STDIN_NAMES  # /dev/stdin is read as `-`: a pipe there is no regular file
    try:
        return SpecText(read_text(STDIN if stdin else path, stdin_ok=True), "<stdin>" if stdin else path)
    except FileNotFoundError:
        raise error(f"no such spec file: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {os_reason(exc)}") from None
    except ReadError as exc:
        if exc.line is None:
            hint = "give `-` to read a spec from standard input" if "pipe" in exc.reason or "device" in exc.reason else None
            raise error(f"cannot read {'standard input' if stdin else path}: {exc.reason}", hint=hint) from None
        name = "<stdin>" if stdin else path
        where = Span(name, exc.line, exc.col, exc.line, exc.col + 1)
        if exc.too_large:
            raise error(f"the spec is too large: {exc.reason.removeprefix('it is ')}; the limit is passed here",
                        where, hint="a spec is a few kilobytes; keep generated specs under the limit") from None
        raise error(exc.reason, where, hint="save the spec as UTF-8") from None


def read_spec(spec: str | os.PathLike | SpecText, file: str | None = None) -> tuple[str, str]:
    """(text, file name) of a spec given as a path, as its text (no spec fits on one line) or as `SpecText`.

    Raises:
        IncdslError: when the file cannot be read.
    """
    if isinstance(spec, SpecText):
        return spec.text, file or spec.file
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"a spec is a path (str or os.PathLike) or the spec text, got {type(spec).__name__} {spec!r:.60}"
                        + ("; decode bytes first" if isinstance(spec, bytes) else ""))
    if isinstance(spec, os.PathLike) or "\n" not in spec:
        path = os.fspath(spec)
        if not isinstance(path, str):
            raise TypeError(f"a spec path must be text, got {type(path).__name__} {path!r:.60}")
        if not isinstance(spec, os.PathLike) and SPEC_START.match(spec) and not os.path.exists(spec):
            raise error(f"no such spec file: {spec[:60]}",  # one line of spec text, taken for a path
                        hint="spec text is told from a path by its newlines: end each statement with one")
        read = read_spec_file(path)
        return read.text, file or read.file
    return spec, file or "<spec>"


SPEC_START = re.compile(r"\s*(network|block|include)\b[^/\\]*[: ]")


def check_overrides(params, input) -> tuple[dict | None, tuple | None]:
    """`params` and `input` as `load` and `load_space` take them, checked for type.

    Raises:
        TypeError: `params` is no mapping of names, or `input` no (C, H, W) of positive integers.
    """
    if params is not None:
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of parameter name -> value, e.g. {{'classes': 10}}, "
                            f"got {type(params).__name__}")
        bad = next((k for k in params if not isinstance(k, str)), None)
        if bad is not None:
            raise TypeError(f"params names must be str, got {type(bad).__name__} {bad!r}")
        params = {k: parse_value(v) if isinstance(v, str) else v for k, v in params.items()}  # as --set reads it
    if input is not None:
        if isinstance(input, (str, bytes)) or not isinstance(input, (tuple, list)):
            raise TypeError(f"input must be a (C, H, W) tuple such as (3, 224, 224), got {type(input).__name__} {input!r:.40}")
        if len(input) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in input):
            raise ValueError(f"input must be three positive integers (C, H, W) such as (3, 224, 224), got {tuple(input)!r:.60}")
        input = tuple(int(v) for v in input)
    return params, input


def no_network(file: str, sources: dict) -> IncdslError:
    """The error for a spec without `network`, placed at the end of its file (after its last
    character that is not blank)."""
    text = sources.get(file, "")
    line, col = end_position(text.rstrip())
    hint = "add `network NAME:` with `input CxHxW` as its first line"
    exc = error("the spec defines no network" + (" (the file is empty)" if not text.strip() else ""),
                Span(file, line, col, line, col + 1), hint=hint)
    exc.sources.update(sources)
    return exc


def load(spec: str | os.PathLike | SpecText, *, params: dict | None = None, input: tuple | None = None,
         file: str | None = None, max_layers: int = MAX_LAYERS, max_nodes: int | None = None,
         include_path=None, debug: bool = False) -> Network:
    """Parse, lower and check a spec.

    Parameters:
        spec: a path to a `.inc` file, or the spec text itself (anything with a newline).
        params: overrides for the network's parameters, e.g. ``{"classes": 10}``; a str value is
            read as ``--set NAME=VALUE`` reads it (``{"act": "gelu"}`` names the activation).
        input: another input shape ``(c, h, w)``; every shape is inferred again.
        file: the name to report for text specs (and to resolve includes from).
        include_path: more directories `include` may read from, a list or one path (after the
            spec's own directory tree; `INCDSL_PATH` adds more), see `incdsl.io.Includes`.
        max_layers: refuse networks of more layers (checked before lowering where the AST
            tells, so a huge spec fails at once); bounds time and memory. `max_nodes` is
            its former name.
        debug: also check the IR's invariants (`ir.lint`), as tests and `--debug` do.
    Returns:
        the checked `Network`.
    Raises:
        IncdslError: for every problem in the spec, with its location, and a file that cannot
            be read.
        TypeError, ValueError: arguments of the wrong type (`spec` no str or path, `params` no
            dict, `input` no (C, H, W) of positive integers).

    Example:
        >>> net = load("specs/inception_v4.inc")
        >>> net.output_shape
        (1000,)
    """
    params, input = check_overrides(params, input)
    for name, limit in (("max_layers", max_layers), ("max_nodes", max_nodes)):
        if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0):
            raise ValueError(f"{name} must be a positive integer, got {limit!r}")
    text, file = read_spec(spec, file)
    try:
        with _gc_paused():
            network = _load(text, file, params, input, max_nodes if max_nodes is not None else max_layers,
                            include_path)
        if debug:
            lint(network.graph)
        return network
    except RecursionError:  # blocks within blocks within ... past Python's stack
        raise error("the spec nests too deeply to lower", None,
                    hint=f"blocks may nest at most {MAX_CALL_DEPTH} deep; flatten the nesting") from None


def _load(text: str, file: str, params, input, max_layers: int, include_path) -> Network:
    program = load_program(text, file, Includes.for_spec(file, include_path))
    if program.network is None:
        raise no_network(file, program.sources)
    lowerer = Lowerer(program, max_layers=max_layers)
    overrides = {k: (v, None) for k, v in (params or {}).items()}
    graph = lowerer.lower_network(program.network, overrides, input)
    return Network(graph, program.sources, file, lowerer.warnings, dict(params or {}))
