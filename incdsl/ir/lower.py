"""AST -> IR: block instances, repeat, scoped defaults, shapes as nodes are made.

Shapes are inferred while lowering (each node through the rule table of `passes/shapes.py`)
because the language can read them: `in.c` is the depth of the current block's input.
`passes.shapes.infer_shapes` recomputes them from the finished graph alone. Parsing and
includes are `program.py`'s, the size estimate made before lowering `estimate.py`'s, where
the layers go `sink.py`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..lang import syntax as s
from ..lang.parse import misplaced_statement
from ..diagnostics import Diagnostic, Label, Span, did_you_mean
from .graph import format_shape
from ..ops.base import Signature, p_num
from ..ops.residual import RESIDUAL, residual_parts
from ..ops.slicing import centred
from ..ops.table import ALIASES, GROUPS, LAYER_OPS, OPS
from ..passes.shapes import ShapeError, infer_node
from ..lang.values import EvalError, checked, evaluate, show, t_loss_weight, t_nonneg, t_shape
from .control import ControlFlow
from .estimate import SizeEstimate
from .tensors import NamedTensors
from .limits import (LIMIT_HINT, MAX_CALL_DEPTH, MAX_LAYERS, MAX_NESTING, MAX_NODES, NAME_CHARS_PER_LAYER, SIZE_CAP,  # noqa: F401
                     VALUES_PER_LAYER)
from .program import (CONTROL_WORDS, KEYWORDS, MAX_INCLUDE_DEPTH, RESERVED, Program, first_token, load_program,  # noqa: F401
                      spec_error)
from .sink import GraphSink, node_data  # noqa: F401  (`GraphSink`, `node_data`: their former home)

# Statements that take arguments but make no node of their own kind.
STATEMENTS: dict[str, Signature] = {
    "residual": RESIDUAL,
    "aux": Signature({"weight": t_loss_weight}, {"weight": 1.0}, (("weight", p_num),), False, "a loss weight"),
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
    home: str = ""  # scope of the block instance being lowered ("" in the network): labels stay inside
    in_node: str | None = None  # the tensor `in` names: the input of the enclosing block, residual or network

    def but(self, **changes) -> "Ctx":
        """A copy with `changes`: `dataclasses.replace` without re-running `__init__` (lowering
        makes one per branch, repetition and block instance; replace took a tenth of its time)."""
        new = object.__new__(Ctx)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new



# --- lowering --------------------------------------------------------------------------------

class Lowerer(ControlFlow, NamedTensors):
    """Lowers one program into a sink (`sink.py`; the IR graph by default).

    Parameters:
        program: the `Program` to lower.
        max_layers: the limit on layers made (repetitions and calls that make none count one).
        sink: where the layers go; a `GraphSink` unless given.
        memo: a `sink.Memo` whose remembered layers and block instances are not lowered
            again (search's cost evaluator); None lowers everything.
    """

    def __init__(self, program: Program, max_layers: int = MAX_LAYERS, sink=None, memo=None):
        self.program = program
        self.sink = sink if sink is not None else GraphSink()  # where the layers made go
        self.memo = memo
        self.blocks = program.blocks
        self.max_layers = max_layers
        self.idle = 0  # repetitions and block calls that made no layer (each counts as one)
        self.name_chars = 0  # total length of the scoped names claimed
        self.values = 0  # parameter values bound by calls and repetitions (`count_values`)
        self.counters: dict[tuple[str, str], int] = {}
        self.used: dict[str, dict[str, Span]] = {}
        self.labels: dict[str, list[tuple[str, str, Span]]] = {}
        self.scoped_labels: dict[tuple[str, str], str] = {}  # (scope, label) -> the latest node it names
        self.warnings: list[Diagnostic] = []
        self.instances: dict[str, dict] = {}
        self.rewired = False  # a `take` or `branch from` read an earlier tensor: some may be left unused
        self.joins_made = 0  # joins that accept `flat` made so far: orders them against a branch's start
        self.mergeable: dict[str, tuple] = {}  # such a join's node -> (its number, kind, inputs, span)
        self.merged_into: dict[str, tuple] = {}  # a join merged away -> (kind, span of the flat join that took its inputs)
        self.nesting = 0  # bodies being lowered, one inside the other (each takes Python stack)
        self.aux_spans: dict[str, Span] = {}  # aux head name -> the statement that made it
        self.estimate = SizeEstimate(program.blocks, max_layers)
        self.float_overrides: dict[str, float] = {}  # network parameters given whole floats (`--set n=1e3`)
        self.overridden: dict = {}  # network parameters given with `--set` or `load(params=...)`, and their values

    # errors
    def fail(self, message, span, ctx: Ctx | None, hint=None, notes=(), labels=()):
        notes = list(notes)
        if ctx is not None:
            for name, call_span in reversed(ctx.calls):
                notes.append(f"in block `{name}` instantiated at {call_span}")
        raise spec_error(message, span, self.program.sources, notes, hint, labels)

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
        if len(set(ins)) < len(ins):  # the IR has one edge per pair of nodes
            self.fail(f"this `{op}` would read one tensor twice", span, ctx,
                      "a layer takes each tensor once: pass one of the two through `identity`")
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
        self.float_overrides = {k: v for k, (v, _) in overrides.items() if isinstance(v, float) and v.is_integer()}
        self.overridden = {k: v for k, (v, _) in overrides.items()}
        env = self.bind_params(net, [], dict(overrides), net.name_span, ctx, overrides=True)
        ctx = ctx.but(env=env)
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
        self.sink.graph.update(name=net.name, input="input", aux=[], params=env,
                               changed=self.changed_params(net, overrides, env))
        out = self.lower_body(body, "input", ctx.but(in_shape=shape, in_node="input"))  # `in` is the network's input here
        self.sink.graph.update(output=out, instances=self.instances)
        if self.rewired:
            self.check_all_used(out)
        return self.sink.result()

    @staticmethod
    def changed_params(net: s.Definition, overrides: dict, env: dict) -> tuple[str, ...]:
        """The network parameters set from outside to a value other than their default's (evaluated
        with the other parameters' values): which configuration this is, for tables of papers."""
        changed = []
        for p in net.params:
            if p.name not in overrides:
                continue
            try:
                default = evaluate(p.default, env, None) if p.default is not None else None
            except EvalError:  # a default that reads the network's input, say: not comparable
                default = None
            value = env[p.name]
            if default is None or isinstance(default, bool) != isinstance(value, bool) or default != value:
                changed.append(p.name)
        return tuple(changed)

    def bind_params(self, d: s.Definition, args, kwargs: dict, call_span: Span, ctx: Ctx, overrides=False) -> dict:
        """Parameters of a block or network: positional args, keyword args, then defaults."""
        names = [p.name for p in d.params]
        env: dict = {}
        # Mistakes in the call are reported at the call, not as if inside the block it calls.
        site = ctx.but(calls=ctx.calls[:-1]) if d.kind == "block" else ctx
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
                    raise spec_error(f"{what} `{d.name}` has no parameter `{key}`", None, self.program.sources,
                                     hint=hint, notes=[f"`{key}` is given with `--set` (or `load(params=...)`); "
                                                       f"`{d.name}` is defined at {d.name_span}"])
                self.fail(f"{what} `{d.name}` has no parameter `{key}`", span, site, hint=hint,
                          notes=[f"`{d.name}` is defined at {d.name_span}"])
            if key in env:
                self.fail(f"parameter `{key}` given twice", span, site)
            if overrides:  # values from --set or load(params=) have not been through `evaluate`
                try:
                    checked(value, None)
                except EvalError as exc:
                    raise spec_error(f"network parameter `{key}`: {exc.message}", None,
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
        self.nesting += 1
        try:
            for stmt in stmts:
                if isinstance(stmt, s.LetStmt):  # binds for the statements after it
                    ctx = self.bind_let(stmt, ctx)
                elif isinstance(stmt, s.RequireStmt):  # makes nothing: `cur` passes through
                    self.check_requirement(stmt, ctx)
                else:
                    cur = self.lower_stmt(stmt, cur, ctx)
        finally:
            self.nesting -= 1
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
        if isinstance(stmt, s.IfStmt):
            return self.lower_if(stmt, cur, ctx)
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
        if el.name == "take":
            return self.lower_take(el, ctx)
        if el.name == "choice":
            self.fail("this spec is a search space: `choice` has no single block here", el.name_span, ctx,
                      hint="`incdsl check` describes the space; `incdsl sample` writes concrete specs from it")
        misplaced = self.misplaced_statement(el)
        if misplaced is not None and el.args:  # `-> repeat 2: b`; a bare `-> concat` lacks its body
            self.fail(misplaced[0], el.name_span, ctx, hint=misplaced[1])
        if el.name == "residual" or el.name in OPS and OPS[el.name].join:  # concat, add, mean, ...
            self.fail(f"`{el.name}` needs a body", el.name_span, ctx, hint=f"write `{el.name}:` and indent its branches below")
        if misplaced is not None:
            self.fail(misplaced[0], el.name_span, ctx, hint=misplaced[1])
        self.fail(f"unknown layer or block `{el.name}`", el.name_span, ctx,
                  hint=did_you_mean(el.name, list(self.blocks) + sorted(LAYER_OPS)) or
                  "define it with `block " + el.name + ":` or include the library that does")

    def misplaced_statement(self, el: s.Element) -> tuple[str, str, int] | None:
        """(message, hint, column) where `el` is a statement word read as a layer's name
        (`conv 3x3 32 -> repeat 2: b`), else None."""
        span = el.name_span
        text = self.program.sources.get(span.file)
        lines = text.split("\n") if text is not None else []
        if not 1 <= span.line <= len(lines):
            return None
        found = misplaced_statement(lines[span.line - 1], span.col + len(el.name))
        return found if found is not None and found[2] == span.col else None

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
                    given = next((k for k, v in self.float_overrides.items() if v == value), None)
                    if given is not None:  # most likely that value, passed through parameters
                        hint = f"`{given}` is given as the float {show(value)}: give it as the whole number {int(value)}; " + takes
                    elif isinstance(value, float) and value.is_integer():
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
        memo = self.memo
        key = memo.layer_key(el, self.shape(cur), ctx) if memo is not None else None
        if key is None:
            return self.make_layer(el, cur, ctx)
        hit = memo.layer(key)
        if hit is not None and hit[0] is el:
            _, op, attrs, shape, cost = hit  # computed and checked when first lowered
            name = self.layer_name(el, op, ctx)
            self.sink.add(name, node_data(op, attrs, shape, el.span, ctx.scope, ctx.block, ctx.aux), [cur], cost=cost)
            return self.note_label(el.label, el.label_span, ctx, name)
        since = memo.tally()
        node = self.make_layer(el, cur, ctx)
        memo.keep_layer(key, el, self.sink.node(node), since)
        return node

    def make_layer(self, el: s.Element, cur: str, ctx: Ctx) -> str:
        """Bind and check a layer's arguments, then name it and add its node."""
        op, fixed = ALIASES.get(el.name, (el.name, {}))
        attrs = self.bind_args(op, el.args, ctx, el.name_span)
        attrs.update(fixed)
        try:
            attrs = OPS[op].finish(attrs)
        except TypeError as exc:  # arguments that are each fine but do not fit together
            self.fail(str(exc), el.span, ctx)
        node = self.add_node(self.layer_name(el, op, ctx), op, attrs, [cur], el.span, ctx)
        return self.note_label(el.label, el.label_span, ctx, node)

    def layer_name(self, el: s.Element, op: str, ctx: Ctx) -> str:
        """A layer's scoped name: its label, or the op numbered within the scope."""
        return self.claim(ctx.scope, el.label, el.label_span, ctx) if el.label else self.fresh(ctx.scope, op, el.span, ctx)

    def note_label(self, label: str | None, span: Span | None, ctx: Ctx, node: str) -> str:
        """Remember the node a label (`as NAME`) gives, for `aux ... from NAME`; returns the node."""
        if label:
            self.labels.setdefault(label, []).append((ctx.scope, node, span))
            self.scoped_labels[(ctx.scope, label)] = node  # what `take` and `branch from` read
        return node

    def lower_call(self, el: s.Element, cur: str, ctx: Ctx, scope_name: str | None) -> str:
        d = self.blocks[el.name]
        if el.name in self.estimate.endless and any(name == el.name for name, _ in ctx.calls):
            self.fail(f"block `{el.name}` instantiates itself", el.name_span, ctx,
                      hint="a block may call itself only under an `if` that ends the recursion: "
                           f"`if n == 1: ...` / `else: ... {el.name}(n - 1)`")
        if (len(ctx.calls) >= MAX_CALL_DEPTH or self.nesting > MAX_NESTING) and \
                any(name == el.name for name, _ in ctx.calls):
            self.recursion_too_deep(el, ctx)
        if self.nesting > MAX_NESTING:
            self.fail(f"blocks and bodies nest more than {MAX_NESTING} deep here", el.name_span, ctx,
                      hint="flatten the nesting: a block may hold a sequence of calls instead")
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
        inner = ctx.but(in_shape=in_shape, calls=ctx.calls + ((el.name, el.name_span),), block=el.name)
        self.count_values(len(d.params), el.name_span, ctx)
        env = self.bind_params(d, args, kwargs, el.span, inner)
        if el.name in self.estimate.recursive:  # its size depends on its arguments: FractalNet doubles per level
            least = max(1, self.estimate.min_instance(el.name, env, self.nesting))
            if self.made() + least > self.max_layers:
                self.too_big(self.made() + least, el.name_span, ctx,
                             notes=[f"`{el.name}` with these arguments makes at least {least:,}"])
        if scope_name is None:
            scope_name = self.claim(ctx.scope, el.label, el.label_span, ctx) if el.label else \
                self.fresh(ctx.scope, el.name, el.span, ctx, numbered=False)
        self.instances[scope_name] = {"block": el.name, "args": env, "span": el.span}
        out = self.lower_instance(d, cur, inner.but(scope=scope_name, env=env, home=scope_name, in_node=cur))
        if self.made() == before:
            self.idle += 1
        if el.label and scope_name.rpartition("/")[2] == el.label:
            self.note_label(el.label, el.label_span, ctx, out)
        return out

    def recursion_too_deep(self, el: s.Element, ctx: Ctx):
        """The error for a recursion past `MAX_CALL_DEPTH` calls, or past `MAX_NESTING` bodies (each
        level of the recursion nests a few: its clause, its join, its branch)."""
        depth = sum(name == el.name for name, _ in ctx.calls)
        first = next(span for name, span in ctx.calls if name == el.name)
        self.fail(f"block `{el.name}` recurses too deeply ({len(ctx.calls)} calls, {self.nesting} nested bodies; "
                  f"the limits are {MAX_CALL_DEPTH} and {MAX_NESTING})", el.name_span, None,
                  labels=[Label(first, "the recursion starts here")],
                  notes=[f"`{el.name}` is {depth} of the {len(ctx.calls)} calls in progress"],
                  hint=f"end the recursion with an `if` on a parameter that each call moves toward the end: "
                       f"`if n == 1: ...` / `else: ... {el.name}(n - 1)`")

    def lower_instance(self, d: s.Definition, cur: str, ctx: Ctx) -> str:
        """The body of one block instance, or (from the memo) one placeholder node standing
        for an identical instance lowered before."""
        memo = self.memo
        key = memo.block_key(d, self.shape(cur), ctx) if memo is not None else None
        if key is None:
            return self.lower_body(d.body, cur, ctx)
        hit = memo.block(key)
        if hit is not None and hit[0] is d:
            _, shape, cost = hit
            name = f"{ctx.scope}/memo"
            self.sink.add(name, node_data("identity", {}, shape, d.span, ctx.scope, ctx.block, ctx.aux), [cur], cost=cost)
            return name
        since = memo.tally()
        out = self.lower_body(d.body, cur, ctx)
        memo.keep_block(key, d, self.shape(out), since)
        return out

    def min_size(self, block: str) -> int:
        """A lower bound of the layers one instance of `block` makes (`estimate.py`)."""
        return self.estimate.min_size(block)

    def check_size(self, body, env: dict) -> None:
        """Refuse, before lowering, a network whose size read off the AST passes the limit."""
        found = self.estimate.oversize(body, env)
        if found is not None:
            self.too_big(*found[:2], None, notes=found[2])

    def composite_scope(self, stmt, ctx: Ctx) -> str:
        return self.claim(ctx.scope, stmt.label, stmt.label_span, ctx) if stmt.label else ctx.scope

    def lower_join(self, stmt: s.Composite, cur: str, ctx: Ctx) -> str:
        self.check_join_args(stmt, ctx)
        attrs = self.bind_args(stmt.kind, stmt.args, ctx, stmt.span)
        scope = self.composite_scope(stmt, ctx)
        inner = ctx.but(scope=scope)
        outs, branches, where, starts = [], [], [], []
        for b, bctx in self.join_branches(stmt.body, stmt.kind, inner):
            before = self.made()
            starts.append(self.joins_made)
            bscope = self.claim(scope, b.label, b.label_span, ctx) if b.label else self.fresh(scope, "branch", b.span, ctx)
            bctx = bctx.but(scope=bscope)
            outs.append(self.lower_body(b.body, self.branch_input(b, cur, bctx), bctx))
            branches.append(b)
            where.append(bctx)
            if self.made() == before:  # a branch that makes nothing (only `let`s) still counts
                self.idle += 1
        join = OPS[stmt.kind]
        if len(outs) < join.min_branches:
            self.fail(f"`{stmt.kind}` needs at least {'two' if join.min_branches == 2 else join.min_branches} branches",
                      stmt.span, ctx)
        if attrs.pop("pad", False):
            outs = self.pad_to_largest(branches, outs, where)
        flat = attrs.pop("flat", None)  # None: the kind has no `flat` option (`ops/elementwise.py`)
        if flat:
            outs = self.merge_flat(stmt, attrs, branches, outs, starts, ctx)
        if join.aligned:
            self.check_aligned(stmt, branches, outs, ctx)
        self.check_distinct(stmt, branches, outs, ctx)
        node_attrs = join.join(attrs, len(outs))
        name = self.fresh(scope, stmt.kind, stmt.span, ctx)
        out = self.add_node(name, stmt.kind, node_attrs, outs, stmt.span, ctx)
        if flat is not None:  # a join that a flat join of its kind may merge later
            self.joins_made += 1
            self.mergeable[out] = (self.joins_made, stmt.kind, tuple(outs), stmt.span)
        return self.note_label(stmt.label, stmt.label_span, ctx, out)

    def check_distinct(self, stmt: s.Composite, branches, outs: list[str], ctx: Ctx) -> None:
        """Two branches that give the same tensor (`take u` twice) are an error at the second:
        the IR keeps one edge per pair of nodes, so the join would silently read it once."""
        first = {}
        for i, out in enumerate(outs):
            if out in first:
                where = branches[i].span if len(branches) == len(outs) else stmt.span
                other = f"branch {first[out] + 1}" if len(branches) == len(outs) else "another input"
                self.fail(f"this branch gives the same tensor as {other} of this `{stmt.kind}`", where, ctx,
                          "a join takes each tensor once; for a second copy, pass it through `identity` "
                          "(`branch: take NAME -> identity`)")
            first[out] = i

    def merge_flat(self, stmt: s.Composite, attrs: dict, branches, outs: list[str], starts: list[int],
                   ctx: Ctx) -> list[str]:
        """`mean(flat = yes)`: the inputs of a flat join. A branch whose output is a join of the
        same kind that its own statements made (after the branch began) gives that join's inputs,
        in order, and the join is removed; any other branch gives its output."""
        merged = []
        for b, out, start in zip(branches, outs, starts):
            made = self.mergeable.get(out)
            if made is None or made[0] <= start or made[1] != stmt.kind:
                merged.append(out)
                continue
            self.check_mergeable(stmt, attrs, b, out, made, ctx)
            del self.mergeable[out]
            self.sink.remove(out)
            self.merged_into[out] = (stmt.kind, stmt.span)
            self.idle += 1  # it was made (and counted against the limit): `made()` never goes back
            merged.extend(made[2])
        return merged

    def check_mergeable(self, stmt: s.Composite, attrs: dict, b: s.BranchStmt, out: str, made: tuple, ctx: Ctx):
        """A join merged into a flat one must be read by nothing else, and have its arguments."""
        kind, ins, span = stmt.kind, made[2], made[3]
        readers = self.readers(out)
        if readers:
            self.fail(f"this branch ends in a `{kind}` that is also read elsewhere: it cannot be merged into "
                      f"this flat `{kind}`", b.span, ctx, labels=[Label(span, f"the `{kind}` made here")],
                      notes=[f"`{out}` is read by {readers}"],
                      hint=f"read a layer before that `{kind}` instead, or write `{kind}:` without `flat = yes` "
                           "to keep the joins nested")
        mine, theirs = OPS[kind].join(attrs, len(ins)), self.sink.node(out)["attrs"]
        if mine != theirs:
            differ = ", ".join(f"{k} {show(theirs.get(k))} there, {show(mine.get(k))} here"
                               for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))
            self.fail(f"this branch ends in a `{kind}` with other arguments than this flat `{kind}`: "
                      f"it cannot be merged ({differ})", b.span, ctx, labels=[Label(span, f"the `{kind}` made here")],
                      hint=f"give both joins the same arguments (`with {kind}(...)` sets them for a whole block), "
                           f"or write `{kind}:` without `flat = yes` to keep the joins nested")

    def readers(self, node: str) -> str | None:
        """What reads `node` besides the join being made: a layer or an auxiliary head, or None."""
        heads = [h["name"] for h in self.sink.graph.get("aux", ()) if node in (h["tap"], h["output"])]
        if heads:
            return f"the auxiliary head `{heads[0]}`"
        used = getattr(self.sink, "used", None)  # a sink without edges (search's cost) cannot tell
        return "another layer" if used is not None and used(node) else None

    def pad_to_largest(self, branches, outs: list[str], where: list[Ctx]) -> list[str]:
        """`concat(pad = yes)`: each branch smaller than the largest height and width gets a
        `zeropad` (centred, the odd row or column after) at its end, in its own scope."""
        shapes = [self.shape(o) for o in outs]
        if any(len(sh) != 3 for sh in shapes):
            return outs  # flat vectors: nothing to pad; the join's shape rule reports a mix
        target = (max(sh[1] for sh in shapes), max(sh[2] for sh in shapes))
        padded = []
        for b, out, sh, bctx in zip(branches, outs, shapes, where):
            if sh[1:] != target:
                name = self.fresh(bctx.scope, "zeropad", b.span, bctx)
                out = self.add_node(name, "zeropad", {"pad": centred(sh[1:], target)}, [out], b.span, bctx)
            padded.append(out)
        return padded

    def check_aligned(self, stmt: s.Composite, branches, outs, ctx: Ctx):
        shapes = [self.shape(o) for o in outs]
        if len({len(sh) for sh in shapes}) == 1 and len(shapes[0]) == 3:
            first = shapes[0][1:]
            for b, sh in zip(branches, shapes):
                if sh[1:] != first:
                    self.fail(f"{stmt.kind} branches disagree in spatial size", b.span, ctx,
                              notes=[f"this branch gives {format_shape(sh)}; the first gives {format_shape(shapes[0])}"],
                              hint="every branch must keep the same height and width: check strides and padding (V or S)")

    def lower_residual(self, stmt: s.Composite, cur: str, ctx: Ctx) -> str:
        attrs = self.bind_args("residual", stmt.args, ctx, stmt.span)
        try:
            parts = residual_parts(attrs, self.shape(cur)[0])
        except TypeError as exc:  # arguments that are each fine but do not go together
            self.fail(str(exc), stmt.span, ctx)
        stmts = self.residual_statements(stmt.body, ctx.but(in_shape=self.shape(cur), in_node=cur))  # `in` is its input
        shortcuts = [b for b in stmts if isinstance(b, s.ShortcutStmt)]
        if len(shortcuts) > 1:
            self.fail("a residual has at most one `shortcut:`", shortcuts[1].span, ctx)
        body = [b for b in stmts if not isinstance(b, s.ShortcutStmt)]
        if not body:
            self.fail("a residual needs a branch besides its shortcut", stmt.span, ctx)
        scope = self.composite_scope(stmt, ctx)
        inner = ctx.but(scope=scope, in_shape=self.shape(cur), in_node=cur)
        branch = self.lower_body(body, cur, inner)
        short = cur
        if shortcuts:
            sscope = self.fresh(scope, "shortcut", shortcuts[0].span, ctx, numbered=False)
            short = self.lower_body(shortcuts[0].body, cur, inner.but(scope=sscope))
        for op, op_attrs in parts.shortcut:  # stochastic layers at the paths' ends (`ops/residual.py`)
            short = self.add_node(self.fresh(scope, op, stmt.span, ctx), op, op_attrs, [short], stmt.span, ctx)
        for op, op_attrs in parts.branch:
            branch = self.add_node(self.fresh(scope, op, stmt.span, ctx), op, op_attrs, [branch], stmt.span, ctx)
        a, b = self.shape(short), self.shape(branch)
        if a != b:
            hint = ("project the branch back with `conv 1x1 in.c act = off`" if a[1:] == b[1:]
                    else "give the residual a `shortcut:` with the same stride as the branch")
            self.fail("residual sum with mismatched shapes", stmt.span, ctx,
                      notes=[f"the shortcut gives {format_shape(a)}, the branch gives {format_shape(b)}"], hint=hint)
        name = self.fresh(scope, "add", stmt.span, ctx)
        out = self.add_node(name, "add", {"scales": (1.0, parts.scale), "act": attrs["act"]}, [short, branch],
                            stmt.span, ctx)
        return self.note_label(stmt.label, stmt.label_span, ctx, out)

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
        if stmt.var and (stmt.var in RESERVED or stmt.var in CONTROL_WORDS):
            self.fail(f"`{stmt.var}` is a reserved word", stmt.span, ctx)
        self.check_loop_name(stmt, ctx)
        body = stmt.body
        single_call = (len(body) == 1 and isinstance(body[0], s.Chain) and len(body[0].elements) == 1
                       and body[0].elements[0].name in self.blocks)
        base = stmt.label or (body[0].elements[0].label or body[0].elements[0].name if single_call else "repeat")
        group = self.fresh(ctx.scope, base, stmt.span, ctx, numbered=False).rpartition("/")[2]
        inner = ctx.but(repeats=ctx.repeats + ((count, stmt.count.span),), repeat_base=made)
        for i in range(count):
            before = self.made()
            if stmt.var:
                self.count_values(len(ctx.env) + 1, stmt.count.span, ctx)
            env = dict(ctx.env, **{stmt.var: i}) if stmt.var else ctx.env
            it = inner.but(env=env)
            scope_name = self.claim(ctx.scope, f"{group}.{i}", stmt.span, ctx)
            if single_call:
                cur = self.lower_call(body[0].elements[0], cur, it, scope_name)
            else:
                cur = self.lower_body(body, cur, it.but(scope=scope_name))
            if self.made() == before:
                self.idle += 1
            each = self.made() - before
            if i == 0 and made + each * count * outer > self.max_layers:
                self.too_big(made + each * count * outer, stmt.count.span, ctx,
                             notes=[f"each repetition adds {each:,} layers"] + inside)
        return cur

    def claim_aux_name(self, stmt: s.AuxStmt, ctx: Ctx) -> None:
        """A head's name is its identity (its layers carry it, and the compiled model's aux_paths,
        the drawing and the cost rows group by it): a second head of the same name is an error."""
        first = self.aux_spans.get(stmt.name)
        if first is None:
            self.aux_spans[stmt.name] = stmt.span
            return
        if first == stmt.span:  # the same statement again: its block runs more than once
            self.fail(f"aux head `{stmt.name}` is made more than once: a repetition or another block call runs "
                      "its statement again",
                      stmt.span, ctx, hint="put the head after the repetition or the block calls, tapping a "
                                           "labelled statement with `aux NAME from LABEL:`")
        self.fail(f"aux head `{stmt.name}` is defined twice", stmt.span, ctx,
                  labels=[Label(first, "first defined here")], hint="give each head its own name")

    def lower_with(self, stmt: s.WithStmt, cur: str, ctx: Ctx) -> str:
        defaults = {op: dict(kw) for op, kw in ctx.defaults.items()}
        set_here: dict = {}  # (op, key) -> the default that set it: one `with` sets each once
        for d in stmt.defaults:
            targets = GROUPS.get(d.op, [d.op])
            for op in targets:
                if op not in OPS and op != "residual" or op == "input":
                    self.fail(f"`with` cannot set defaults for `{d.op}`", d.span, ctx,
                              hint=did_you_mean(d.op, [*OPS, "residual", "aux", *GROUPS]) or "layers such as `conv(...)`, `pool(...)`, `residual(...)`")
                bound = self.bind_args(op, d.args, ctx, d.span, partial=True)
                for key in bound:
                    first = set_here.setdefault((op, key), d)
                    if first is not d:
                        self.fail(f"`with` sets `{key}` of `{op}` twice", d.span, ctx,
                                  labels=[Label(first.span, "first set here")],
                                  hint=f"give `{key}` once; a nested `with` may override it")
                defaults.setdefault(op, {}).update(bound)
        return self.lower_body(stmt.body, cur, ctx.but(defaults=defaults))

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
        if tap in self.merged_into:
            kind, span = self.merged_into[tap]
            self.fail(f"`{stmt.tap}` labels a `{kind}` whose inputs were merged into a flat `{kind}`: "
                      "no tensor is left to tap", stmt.tap_span, ctx, labels=[Label(span, "merged here")],
                      hint="tap a layer before it, or drop `flat = yes` from the join that merged it")
        scope = self.claim(ctx.scope, stmt.name, stmt.span, ctx)
        self.claim_aux_name(stmt, ctx)  # across scopes too (one scope's names are claimed above)
        out = self.lower_body(stmt.body, tap, ctx.but(scope=scope, aux=stmt.name))
        self.sink.graph["aux"].append({"name": stmt.name, "weight": attrs["weight"], "tap": tap, "output": out})
