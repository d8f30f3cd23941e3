"""AST -> IR: includes, block instances, repeat, scoped defaults, shapes as nodes are made.

Shapes are inferred while lowering (each node through the rule table of `passes/shapes.py`)
because the language can read them: `in.c` is the depth of the current block's input.
`passes.shapes.infer_shapes` recomputes them from the finished graph alone.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import partial

import networkx as nx

from ..lang import syntax as s
from ..diagnostics import Diagnostic, IncdslError, Label, Span, did_you_mean, error
from .graph import format_shape
from ..io import IncludeError, Includes
from ..lang.parse import normalize, parse
from ..ops.base import Signature, p_num
from ..ops.joins import RESIDUAL
from ..ops.table import ALIASES, GROUPS, LAYER_OPS, OPS, SYMBOLS
from ..passes.shapes import ShapeError, infer_node
from ..lang.walk import fold_statements
from ..lang.values import WORDS, EvalError, checked, evaluate, show, t_float, t_nonneg, t_shape

# Lowering and checking take about 35 us and 2 KB per layer: 100,000 layers check in a few
# seconds and well under 1 GB. Real networks have hundreds of layers (the largest shipped
# spec: 336; Inception-v4: 196). A repetition or block call that makes no layer counts as one,
# so `repeat 0` inside `repeat 99999` cannot do unbounded work either.
MAX_LAYERS = 100_000
MAX_NODES = MAX_LAYERS  # the former name
NAME_CHARS_PER_LAYER = 200  # scoped names such as `mixed_5b.branch_1.conv_2` take about 30
VALUES_PER_LAYER = 20  # Inception blocks take up to 10 parameters and make 5 to 20 layers
SIZE_CAP = 10 ** 15  # estimates stop growing here: they only need to exceed the limit
LIMIT_HINT = ("raise the limit with `--max-layers N` (`load(..., max_layers=N)`) "
              "if the network is meant to be this large")
MAX_CALL_DEPTH = 64  # blocks within blocks: real networks nest a few deep; each level takes Python stack
KEYWORDS = {"include", "network", "block", "input", "concat", "add", "residual", "mean", "max", "multiply", "gate", "branch", "shortcut", "repeat",
            "with", "aux", "from", "as", "named"}
RESERVED = WORDS | SYMBOLS | {"in"}  # words that are values, never names

# Statements that take arguments but make no node of their own kind.
STATEMENTS: dict[str, Signature] = {
    "residual": RESIDUAL,
    "aux": Signature({"weight": t_float}, {"weight": 1.0}, (("weight", p_num),), False, "a loss weight"),
}


@dataclass(frozen=True)
class Ctx:
    """Where lowering stands: scope path, names in force, the input `in` refers to, defaults."""
    scope: str
    env: dict
    in_shape: tuple | None
    defaults: dict
    calls: tuple = ()  # ((block name, call span), ...), outermost first
    aux: str | None = None
    repeats: tuple = ()  # ((count, span), ...) of enclosing repeats, outermost first
    block: str | None = None
    repeat_base: int = 0  # nodes made before the outermost enclosing repeat began


@dataclass
class Program:
    """All parsed files of one spec: the network definition, every block, every source text."""
    network: s.Definition | None
    blocks: dict
    sources: dict
    includes: dict = field(default_factory=dict)  # file -> [(Include, file it names)], in order


# --- includes --------------------------------------------------------------------------------

MAX_INCLUDE_DEPTH = 64  # files including files: each level takes Python stack


def load_program(text: str, file: str, includes: Includes | None = None) -> Program:
    """Parse a spec and, recursively, the files it includes (see `incdsl.io.Includes`: relative
    to the includer or the include path, never outside the spec's directory tree or that path).

    Raises:
        IncdslError: on syntax errors, missing, forbidden or cyclic includes, duplicate blocks.
    """
    includes = includes if includes is not None else Includes.for_spec(file)
    text = normalize(text)
    sources: dict[str, str] = {file: text}
    modules: list[s.Module] = []
    found: dict[str, list] = {}
    done: set[str] = set()

    def visit(module: s.Module, stack: tuple[tuple[str, str], ...]):  # ((real path, name), ...)
        modules.append(module)
        found[module.file] = []
        for inc in module.includes:
            name, real = _resolve(includes, module.file, inc, sources)
            found[module.file].append((inc, name))
            if any(real == r for r, _ in stack):
                raise _err(f"include cycle: `{inc.path}` is already being included", inc.span, sources,
                           notes=[" -> ".join([n for _, n in stack] + [name])])
            if real in done:
                continue
            if len(stack) >= MAX_INCLUDE_DEPTH:
                raise _err(f"includes nest more than {MAX_INCLUDE_DEPTH} files deep", inc.span, sources)
            done.add(real)
            sub_text = normalize(_read_include(includes, name, real, inc, sources))
            sources[name] = sub_text
            sub = _parse_included(sub_text, name, inc, sources)
            for d in sub.definitions:
                if d.kind == "network":
                    raise _err(f"included file defines network `{d.name}`", d.name_span, sources,
                               hint="a library holds only `block` definitions")
            visit(sub, stack + ((real, name),))

    main = _parse(text, file, sources)
    real = _realpath(file)
    done.add(real)
    visit(main, ((real, os.path.normpath(file)),))  # `./a.inc` is `a.inc` in a cycle
    blocks: dict[str, s.Definition] = {}
    networks = []
    for module in modules:
        for d in module.definitions:
            if d.kind == "network":
                networks.append(d)
                continue
            if d.name in LAYER_OPS or d.name in KEYWORDS or d.name in RESERVED:
                raise _err(f"`{d.name}` is a built-in name and cannot name a block", d.name_span, sources)
            if d.name in blocks:
                first = blocks[d.name].name_span
                raise _err(f"block `{d.name}` is defined twice", d.name_span, sources,
                           labels=[Label(first, "first defined here")])
            blocks[d.name] = d
            _check_params(d, sources)
    if len(networks) > 1:
        raise _err("a spec defines one network", networks[1].name_span, sources,
                   labels=[Label(networks[0].name_span, f"`{networks[0].name}` is defined here")])
    return Program(networks[0] if networks else None, blocks, sources, found)


def node_data(op: str, attrs: dict, shape: tuple, span: Span, scope: str, block, aux) -> dict:
    """The attributes of one IR node (STYLE.md, "IR")."""
    return {"op": op, "attrs": attrs, "shape": shape, "span": span, "scope": scope, "block": block, "aux": aux}


class GraphSink:
    """Where lowering puts the layers it makes, by default: the IR graph, edges and all.

    A sink has `add(name, data, ins, cost=None)` (a node, its attributes from `node_data`, the
    nodes it reads in order; `cost`, where known, is for sinks that count), `node(name)` (the
    attributes), `len()` (nodes so far), `graph` (graph-level attributes) and `result()` (what
    `lower_network` returns). `search/fastcost.py` has one that only adds up the cost.
    """

    def __init__(self):
        self.g = nx.DiGraph()
        self.graph = self.g.graph

    def add(self, name: str, data: dict, ins, cost=None) -> None:
        self.g.add_node(name, **data)
        for i, src in enumerate(ins):
            self.g.add_edge(src, name, index=i)

    def node(self, name: str) -> dict:
        return self.g.nodes[name]

    def __len__(self) -> int:
        return len(self.g)

    def result(self) -> nx.DiGraph:
        return self.g


def _realpath(file: str) -> str:
    try:
        return os.path.realpath(file)
    except ValueError:  # a name given to `load(text, file=...)` holding a NUL: no file has it
        return file


def _resolve(includes: Includes, includer: str, inc: s.Include, sources) -> tuple[str, str]:
    try:
        return includes.resolve(includer, inc.path)
    except IncludeError as exc:
        raise _err(exc.message, inc.span, sources, notes=exc.notes, hint=exc.hint) from None


def _read_include(includes: Includes, name: str, real: str, inc: s.Include, sources) -> str:
    try:
        return includes.read(name, real)
    except IncludeError as exc:
        if exc.line is None:
            raise _err(exc.message, inc.span, sources, notes=exc.notes, hint=exc.hint) from None
        # a bad byte: its place in the included file (whose text is not shown), and where it was included
        raise _err(exc.message, Span(name, exc.line, exc.col, exc.line, exc.col + 1), sources,
                   notes=[f"included at {inc.span}"], hint="save the file as UTF-8") from None


def _parse_included(text: str, name: str, inc: s.Include, sources) -> s.Module:
    """Parse an included file. One that fails at its first word, or holds a NUL byte, is not a
    spec at all (a stray path, a file of some other kind): say so at the `include`, and show
    none of its text."""
    try:
        return parse(text, name)
    except IncdslError as exc:
        span = exc.span
        if span is not None and span.file == name and ((span.line, span.col) <= first_token(text) or "\x00" in text):
            sources.pop(name, None)
            raise _err(f"included file `{inc.path}` is not an incdsl spec", inc.span, sources,
                       notes=[f"{name}:{span.line}:{span.col}: it does not start with `include`, `block` or `network`"],
                       hint="include only spec files (.inc) holding `block` definitions") from None
        exc.sources.update(sources)
        raise


_BLANK_LINES = re.compile(r"(?:[ \t\f]*(?:#[^\n]*)?\n)*[ \t\f]*")


def first_token(text: str) -> tuple[int, int]:
    """(line, col) of the first character of `text` that is not blank or in a comment."""
    pos = _BLANK_LINES.match(text).end()
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _parse(text, file, sources) -> s.Module:
    try:
        return parse(text, file)
    except IncdslError as exc:
        exc.sources.update(sources)
        raise


def _check_params(d: s.Definition, sources):
    seen = {}
    for p in d.params:
        if p.name in seen:
            raise _err(f"parameter `{p.name}` is declared twice", p.span, sources,
                       labels=[Label(seen[p.name], "first declared here")])
        if p.name in RESERVED:
            raise _err(f"`{p.name}` is a reserved word and cannot name a parameter", p.span, sources)
        seen[p.name] = p.span


def _err(message, span, sources, notes=(), hint=None, labels=()) -> IncdslError:
    exc = error(message, span, notes=notes, hint=hint, labels=labels)
    exc.sources.update(sources)
    return exc


# --- lowering --------------------------------------------------------------------------------

class Lowerer:
    def __init__(self, program: Program, max_layers: int = MAX_LAYERS, sink=None):
        self.program = program
        self.sink = sink if sink is not None else GraphSink()  # where the layers made go
        self.blocks = program.blocks
        self.max_layers = max_layers
        self.idle = 0  # repetitions and block calls that made no layer (each counts as one)
        self.name_chars = 0  # total length of the scoped names claimed
        self.values = 0  # parameter values bound by calls and repetitions (`count_values`)
        self.counters: dict[tuple[str, str], int] = {}
        self.used: dict[str, dict[str, Span]] = {}
        self.labels: dict[str, list[tuple[str, str, Span]]] = {}
        self.warnings: list[Diagnostic] = []
        self.instances: dict[str, dict] = {}
        self.min_sizes: dict[str, int] = {}
        self._min_depth = 0  # blocks `min_size` is inside

    # errors
    def fail(self, message, span, ctx: Ctx | None, hint=None, notes=(), labels=()):
        notes = list(notes)
        if ctx is not None:
            for name, call_span in reversed(ctx.calls):
                notes.append(f"in block `{name}` instantiated at {call_span}")
        raise _err(message, span, self.program.sources, notes, hint, labels)

    def eval(self, expr, ctx: Ctx):
        try:
            return evaluate(expr, ctx.env, ctx.in_shape)
        except EvalError as exc:
            self.fail(exc.message, exc.span, ctx, exc.hint)

    # names
    def claim(self, scope: str, name: str, span: Span, ctx: Ctx) -> str:
        used = self.used.setdefault(scope, {})
        if name in used:
            self.fail(f"name `{name}` is already used here", span, ctx, labels=[Label(used[name], "first used here")],
                      hint="labels given with `as` must be unique within their scope")
        used[name] = span
        full = f"{scope}/{name}" if scope else name
        # Each layer keeps its full scoped name: long block names nested deep would make every
        # name tens of kilobytes, so the names' total length is bounded with the layer count.
        self.name_chars += len(full)
        if self.name_chars > NAME_CHARS_PER_LAYER * self.max_layers:
            self.fail(f"the scoped names of this network's layers pass {NAME_CHARS_PER_LAYER * self.max_layers:,} "
                      f"characters in all", span, ctx, notes=[f"this one has {len(full):,}"],
                      hint=f"use shorter block names or nest blocks less deeply ({NAME_CHARS_PER_LAYER} "
                           "characters a layer are allowed: `--max-layers N` raises this limit too)")
        return full

    def fresh(self, scope: str, base: str, span: Span, ctx: Ctx, numbered: bool = True) -> str:
        used = self.used.setdefault(scope, {})
        key = (scope, base)
        if not numbered and base not in used:
            return self.claim(scope, base, span, ctx)
        k = self.counters.get(key, 0 if numbered else 1)
        while f"{base}_{k}" in used:
            k += 1
        self.counters[key] = k + 1
        return self.claim(scope, f"{base}_{k}", span, ctx)

    # size
    def made(self) -> int:
        """Layers made so far (the input too), plus repetitions and calls that made none."""
        return len(self.sink) + self.idle

    def too_big(self, least: int, span: Span, ctx: Ctx | None, notes=()):
        shown = f"at least {least:,}" if least < SIZE_CAP else f"more than {SIZE_CAP:,}"
        self.fail(f"this network would have {shown} layers; the limit is {self.max_layers:,}", span, ctx,
                  hint=LIMIT_HINT, notes=notes)

    def count_values(self, n: int, span: Span, ctx: Ctx) -> None:
        """Count parameter values bound (each block call binds its parameters, each repetition with
        a variable copies the names in force): a block of thousands of parameters in a long repeat
        would take time and memory that the layer count does not show."""
        self.values += n
        if self.values > VALUES_PER_LAYER * self.max_layers:
            self.fail(f"block calls and repetitions bind more than {VALUES_PER_LAYER * self.max_layers:,} "
                      "parameter values in all", span, ctx,
                      hint=f"give blocks fewer parameters ({VALUES_PER_LAYER} values a layer are allowed: "
                           "`--max-layers N` raises this limit too)")

    # nodes
    def add_node(self, name: str, op: str, attrs: dict, ins: list[str], span: Span, ctx: Ctx) -> str:
        if self.made() >= self.max_layers:
            self.too_big(self.made() + 1, span, ctx)
        try:
            shape, warnings = infer_node(op, attrs, [self.sink.node(i)["shape"] for i in ins])
        except ShapeError as exc:
            self.fail(exc.message, span, ctx, exc.hint, exc.notes)
        for w in warnings:
            self.warnings.append(Diagnostic("warning", w, span, tuple(
                f"in block `{n}` instantiated at {sp}" for n, sp in reversed(ctx.calls)),
                "pad with S, or choose a size the stride divides"))
        scope = name.rpartition("/")[0]
        self.sink.add(name, node_data(op, attrs, shape, span, scope, ctx.block, ctx.aux), ins)
        return name

    def shape(self, node: str) -> tuple:
        return self.sink.node(node)["shape"]

    # network
    def lower_network(self, net: s.Definition, overrides: dict, input_shape: tuple | None):
        """The sink's result: the IR graph (`GraphSink`, the default)."""
        ctx = Ctx("", {}, None, {})
        env = self.bind_params(net, [], dict(overrides), net.name_span, ctx, overrides=True)
        ctx = replace(ctx, env=env)
        body = list(net.body)
        if not body or not isinstance(body[0], s.InputStmt):
            where = body[0].span if body else net.name_span
            self.fail(f"network `{net.name}` must start with its input", where, None,
                      hint="begin the body with a line such as `input 3x224x224`")
        first = body.pop(0)
        self.check_size(body, env)
        try:
            shape = t_shape(self.eval(first.shape, ctx))
        except TypeError as exc:
            self.fail(str(exc), first.shape.span, None)
        if input_shape is not None:
            shape = tuple(input_shape)
        self.claim("", "input", first.span, ctx)
        self.sink.add("input", node_data("input", {"shape": shape}, shape, first.span, "", None, None), [])
        self.sink.graph.update(name=net.name, input="input", aux=[], params=env)
        out = self.lower_body(body, "input", replace(ctx, in_shape=shape))  # `in` is the network's input here
        self.sink.graph.update(output=out, instances=self.instances)
        return self.sink.result()

    def bind_params(self, d: s.Definition, args, kwargs: dict, call_span: Span, ctx: Ctx, overrides=False) -> dict:
        """Parameters of a block or network: positional args, keyword args, then defaults."""
        names = [p.name for p in d.params]
        env: dict = {}
        # Mistakes in the call are reported at the call, not as if inside the block it calls.
        site = replace(ctx, calls=ctx.calls[:-1]) if d.kind == "block" else ctx
        for value, arg in args:
            if len(env) >= len(names):
                self.fail(f"`{d.name}` takes {len(names)} argument(s), given {len(args)}", arg.span, site,
                          notes=[f"`{d.name}` is defined at {d.name_span}"])
            env[names[len(env)]] = value
        for key, (value, span) in kwargs.items():
            if key not in names:
                what = "network" if d.kind == "network" else "block"
                hint = did_you_mean(key, names) or (f"its parameters are {', '.join(names)}" if names else f"`{d.name}` has no parameters")
                if overrides:
                    raise _err(f"{what} `{d.name}` has no parameter `{key}`", None, self.program.sources, hint=hint)
                self.fail(f"{what} `{d.name}` has no parameter `{key}`", span, site, hint=hint,
                          notes=[f"`{d.name}` is defined at {d.name_span}"])
            if key in env:
                self.fail(f"parameter `{key}` given twice", span, site)
            if overrides:  # values from --set or load(params=) have not been through `evaluate`
                try:
                    checked(value, None)
                except EvalError as exc:
                    raise _err(f"network parameter `{key}`: {exc.message}", None,
                               self.program.sources, hint=exc.hint) from None
            env[key] = value
        for p in d.params:
            if p.name in env:
                continue
            if p.default is None:
                self.fail(f"`{d.name}` needs a value for parameter `{p.name}`", call_span, site,
                          notes=[f"`{p.name}` is declared at {p.span}"])
            try:
                env[p.name] = evaluate(p.default, env, ctx.in_shape)
            except EvalError as exc:
                self.fail(exc.message, exc.span, ctx, exc.hint)
        return env

    # statements
    def lower_body(self, stmts, cur: str, ctx: Ctx) -> str:
        for stmt in stmts:
            cur = self.lower_stmt(stmt, cur, ctx)
        return cur

    def lower_stmt(self, stmt, cur: str, ctx: Ctx) -> str:
        if isinstance(stmt, s.Chain):
            for el in stmt.elements:
                cur = self.lower_element(el, cur, ctx)
            return cur
        if isinstance(stmt, s.Composite):
            return (self.lower_residual if stmt.kind == "residual" else self.lower_join)(stmt, cur, ctx)
        if isinstance(stmt, s.RepeatStmt):
            return self.lower_repeat(stmt, cur, ctx)
        if isinstance(stmt, s.WithStmt):
            return self.lower_with(stmt, cur, ctx)
        if isinstance(stmt, s.AuxStmt):
            self.lower_aux(stmt, cur, ctx)
            return cur
        if isinstance(stmt, s.InputStmt):
            self.fail("`input` may only appear once, as the first line of the network", stmt.span, ctx)
        if isinstance(stmt, s.BranchStmt):
            self.fail("`branch:` outside `concat` or `add`", stmt.span, ctx,
                      hint="put branches inside `concat:` (joined along channels) or `add:` (summed)")
        if isinstance(stmt, s.ShortcutStmt):
            self.fail("`shortcut:` outside `residual`", stmt.span, ctx)
        raise AssertionError(stmt)

    def lower_element(self, el: s.Element, cur: str, ctx: Ctx, scope_name: str | None = None) -> str:
        if el.name in self.blocks:
            return self.lower_call(el, cur, ctx, scope_name)
        if el.name in LAYER_OPS:
            return self.lower_layer(el, cur, ctx)
        if el.name == "choice":
            self.fail("this spec is a search space: `choice` has no single block here", el.name_span, ctx,
                      hint="`incdsl check` describes the space; `incdsl sample` writes concrete specs from it")
        if el.name == "residual" or el.name in OPS and OPS[el.name].join:  # concat, add, mean, ...
            self.fail(f"`{el.name}` needs a body", el.name_span, ctx, hint=f"write `{el.name}:` and indent its branches below")
        self.fail(f"unknown layer or block `{el.name}`", el.name_span, ctx,
                  hint=did_you_mean(el.name, list(self.blocks) + sorted(LAYER_OPS)) or
                  "define it with `block " + el.name + ":` or include the library that does")

    def bind_args(self, op: str, args, ctx: Ctx, where: Span, partial: bool = False) -> dict:
        """Check a layer's (or composite's) arguments against its signature; returns normalised attrs.

        `partial` (for `with` defaults) returns only what was given, with no defaults added.
        """
        sig = OPS[op].signature if op in OPS else STATEMENTS[op]
        given: dict = {}

        def put(key, value, span):
            if key in given:
                self.fail(f"`{op}` got `{key}` twice", span, ctx)
            try:
                given[key] = sig.keywords[key](value)
            except TypeError as exc:
                self.fail(f"`{op}` {key}: {exc}", span, ctx)

        for arg in args:
            if arg.kind == "stride":
                if not sig.stride:
                    self.fail(f"`{op}` takes no stride", arg.span, ctx)
                put("stride", self.eval(arg.value, ctx), arg.span)
            elif arg.kind == "kw":
                if arg.name not in sig.keywords:
                    self.fail(f"`{op}` has no argument `{arg.name}`", arg.name_span, ctx,
                              hint=did_you_mean(arg.name, sig.keywords) or
                              (f"`{op}` takes " + ", ".join(sorted(sig.keywords)) if sig.keywords else f"`{op}` takes no arguments"))
                put(arg.name, self.eval(arg.value, ctx), arg.span)
            else:
                value = self.eval(arg.value, ctx)
                slot = next((k for k, ok in sig.positional if k not in given and ok(value)), None)
                if slot is None:
                    takes = f"`{op}` takes {sig.describe}" if sig.describe else f"`{op}` takes no positional arguments"
                    dup = next((k for k, ok in sig.positional if ok(value)), None)
                    msg = f"`{op}` got a second {dup}: `{show(value)}`" if dup else f"`{op}` does not take `{show(value)}` here"
                    hint = takes
                    if isinstance(value, float) and value.is_integer():
                        hint = "use `//` for integer division; " + takes
                    self.fail(msg, arg.span, ctx, hint=hint)
                put(slot, value, arg.span)
        if partial:
            return given
        for key, value in ctx.defaults.get(op, {}).items():
            given.setdefault(key, value)
        for key, value in sig.defaults.items():
            given.setdefault(key, value)
        missing = [k for k in sig.keywords if k not in given]
        if missing:
            self.fail(f"`{op}` needs {' and '.join(f'`{m}`' for m in missing)}", where, ctx, hint=f"`{op}` takes {sig.describe}")
        return given

    def lower_layer(self, el: s.Element, cur: str, ctx: Ctx) -> str:
        op, fixed = ALIASES.get(el.name, (el.name, {}))
        attrs = self.bind_args(op, el.args, ctx, el.name_span)
        attrs.update(fixed)
        try:
            attrs = OPS[op].finish(attrs)
        except TypeError as exc:  # arguments that are each fine but do not fit together
            self.fail(str(exc), el.span, ctx)
        name = self.claim(ctx.scope, el.label, el.label_span, ctx) if el.label else self.fresh(ctx.scope, op, el.span, ctx)
        node = self.add_node(name, op, attrs, [cur], el.span, ctx)
        if el.label:
            self.labels.setdefault(el.label, []).append((ctx.scope, node, el.label_span))
        return node

    def lower_call(self, el: s.Element, cur: str, ctx: Ctx, scope_name: str | None) -> str:
        d = self.blocks[el.name]
        if any(name == el.name for name, _ in ctx.calls):
            self.fail(f"block `{el.name}` instantiates itself", el.name_span, ctx, hint="blocks may not be recursive")
        if len(ctx.calls) >= MAX_CALL_DEPTH:
            chain = [f"in block `{name}` instantiated at {span}" for name, span in reversed(ctx.calls)]
            self.fail(f"blocks nest more than {MAX_CALL_DEPTH} deep", el.name_span, None,
                      notes=chain[:3] + [f"... {len(chain) - 6} more ..."] + chain[-3:],
                      hint="flatten the nesting: a block may hold a sequence of calls instead")
        least = max(1, self.min_size(el.name))
        if self.made() + least > self.max_layers:
            self.too_big(self.made() + least, el.name_span, ctx, notes=[f"block `{el.name}` makes at least {least:,}"])
        before = self.made()
        args, kwargs = [], {}
        for arg in el.args:
            if arg.kind == "stride":
                self.fail(f"block `{el.name}` takes no stride", arg.span, ctx)
            value = self.eval(arg.value, ctx)
            if arg.kind == "kw":
                if arg.name in kwargs:
                    self.fail(f"parameter `{arg.name}` given twice", arg.span, ctx)
                kwargs[arg.name] = (value, arg.span)
            else:
                args.append((value, arg))
        in_shape = self.shape(cur)
        inner = replace(ctx, in_shape=in_shape, calls=ctx.calls + ((el.name, el.name_span),), block=el.name)
        self.count_values(len(d.params), el.name_span, ctx)
        env = self.bind_params(d, args, kwargs, el.span, inner)
        if scope_name is None:
            scope_name = self.claim(ctx.scope, el.label, el.label_span, ctx) if el.label else \
                self.fresh(ctx.scope, el.name, el.span, ctx, numbered=False)
        self.instances[scope_name] = {"block": el.name, "args": env, "span": el.span}
        out = self.lower_body(d.body, cur, replace(inner, scope=scope_name, env=env))
        if self.made() == before:
            self.idle += 1
        if el.label and scope_name.rpartition("/")[2] == el.label:
            self.labels.setdefault(el.label, []).append((ctx.scope, out, el.label_span))
        return out

    def min_size(self, block: str) -> int:
        """A lower bound of the layers one instance of `block` makes, read off the AST.

        Repeat counts that are constants multiply; counts that depend on parameters count as
        zero, so the bound stays a bound. Lets nested calls that multiply (a block calling
        another twice, a hundred levels deep) fail at once, not layer by layer."""
        if block not in self.min_sizes:
            if self._min_depth >= MAX_CALL_DEPTH:
                return 0  # still a lower bound; lowering reports the nesting
            self.min_sizes[block] = 0  # a recursive call is reported elsewhere
            self._min_depth += 1
            try:
                self.min_sizes[block] = self._min_body(self.blocks[block].body, {})
            finally:
                self._min_depth -= 1
        return self.min_sizes[block]

    def _min_body(self, stmts, env: dict) -> int:
        return min(sum(self._min_sizes(stmts, env)), SIZE_CAP)

    def _min_sizes(self, stmts, env: dict) -> list[int]:
        """A lower bound of the layers of each statement of `stmts`."""
        return fold_statements(stmts, partial(self._min_stmt, env=env))

    def _min_element(self, e: s.Element) -> int:
        """A block call counts as at least one: it costs time even if empty."""
        return max(1, self.min_size(e.name)) if e.name in self.blocks else 1

    def _min_stmt(self, st, inner: list[int], path: tuple, *, env: dict) -> int:
        """The bound of one statement, given those of the statements of its body (`inner`)."""
        if isinstance(st, s.Chain):
            size = 0
            for e in st.elements:  # `_min_element`, inlined: every point of a search is checked
                size += max(1, self.min_size(e.name)) if e.name in self.blocks else 1
            return size
        body = min(sum(inner), SIZE_CAP)
        if isinstance(st, s.Composite):
            return body + 1
        if isinstance(st, s.RepeatStmt):  # a repetition counts as at least one, like a block call
            return min(self._repeat_count(st, env, path) * max(1, body), SIZE_CAP)
        if isinstance(st, (s.BranchStmt, s.ShortcutStmt, s.WithStmt, s.AuxStmt)):
            return body
        return 0

    def _repeat_count(self, st: s.RepeatStmt, env: dict, path: tuple) -> int:
        hidden = [p.var for p in path if isinstance(p, s.RepeatStmt) and p.var in env]  # a loop variable hides a parameter
        return self._constant_count(st.count, {k: v for k, v in env.items() if k not in hidden} if hidden else env)

    @staticmethod
    def _constant_count(expr, env: dict) -> int:
        """A repeat count known before lowering (a constant, or read from `env`), else 0."""
        try:
            count = evaluate(expr, env, None)
        except EvalError:
            return 0
        return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0

    def check_size(self, body, env: dict) -> None:
        """Refuse, before lowering, a network whose size read off the AST passes the limit.

        Points at the statement (or chain element) where the running total passes it."""
        sizes = self._min_sizes(body, env)
        total = 1  # the input
        for st, size in zip(body, sizes):
            if total + size <= self.max_layers:
                total += size
                continue
            estimate = min(min(sum(sizes), SIZE_CAP) + 1, SIZE_CAP)
            if isinstance(st, s.Chain):
                for e in st.elements:
                    total += self._min_element(e)
                    if total > self.max_layers:
                        notes = [f"block `{e.name}` makes at least {self._min_element(e):,}"] if e.name in self.blocks else []
                        self.too_big(estimate, e.name_span, None, notes=notes)
            if isinstance(st, s.RepeatStmt):
                count = self._repeat_count(st, env, ())
                each = max(1, self._min_body(st.body, {k: v for k, v in env.items() if k != st.var}))
                self.too_big(estimate, st.count.span, None,
                             notes=[f"each of its {count:,} repetitions makes at least {each:,}"])
            self.too_big(estimate, st.span, None)

    def composite_scope(self, stmt, ctx: Ctx) -> str:
        return self.claim(ctx.scope, stmt.label, stmt.label_span, ctx) if stmt.label else ctx.scope

    def lower_join(self, stmt: s.Composite, cur: str, ctx: Ctx) -> str:
        attrs = self.bind_args(stmt.kind, stmt.args, ctx, stmt.span)
        scope = self.composite_scope(stmt, ctx)
        inner = replace(ctx, scope=scope)
        outs = []
        for b in stmt.body:
            if not isinstance(b, s.BranchStmt):
                self.fail(f"only `branch:` statements may appear directly in `{stmt.kind}`", b.span, ctx,
                          hint="wrap it: `branch: ...`")
            bscope = self.claim(scope, b.label, b.label_span, ctx) if b.label else self.fresh(scope, "branch", b.span, ctx)
            outs.append(self.lower_body(b.body, cur, replace(inner, scope=bscope)))
        join = OPS[stmt.kind]
        if len(outs) < join.min_branches:
            self.fail(f"`{stmt.kind}` needs at least {'two' if join.min_branches == 2 else join.min_branches} branches",
                      stmt.span, ctx)
        if join.aligned:
            self.check_aligned(stmt, outs, ctx)
        node_attrs = join.join(attrs, len(outs))
        name = self.fresh(scope, stmt.kind, stmt.span, ctx)
        out = self.add_node(name, stmt.kind, node_attrs, outs, stmt.span, ctx)
        if stmt.label:
            self.labels.setdefault(stmt.label, []).append((ctx.scope, out, stmt.label_span))
        return out

    def check_aligned(self, stmt: s.Composite, outs, ctx: Ctx):
        shapes = [self.shape(o) for o in outs]
        if len({len(sh) for sh in shapes}) == 1 and len(shapes[0]) == 3:
            first = shapes[0][1:]
            for b, sh in zip(stmt.body, shapes):
                if sh[1:] != first:
                    self.fail(f"{stmt.kind} branches disagree in spatial size", b.span, ctx,
                              notes=[f"this branch gives {format_shape(sh)}; the first gives {format_shape(shapes[0])}"],
                              hint="every branch must keep the same height and width: check strides and padding (V or S)")

    def lower_residual(self, stmt: s.Composite, cur: str, ctx: Ctx) -> str:
        attrs = self.bind_args("residual", stmt.args, ctx, stmt.span)
        shortcuts = [b for b in stmt.body if isinstance(b, s.ShortcutStmt)]
        if len(shortcuts) > 1:
            self.fail("a residual has at most one `shortcut:`", shortcuts[1].span, ctx)
        body = [b for b in stmt.body if not isinstance(b, s.ShortcutStmt)]
        if not body:
            self.fail("a residual needs a branch besides its shortcut", stmt.span, ctx)
        scope = self.composite_scope(stmt, ctx)
        inner = replace(ctx, scope=scope, in_shape=self.shape(cur))
        branch = self.lower_body(body, cur, inner)
        short = cur
        if shortcuts:
            sscope = self.fresh(scope, "shortcut", shortcuts[0].span, ctx, numbered=False)
            short = self.lower_body(shortcuts[0].body, cur, replace(inner, scope=sscope))
        a, b = self.shape(short), self.shape(branch)
        if a != b:
            hint = ("project the branch back with `conv 1x1 in.c act = off`" if a[1:] == b[1:]
                    else "give the residual a `shortcut:` with the same stride as the branch")
            self.fail("residual sum with mismatched shapes", stmt.span, ctx,
                      notes=[f"the shortcut gives {format_shape(a)}, the branch gives {format_shape(b)}"], hint=hint)
        name = self.fresh(scope, "add", stmt.span, ctx)
        out = self.add_node(name, "add", {"scales": (1.0, attrs["scale"]), "act": attrs["act"]}, [short, branch],
                            stmt.span, ctx)
        if stmt.label:
            self.labels.setdefault(stmt.label, []).append((ctx.scope, out, stmt.label_span))
        return out

    def lower_repeat(self, stmt: s.RepeatStmt, cur: str, ctx: Ctx) -> str:
        try:
            count = t_nonneg(self.eval(stmt.count, ctx))
        except TypeError as exc:
            self.fail(f"repeat count: {exc}", stmt.count.span, ctx)
        outer = 1
        for n, _ in ctx.repeats:
            outer *= max(n, 1)
        # Fail before expanding: the layers made so far count too (`repeat 1000000: b` after
        # the input is one layer too many, and must not take a minute to say so).
        made = ctx.repeat_base if ctx.repeats else self.made()
        inside = [f"inside `repeat {n}` at {sp}" for n, sp in reversed(ctx.repeats)]
        if made + count * outer > self.max_layers:
            self.too_big(made + count * outer, stmt.count.span, ctx, notes=inside)
        if stmt.var and stmt.var in RESERVED:
            self.fail(f"`{stmt.var}` is a reserved word", stmt.span, ctx)
        body = stmt.body
        single_call = (len(body) == 1 and isinstance(body[0], s.Chain) and len(body[0].elements) == 1
                       and body[0].elements[0].name in self.blocks)
        base = stmt.label or (body[0].elements[0].label or body[0].elements[0].name if single_call else "repeat")
        group = self.fresh(ctx.scope, base, stmt.span, ctx, numbered=False).rpartition("/")[2]
        inner = replace(ctx, repeats=ctx.repeats + ((count, stmt.count.span),), repeat_base=made)
        for i in range(count):
            before = self.made()
            if stmt.var:
                self.count_values(len(ctx.env) + 1, stmt.count.span, ctx)
            env = dict(ctx.env, **{stmt.var: i}) if stmt.var else ctx.env
            it = replace(inner, env=env)
            scope_name = self.claim(ctx.scope, f"{group}.{i}", stmt.span, ctx)
            if single_call:
                cur = self.lower_call(body[0].elements[0], cur, it, scope_name)
            else:
                cur = self.lower_body(body, cur, replace(it, scope=scope_name))
            if self.made() == before:
                self.idle += 1
            each = self.made() - before
            if i == 0 and made + each * count * outer > self.max_layers:
                self.too_big(made + each * count * outer, stmt.count.span, ctx,
                             notes=[f"each repetition adds {each:,} layers"] + inside)
        return cur

    def lower_with(self, stmt: s.WithStmt, cur: str, ctx: Ctx) -> str:
        defaults = {op: dict(kw) for op, kw in ctx.defaults.items()}
        for d in stmt.defaults:
            targets = GROUPS.get(d.op, [d.op])
            for op in targets:
                if op not in OPS and op != "residual" or op == "input":
                    self.fail(f"`with` cannot set defaults for `{d.op}`", d.span, ctx,
                              hint=did_you_mean(d.op, [*OPS, "residual", "aux", *GROUPS]) or "layers such as `conv(...)`, `pool(...)`, `residual(...)`")
                defaults.setdefault(op, {}).update(self.bind_args(op, d.args, ctx, d.span, partial=True))
        return self.lower_body(stmt.body, cur, replace(ctx, defaults=defaults))

    def lower_aux(self, stmt: s.AuxStmt, cur: str, ctx: Ctx):
        attrs = self.bind_args("aux", stmt.args, ctx, stmt.span)
        tap = cur
        if stmt.tap:
            found = self.labels.get(stmt.tap, [])
            here = [f for f in found if f[0] == ctx.scope]
            if here:
                tap = here[-1][1]
            elif len(found) == 1:
                tap = found[0][1]
            elif found:  # several scopes use the label (a labelled layer in a block used twice)
                self.fail(f"label `{stmt.tap}` is ambiguous here", stmt.tap_span, ctx,
                          notes=[f"`{stmt.tap}` labels `{node}` ({span})" for _, node, span in found],
                          hint="give the statement to tap a label used nowhere else")
            else:
                self.fail(f"no statement labelled `{stmt.tap}` comes before this head", stmt.tap_span, ctx,
                          hint=did_you_mean(stmt.tap, self.labels) or "label the tapped statement with `as NAME`")
        scope = self.claim(ctx.scope, stmt.name, stmt.span, ctx)
        out = self.lower_body(stmt.body, tap, replace(ctx, scope=scope, aux=stmt.name))
        self.sink.graph["aux"].append({"name": stmt.name, "weight": attrs["weight"], "tap": tap, "output": out})
