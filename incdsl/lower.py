"""AST -> IR: includes, block instances, repeat, scoped defaults, shapes as nodes are made.

Shapes are inferred while lowering (each node through the rule table of `passes/shapes.py`)
because the language can read them: `in.c` is the depth of the current block's input.
`passes.shapes.infer_shapes` recomputes them from the finished graph alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

import networkx as nx

from . import syntax as s
from .diagnostics import Diagnostic, IncdslError, Label, Span, did_you_mean, error
from .ir import format_shape
from .parse import parse
from .ops.base import Signature, p_num
from .ops.joins import RESIDUAL
from .ops.table import ALIASES, GROUPS, LAYER_OPS, OPS, SYMBOLS
from .passes.shapes import ShapeError, infer_node
from .values import WORDS, EvalError, evaluate, show, t_float, t_nonneg, t_shape

MAX_NODES = 1_000_000
MAX_CALL_DEPTH = 64  # blocks within blocks: real networks nest a few deep; each level takes Python stack
KEYWORDS = {"include", "network", "block", "input", "concat", "add", "residual", "branch", "shortcut", "repeat",
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


# --- includes --------------------------------------------------------------------------------

def load_program(text: str, file: str, read: Callable[[str], str]) -> Program:
    """Parse a spec and, recursively, the files it includes (paths relative to the includer).

    Raises:
        IncdslError: on syntax errors, missing or cyclic includes, duplicate blocks.
    """
    sources: dict[str, str] = {file: text}
    modules: list[s.Module] = []
    done: set[str] = set()

    def visit(module: s.Module, stack: tuple[str, ...]):
        modules.append(module)
        done.add(os.path.normpath(module.file))
        for inc in module.includes:
            target = os.path.normpath(os.path.join(os.path.dirname(module.file), inc.path))
            if target in stack:
                raise _err(f"include cycle: `{inc.path}` is already being included", inc.span, sources,
                           notes=[" -> ".join(stack + (target,))])
            if target in done:
                continue
            try:
                sub_text = read(target)
            except (OSError, UnicodeDecodeError) as exc:
                reason = "it does not exist" if isinstance(exc, FileNotFoundError) else getattr(exc, "strerror", None) or str(exc)
                raise _err(f"cannot read included file `{inc.path}`", inc.span, sources,
                           notes=[f"looked for {target}: {reason}"],
                           hint="include paths are relative to the file that includes them") from None
            sources[target] = sub_text
            sub = _parse(sub_text, target, sources)
            for d in sub.definitions:
                if d.kind == "network":
                    raise _err(f"included file defines network `{d.name}`", d.name_span, sources,
                               hint="a library holds only `block` definitions")
            visit(sub, stack + (target,))

    main = _parse(text, file, sources)
    visit(main, (os.path.normpath(file),))  # `./a.inc` is `a.inc` when a cycle comes back to it
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
    return Program(networks[0] if networks else None, blocks, sources)


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
    def __init__(self, program: Program, max_nodes: int = MAX_NODES):
        self.program = program
        self.blocks = program.blocks
        self.max_nodes = max_nodes
        self.g = nx.DiGraph()
        self.counters: dict[tuple[str, str], int] = {}
        self.used: dict[str, dict[str, Span]] = {}
        self.labels: dict[str, list[tuple[str, str, Span]]] = {}
        self.warnings: list[Diagnostic] = []
        self.instances: dict[str, dict] = {}
        self.min_sizes: dict[str, int] = {}

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
        return f"{scope}/{name}" if scope else name

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

    # nodes
    def add_node(self, name: str, op: str, attrs: dict, ins: list[str], span: Span, ctx: Ctx) -> str:
        if len(self.g) >= self.max_nodes:
            self.fail(f"the network expands past {self.max_nodes:,} layers", span, ctx,
                      hint="a repeat count is probably far too large")
        try:
            shape, warnings = infer_node(op, attrs, [self.g.nodes[i]["shape"] for i in ins])
        except ShapeError as exc:
            self.fail(exc.message, span, ctx, exc.hint, exc.notes)
        for w in warnings:
            self.warnings.append(Diagnostic("warning", w, span, tuple(
                f"in block `{n}` instantiated at {sp}" for n, sp in reversed(ctx.calls)),
                "pad with S, or choose a size the stride divides"))
        scope = name.rpartition("/")[0]
        self.g.add_node(name, op=op, attrs=attrs, shape=shape, span=span, scope=scope, block=ctx.block, aux=ctx.aux)
        for i, src in enumerate(ins):
            self.g.add_edge(src, name, index=i)
        return name

    def shape(self, node: str) -> tuple:
        return self.g.nodes[node]["shape"]

    # network
    def lower_network(self, net: s.Definition, overrides: dict, input_shape: tuple | None) -> nx.DiGraph:
        ctx = Ctx("", {}, None, {})
        env = self.bind_params(net, [], dict(overrides), net.name_span, ctx, overrides=True)
        ctx = replace(ctx, env=env)
        body = list(net.body)
        if not body or not isinstance(body[0], s.InputStmt):
            where = body[0].span if body else net.name_span
            self.fail(f"network `{net.name}` must start with its input", where, None,
                      hint="begin the body with a line such as `input 3x224x224`")
        first = body.pop(0)
        try:
            shape = t_shape(self.eval(first.shape, ctx))
        except TypeError as exc:
            self.fail(str(exc), first.shape.span, None)
        if input_shape is not None:
            shape = tuple(input_shape)
        self.claim("", "input", first.span, ctx)
        self.g.add_node("input", op="input", attrs={"shape": shape}, shape=shape, span=first.span, scope="",
                        block=None, aux=None)
        self.g.graph.update(name=net.name, input="input", aux=[], params=env)
        out = self.lower_body(body, "input", replace(ctx, in_shape=shape))  # `in` is the network's input here
        self.g.graph.update(output=out, instances=self.instances)
        return self.g

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
        if el.name in ("concat", "add", "residual"):
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
        least = self.min_size(el.name)
        if len(self.g) + least > self.max_nodes:
            self.fail(f"block `{el.name}` expands to at least {least:,} layers, past the limit of {self.max_nodes:,}",
                      el.name_span, ctx, hint="blocks that call blocks several times multiply their size")
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
        env = self.bind_params(d, args, kwargs, el.span, inner)
        if scope_name is None:
            scope_name = self.claim(ctx.scope, el.label, el.label_span, ctx) if el.label else \
                self.fresh(ctx.scope, el.name, el.span, ctx, numbered=False)
        self.instances[scope_name] = {"block": el.name, "args": env, "span": el.span}
        out = self.lower_body(d.body, cur, replace(inner, scope=scope_name, env=env))
        if el.label and scope_name.rpartition("/")[2] == el.label:
            self.labels.setdefault(el.label, []).append((ctx.scope, out, el.label_span))
        return out

    def min_size(self, block: str) -> int:
        """A lower bound of the layers one instance of `block` makes, read off the AST.

        Repeat counts written as plain numbers multiply; counts that depend on parameters
        count as zero, so the bound stays a bound. Lets nested calls that multiply (a block
        calling another twice, a hundred levels deep) fail at once instead of after a
        million layers."""
        if block not in self.min_sizes:
            self.min_sizes[block] = 0  # a recursive call is reported elsewhere
            self.min_sizes[block] = min(self._min_body(self.blocks[block].body), 10 * self.max_nodes)
        return self.min_sizes[block]

    def _min_body(self, stmts) -> int:
        total = 0
        for st in stmts:
            if isinstance(st, s.Chain):
                total += sum(self.min_size(e.name) if e.name in self.blocks else 1 for e in st.elements)
            elif isinstance(st, s.Composite):
                total += self._min_body(st.body) + 1
            elif isinstance(st, s.RepeatStmt):
                count = st.count.value if isinstance(st.count, s.Num) and isinstance(st.count.value, int) else 0
                total += count * self._min_body(st.body)
            elif isinstance(st, (s.BranchStmt, s.ShortcutStmt, s.WithStmt, s.AuxStmt)):
                total += self._min_body(st.body)
        return total

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
                          hint=f"wrap it: `branch: ...`")
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
        # Fail before expanding: the nodes made so far count too (`repeat 1000000: b` after
        # the input is one node too many, and must not take a minute to say so).
        made = ctx.repeat_base if ctx.repeats else len(self.g)
        if made + count * outer > self.max_nodes:
            self.fail(f"repeat would expand past {self.max_nodes:,} layers", stmt.count.span, ctx,
                      notes=[f"inside `repeat {n}` at {sp}" for n, sp in reversed(ctx.repeats)])
        if stmt.var and stmt.var in RESERVED:
            self.fail(f"`{stmt.var}` is a reserved word", stmt.span, ctx)
        body = stmt.body
        single_call = (len(body) == 1 and isinstance(body[0], s.Chain) and len(body[0].elements) == 1
                       and body[0].elements[0].name in self.blocks)
        base = stmt.label or (body[0].elements[0].label or body[0].elements[0].name if single_call else "repeat")
        group = self.fresh(ctx.scope, base, stmt.span, ctx, numbered=False).rpartition("/")[2]
        inner = replace(ctx, repeats=ctx.repeats + ((count, stmt.count.span),), repeat_base=made)
        for i in range(count):
            before = len(self.g)
            env = dict(ctx.env, **{stmt.var: i}) if stmt.var else ctx.env
            it = replace(inner, env=env)
            scope_name = self.claim(ctx.scope, f"{group}.{i}", stmt.span, ctx)
            if single_call:
                cur = self.lower_call(body[0].elements[0], cur, it, scope_name)
            else:
                cur = self.lower_body(body, cur, replace(it, scope=scope_name))
            if i == 0 and made + (len(self.g) - before) * count * outer > self.max_nodes:
                self.fail(f"repeat would expand past {self.max_nodes:,} layers", stmt.count.span, ctx,
                          notes=[f"each repetition adds {len(self.g) - before:,} layers"] +
                                [f"inside `repeat {n}` at {sp}" for n, sp in reversed(ctx.repeats)])
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
        self.g.graph["aux"].append({"name": stmt.name, "weight": attrs["weight"], "tap": tap, "output": out})
