"""Finding the choice points of a spec and substituting a decision for each.

A *space* is a spec with choices; the core language does not know them, so they are found
and resolved here, on the AST (`incdsl.lang.syntax`), before lowering:

* ``choice(64, 96, 128)`` wherever an expression goes: layer and call arguments, `with`
  defaults, parameter defaults (``width = choice(0.75, 1.0)``), repeat counts
  (``repeat choice(2, 4, 7): inception_b``). An option is any expression; a point puts the
  chosen option's expression in place of the call.
* ``choice(range(32, 129, 16))``: an integer range, Python's meaning (the stop is left out),
  here 32, 48, ..., 128. Ranges and plain options may be mixed: ``choice(0, range(8, 33, 8))``.
* ``choice(inception_a, inception_b(n = ...))`` as a chain element: a choice between blocks
  (or layers). An option is a name or a call with positional arguments,
  ``choice(inception_a, inception_b(192))``; a label (``as mixed_5b``) stays on the chosen one.
  (Where a spec defines a block named `choice`, a `choice` element calls that block.)

Every choice in the text is one choice point, decided once per point:

* a choice inside a block definition is shared by every instance of that block;
* a choice at a call site (``mixed_a(n = choice(64, 96))``) belongs to that call site, so
  two call sites decide independently: this is how to get per-instance choices;
* a repeat runs its body's choices once: ``repeat 4: mixed_a(n = choice(64, 96))`` gives
  four identical modules (write four call sites for four decisions).

Only definitions the network can reach (through calls and block choices) contribute choices.
A choice's *id* is its position, ``file:line:col``, the file relative to the space's
directory; its *ordinal* is its index in `Space.choices` (sorted by file, line, column).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from ..lang import syntax as s
from ..lang.walk import expr_children, iter_elements, iter_exprs, iter_statements
from ..diagnostics import IncdslError, Span, error
from ..lang.values import EvalError, evaluate

MAX_OPTIONS = 100_000  # options of one choice (a range), a guard against typos such as range(0, 10**9)
# Options of all choices together, and choices: each option costs a few hundred bytes, and
# `incdsl check` looks at every option at least once.
MAX_TOTAL_OPTIONS = 200_000
MAX_CHOICES = 10_000


@dataclass(frozen=True)
class Choice:
    """One choice point.

    id: ``file:line:col``, stable while the text before it is unchanged.
    ordinal: its position in `Space.choices`.
    name: a readable name from its context (``mixed_a.b0``, ``width``, ``repeat@23``), unique.
    kind: ``"value"`` (an expression) or ``"block"`` (a chain element).
    options: the source text of each option, as a concrete spec will spell it.
    span: where the `choice(...)` is.
    """
    id: str
    ordinal: int
    name: str
    kind: str
    options: tuple[str, ...]
    span: Span

    def __len__(self) -> int:
        return len(self.options)


@dataclass(frozen=True)
class Site:
    """A choice's AST node, what replaces it under each option, and where to edit the text."""
    node: object  # s.Call or s.Element
    replacements: tuple  # one AST node per option
    texts: tuple[str, ...]  # one source text per option
    start: tuple[int, int]  # (line, col) of the text to replace
    end: tuple[int, int]  # (line, col), exclusive
    extent: tuple[int, int] = (0, 0)  # the same as offsets into the file's text


def _fail(message: str, span: Span | None, sources: dict, hint: str | None = None) -> IncdslError:
    exc = error(message, span, hint=hint)
    exc.sources.update(sources)
    return exc


def offsets(text: str) -> list[int]:
    """Offset of the start of each line (index 0 is line 1)."""
    out = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            out.append(i + 1)
    return out


def line_starts(sources: dict, file: str, lines_cache: dict) -> list[int]:
    """`offsets` of a file, computed once (each call would scan the whole file)."""
    if file not in lines_cache:
        lines_cache[file] = offsets(sources[file])
    return lines_cache[file]


def source_text(sources: dict, span: Span, lines_cache: dict) -> str:
    text = sources[span.file]
    starts = line_starts(sources, span.file, lines_cache)
    return text[starts[span.line - 1] + span.col - 1: starts[span.end_line - 1] + span.end_col - 1]


