"""Spec text -> `Program`: the parsed files of one spec, includes resolved, blocks collected.

Includes are read through `incdsl.io.Includes` (relative to the includer or the include path,
never outside the spec's directory tree or that path); block names and parameters are
checked here, before lowering.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..diagnostics import IncdslError, Label, Span, error
from ..io import IncludeError, Includes
from ..lang import syntax as s
from ..lang.parse import count_tokens, normalize, parse
from ..lang.values import WORDS
from ..ops.table import LAYER_OPS, SYMBOLS

CONTROL_WORDS = {"let", "if", "elif", "else", "and", "or", "not", "require"}  # words of `let`, `if`, `require`, conditions
KEYWORDS = {"include", "network", "block", "input", "concat", "add", "residual", "mean", "max", "multiply", "gate",
            "branch", "shortcut", "repeat", "with", "aux", "from", "as", "named", "take"} | CONTROL_WORDS
RESERVED = WORDS | SYMBOLS | {"in"}  # words that are values, never names


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
    tokens = [0]  # of the files parsed so far: together they stay within `MAX_TOKENS`

    def visit(module: s.Module, stack: tuple[tuple[str, str], ...]):  # ((real path, name), ...)
        modules.append(module)
        found[module.file] = []
        for inc in module.includes:
            name, real = _resolve(includes, module.file, inc, sources)
            found[module.file].append((inc, name))
            if any(real == r for r, _ in stack):
                raise spec_error(f"include cycle: `{inc.path}` is already being included", inc.span, sources,
                           notes=[" -> ".join([n for _, n in stack] + [name])])
            if real in done:
                continue
            if len(stack) >= MAX_INCLUDE_DEPTH:
                raise spec_error(f"includes nest more than {MAX_INCLUDE_DEPTH} files deep", inc.span, sources)
            done.add(real)
            sub_text = normalize(_read_include(includes, name, real, inc, sources))
            sources[name] = sub_text
            sub = _parse_included(sub_text, name, inc, sources, tokens)
            for d in sub.definitions:
                if d.kind == "network":
                    raise spec_error(f"included file defines network `{d.name}`", d.name_span, sources,
                               hint="a library holds only `block` definitions")
            visit(sub, stack + ((real, name),))

    main = _parse(text, file, sources, tokens)
    real = _realpath(file)
    done.add(real)
    visit(main, ((real, os.path.normpath(file)),))  # `./a.inc` is `a.inc` in a cycle
    blocks: dict[str, s.Definition] = {}
    networks = []
    for module in modules:
        for d in module.definitions:
            if d.kind == "network":
                networks.append(d)
                _check_params(d, sources)  # the same rules as a block's: `--set` and the body read them alike
                continue
            if d.name in LAYER_OPS or d.name in KEYWORDS or d.name in RESERVED:
                raise spec_error(f"`{d.name}` is a built-in name and cannot name a block", d.name_span, sources)
            if d.name in blocks:
                first = blocks[d.name].name_span
                raise spec_error(f"block `{d.name}` is defined twice", d.name_span, sources,
                           labels=[Label(first, "first defined here")])
            blocks[d.name] = d
            _check_params(d, sources)
    if len(networks) > 1:
        raise spec_error("a spec defines one network", networks[1].name_span, sources,
                   labels=[Label(networks[0].name_span, f"`{networks[0].name}` is defined here")])
    return Program(networks[0] if networks else None, blocks, sources, found)



def _realpath(file: str) -> str:
    try:
        return os.path.realpath(file)
    except ValueError:  # a name given to `load(text, file=...)` holding a NUL: no file has it
        return file


def _resolve(includes: Includes, includer: str, inc: s.Include, sources) -> tuple[str, str]:
    try:
        return includes.resolve(includer, inc.path)
    except IncludeError as exc:
        raise spec_error(exc.message, inc.span, sources, notes=exc.notes, hint=exc.hint) from None


def _read_include(includes: Includes, name: str, real: str, inc: s.Include, sources) -> str:
    try:
        return includes.read(name, real)
    except IncludeError as exc:
        if exc.line is None:
            raise spec_error(exc.message, inc.span, sources, notes=exc.notes, hint=exc.hint) from None
        # a bad byte: its place in the included file (whose text is not shown), and where it was included
        raise spec_error(exc.message, Span(name, exc.line, exc.col, exc.line, exc.col + 1), sources,
                   notes=[f"included at {inc.span}"], hint="save the file as UTF-8") from None


def _parse_included(text: str, name: str, inc: s.Include, sources, tokens: list) -> s.Module:
    """Parse an included file. One that fails at its first word, or holds a NUL byte, is not a
    spec at all (a stray path, a file of some other kind): say so at the `include`, and show
    none of its text."""
    try:
        tokens[0] += count_tokens(text, name, tokens[0])
        return parse(text, name)
    except IncdslError as exc:
        span = exc.span
        if span is not None and span.file == name and ((span.line, span.col) <= first_token(text) or "\x00" in text):
            sources.pop(name, None)
            raise spec_error(f"included file `{inc.path}` is not an incdsl spec", inc.span, sources,
                       notes=[f"{name}:{span.line}:{span.col}: it does not start with `include`, `block` or `network`"],
                       hint="include only spec files (.inc) holding `block` definitions") from None
        exc.sources.update(sources)
        raise


_BLANK_LINES = re.compile(r"(?:[ \t\f]*(?:#[^\n]*)?\n)*[ \t\f]*")


def first_token(text: str) -> tuple[int, int]:
    """(line, col) of the first character of `text` that is not blank or in a comment."""
    pos = _BLANK_LINES.match(text).end()
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _parse(text, file, sources, tokens: list) -> s.Module:
    try:
        tokens[0] += count_tokens(text, file, tokens[0])
        return parse(text, file)
    except IncdslError as exc:
        exc.sources.update(sources)
        raise


def _check_params(d: s.Definition, sources):
    seen = {}
    for p in d.params:
        if p.name in seen:
            raise spec_error(f"parameter `{p.name}` is declared twice", p.span, sources,
                       labels=[Label(seen[p.name], "first declared here")])
        if p.name in RESERVED or p.name in CONTROL_WORDS:
            raise spec_error(f"`{p.name}` is a reserved word and cannot name a parameter", p.span, sources)
        seen[p.name] = p.span


def spec_error(message, span, sources, notes=(), hint=None, labels=()) -> IncdslError:
    exc = error(message, span, notes=notes, hint=hint, labels=labels)
    exc.sources.update(sources)
    return exc