def _after_close_paren(text: str, pos: int) -> int:
    """Offset just past the `)` closing an argument list, scanning from `pos` (after the last argument)."""
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == ")":
            return i + 1
        if ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        i += 1
    return pos


class Finder:
    """Walks the reachable definitions of a program and collects every choice site."""

    def __init__(self, program, main_file: str):
        self.program = program
        self.sources = program.sources
        self.base = os.path.dirname(main_file) if main_file and not main_file.startswith("<") else ""
        self.lines: dict = {}
        self.sites: list[tuple[Site, str]] = []  # (site, context name)
        self.owner: dict[int, tuple] = {}  # id(site node) -> (definition kind, name)
        self.prefix = ""  # names of choices inside a block start with `block/`
        self.options = 0  # options of the choices found so far

    # --- ids and text
    def rel(self, file: str) -> str:
        if file.startswith("<"):
            return file
        return os.path.relpath(file, self.base or ".").replace(os.sep, "/")

    def text(self, span: Span) -> str:
        return source_text(self.sources, span, self.lines)

    # --- reachability
    def reachable(self) -> list[s.Definition]:
        """The network, then the blocks it reaches, in program order."""
        blocks = self.program.blocks
        seen, todo = set(), [self.program.network]
        while todo:
            d = todo.pop()
            for name in _called_names(d.body):
                if name in blocks and name not in seen:
                    seen.add(name)
                    todo.append(blocks[name])
        return [self.program.network] + [d for name, d in blocks.items() if name in seen]

    # --- walking
    def run(self) -> None:
        for d in self.reachable():
            owner = (d.kind, d.name)
            self.prefix = ""
            for p in d.params:
                if p.default is not None:
                    self.expr(p.default, p.name if d.kind == "network" else f"{d.name}.{p.name}", owner)
            self.prefix = "" if d.kind == "network" else f"{d.name}/"
            self.body(d.body, owner)

    def body(self, stmts, owner: tuple) -> None:
        for st in iter_statements(stmts):
            self.stmt(st, owner)

    def stmt(self, st, owner: tuple) -> None:
        """The expressions of one statement itself; `body` visits the statements nested in it."""
        if isinstance(st, s.Chain):
            for el in st.elements:
                self.element(el, owner)
        elif isinstance(st, s.InputStmt):
            self.expr(st.shape, "input", owner)
        elif isinstance(st, s.Composite):
            self.args(st.args, st.label or st.kind, owner)
        elif isinstance(st, s.RepeatStmt):
            self.expr(st.count, _repeat_name(st), owner)
        elif isinstance(st, s.WithStmt):
            for d in st.defaults:
                self.args(d.args, f"with.{d.op}", owner)
        elif isinstance(st, s.AuxStmt):
            self.args(st.args, st.name, owner)
        elif isinstance(st, s.LetStmt):
            self.expr(st.value, st.name, owner)
        elif isinstance(st, s.IfClause) and st.cond is not None:
            self.expr(st.cond, st.kind, owner)
        elif isinstance(st, s.RequireStmt):
            self.expr(st.cond, "require", owner)

    def args(self, args, context: str, owner: tuple) -> None:
        for i, a in enumerate(args):
            self.expr(a.value, f"{context}.{a.name or i}" if a.kind != "stride" else f"{context}.stride", owner)

    def element(self, el: s.Element, owner: tuple) -> None:
        if el.name != "choice" or "choice" in self.program.blocks:  # a block may be named `choice`
            self.args(el.args, el.label or el.name, owner)
            return
        if not el.args:
            raise _fail("`choice` needs at least one option", el.span, self.sources,
                        hint="list blocks to choose between: `choice(inception_a, inception_b)`")
        text = self.sources[el.name_span.file]
        starts = line_starts(self.sources, el.name_span.file, self.lines)
        after = starts[el.name_span.end_line - 1] + el.name_span.end_col - 1
        if not text[after:].lstrip(" \t").startswith("("):
            raise _fail("a block choice lists its options in parentheses", el.span, self.sources,
                        hint="write `choice(inception_a, inception_b)`")
        replacements, texts = [], []
        for a in el.args:
            v = a.value
            if a.kind != "pos" or not isinstance(v, (s.Name, s.Call)) or (isinstance(v, s.Call) and v.func == "range"):
                raise _fail("a block choice lists blocks or layers", a.span, self.sources,
                            hint="write `choice(inception_a, inception_b(192))`; "
                                 "keyword arguments go in each block's defaults")
            if isinstance(v, s.Name):
                replacements.append(replace(el, name=v.id, args=(), name_span=v.span))
            else:
                self.no_nested(v.args)
                replacements.append(replace(el, name=v.func, name_span=v.span,
                                            args=tuple(s.Arg("pos", x, x.span) for x in v.args)))
            texts.append(self.text(v.span))
        self.unique(texts, el.args)
        start, end = self.element_extent(el)
        self.add(Site(el, tuple(replacements), tuple(texts), start, end), el.label or f"choice@{el.span.line}", owner)

    def element_extent(self, el: s.Element) -> tuple[tuple[int, int], tuple[int, int]]:
        """`choice(a, b)` without the label: from the name to the closing parenthesis."""
        last = el.args[-1].span
        text = self.sources[last.file]
        starts = line_starts(self.sources, last.file, self.lines)
        pos = _after_close_paren(text, starts[last.end_line - 1] + last.end_col - 1)
        line = text.count("\n", 0, pos)
        return (el.name_span.line, el.name_span.col), (line + 1, pos - starts[line] + 1)

    def expr(self, e, context: str, owner: tuple) -> None:
        if isinstance(e, s.Call) and e.func == "choice":
            self.value_choice(e, context, owner)
        else:
            for a in expr_children(e):
                self.expr(a, context, owner)

    def value_choice(self, call: s.Call, context: str, owner: tuple) -> None:
        if not call.args:
            raise _fail("`choice` needs at least one option", call.span, self.sources,
                        hint="list the options: `choice(64, 96, 128)` or `choice(range(32, 129, 16))`")
        replacements, texts, keys = [], [], []
        for a in call.args:
            if isinstance(a, s.Call) and a.func == "range":
                values = self.expand_range(a)
                self.count_options(len(replacements) + len(values), a.span)
                for v in values:
                    replacements.append(s.Num(v, a.span))
                    texts.append(str(v))
                    keys.append(a)
                continue
            self.no_nested((a,))
            replacements.append(a)
            text = " ".join(self.text(a.span).split())
            texts.append(f"({text})" if isinstance(a, (s.BinOp, s.Neg, s.Not)) else text)
            keys.append(a)
        if len(replacements) > MAX_OPTIONS:
            raise _fail(f"`choice` has {len(replacements):,} options, more than {MAX_OPTIONS:,}", call.span,
                        self.sources)
        self.unique(texts, keys)
        start, end = (call.span.line, call.span.col), (call.span.end_line, call.span.end_col)
        self.add(Site(call, tuple(replacements), tuple(texts), start, end), context, owner)

    def count_options(self, more: int, span: Span) -> None:
        """Refuse a space past `MAX_TOTAL_OPTIONS` options or `MAX_CHOICES` choices, before building them."""
        if self.options + more > MAX_TOTAL_OPTIONS:
            raise _fail(f"the choices of this space have more than {MAX_TOTAL_OPTIONS:,} options in all", span,
                        self.sources, hint="narrow the ranges: `range(32, 129, 16)` has 7 options")
        if len(self.sites) >= MAX_CHOICES:
            raise _fail(f"this space has more than {MAX_CHOICES:,} choices", span, self.sources)

    def expand_range(self, call: s.Call) -> list[int]:
        if not 1 <= len(call.args) <= 3:
            raise _fail("`range` takes a stop, or a start, a stop and a step", call.span, self.sources,
                        hint="`choice(range(32, 129, 16))` gives 32, 48, ..., 128 (the stop is left out)")
        values = []
        for a in call.args:
            try:
                v = evaluate(a, {}, None)
            except EvalError:
                v = None
            if not isinstance(v, int) or isinstance(v, bool):
                raise _fail("`range` bounds must be integer constants", a.span, self.sources)
            values.append(v)
        if len(values) == 3 and values[2] == 0:
            raise _fail("`range` step must not be zero", call.args[2].span, self.sources)
        r = range(*values)
        count = _range_length(r)  # len() fails past sys.maxsize: range(1, 10**30)
        if count == 0:
            raise _fail(f"`range({', '.join(map(str, values))})` is empty", call.span, self.sources,
                        hint="the stop is left out: range(32, 129, 16) is 32, 48, ..., 128")
        if count > MAX_OPTIONS:
            raise _fail(f"`range` gives {count:,} options, more than {MAX_OPTIONS:,}", call.span, self.sources)
        return list(r)

    def no_nested(self, exprs) -> None:
        for e in exprs:
            for node in iter_exprs(e):
                if isinstance(node, s.Call) and node.func == "choice":
                    raise _fail("choices cannot be nested", node.span, self.sources,
                                hint="list every combination as an option of one `choice`")

    def unique(self, texts, nodes) -> None:
        seen = {}
        for text, node in zip(texts, nodes):
            key = text.replace(" ", "")
            if key in seen:
                raise _fail(f"option `{text}` is listed twice", getattr(node, "span", None), self.sources,
                            hint="each option of a choice must differ, or the space holds the same network twice")
            seen[key] = node

    def add(self, site: Site, context: str, owner: tuple) -> None:
        self.count_options(len(site.replacements), site.node.span)
        self.options += len(site.replacements)
        context = self.prefix + context
        file = site.node.span.file
        starts = line_starts(self.sources, file, self.lines)
        site = replace(site, extent=(starts[site.start[0] - 1] + site.start[1] - 1,
                                     starts[site.end[0] - 1] + site.end[1] - 1))
        self.sites.append((site, context))
        self.owner[id(site.node)] = owner


def _range_length(r: range) -> int:
    if r.step > 0:
        return max(0, (r.stop - r.start + r.step - 1) // r.step)
    return max(0, (r.start - r.stop - r.step - 1) // -r.step)


def _repeat_name(st: s.RepeatStmt) -> str:
    """`mixed_a.repeat` for `repeat N: mixed_a(...)`, else the label or `repeat@LINE`."""
    body = st.body
    if st.label:
        return f"{st.label}.repeat"
    if len(body) == 1 and isinstance(body[0], s.Chain) and len(body[0].elements) == 1:
        el = body[0].elements[0]
        return f"{el.label or el.name}.repeat"
    return f"repeat@{st.span.line}"


def _called_names(stmts) -> set[str]:
    """Names of every element in a body (block calls among them), block-choice options included."""
    names = set()
    for el in iter_elements(stmts):
        names.add(el.name)
        if el.name == "choice":
            for a in el.args:
                if isinstance(a.value, s.Name):
                    names.add(a.value.id)
                elif isinstance(a.value, s.Call):
                    names.add(a.value.func)
    return names


def find_choices(program, main_file: str) -> tuple[list[Choice], list[Site], dict[int, tuple]]:
    """Every choice of the reachable definitions, sorted by (file order, line, column).

    Returns the choices, their sites (same order) and the owning definition (kind, name) of each site node.
    Raises:
        IncdslError: for a malformed choice (no options, a repeated option, a nested choice...).
    """
    finder = Finder(program, main_file)
    finder.run()
    order = {f: i for i, f in enumerate(program.sources)}
    found = sorted(finder.sites, key=lambda sc: (order.get(sc[0].node.span.file, len(order)), *sc[0].start))
    choices, sites, names = [], [], {}
    for ordinal, (site, context) in enumerate(found):
        name = context
        if name in names:
            names[name] += 1
            name = f"{context}#{names[context]}"
        else:
            names[name] = 1
        sp = site.node.span
        kind = "block" if isinstance(site.node, s.Element) else "value"
        choices.append(Choice(f"{finder.rel(sp.file)}:{site.start[0]}:{site.start[1]}", ordinal, name, kind,
                              site.texts, sp))
        sites.append(site)
    return choices, sites, finder.owner
