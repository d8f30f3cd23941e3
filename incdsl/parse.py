"""Text -> AST. Lark's tree is shaped by the grammar; a Transformer builds the AST.

Lark's exceptions are translated into diagnostics here: users never see terminal names.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from . import syntax as s
from .diagnostics import IncdslError, Span, error


MAX_DIGITS = 100


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


def _cache_file() -> str | bool:
    """Where Lark keeps the analysed grammar between processes: a file in the user's cache dir.

    Building the LALR tables takes ~0.1 s, most of a short `incdsl check`; loading them takes
    a few ms. Lark names the file by nothing but our choice and verifies a hash of the grammar,
    options and Lark version stored inside it, so a stale file is rebuilt, never used. Not in
    the shared temp dir: the file is a pickle, and only its owner should be able to write it.
    Returns False (no caching) where no cache dir can be made.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "incdsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not os.access(folder, os.W_OK):
        return False
    return os.path.join(folder, f"grammar-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.cache")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("incdsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", postlex=_SpecIndenter(), propagate_positions=True,
                maybe_placeholders=True, cache=_cache_file())


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _body(items) -> tuple:
    return tuple(items)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def sp(self, meta) -> Span:
        return _span(self.file, meta)

    # expressions
    def _whole(self, digits: str, meta) -> int:
        # A sane limit well before Python's own (4300 digits, a ValueError): no size in a
        # network needs more than a few digits, and huge literals only make huge messages.
        if len(digits) > MAX_DIGITS:
            raise error(f"number too large: {len(digits)} digits", self.sp(meta),
                        hint=f"numbers have at most {MAX_DIGITS} digits")
        return int(digits)

    def int(self, meta, c):
        return s.Num(self._whole(str(c[0]), meta), self.sp(meta))

    def float(self, meta, c):
        return s.Num(float(c[0]), self.sp(meta))

    def dims(self, meta, c):
        return s.DimsLit(tuple(self._whole(v, meta) for v in str(c[0]).split("x")), self.sp(meta))

    def name(self, meta, c):
        return s.Name(str(c[0]), self.sp(meta))

    def attr(self, meta, c):
        return s.Attr(str(c[0]), str(c[1]), self.sp(meta))

    def func(self, meta, c):
        return s.Call(str(c[0]), tuple(a for a in c[1:] if a is not None), self.sp(meta))

    def tuple(self, meta, c):
        return s.TupleLit(tuple(a for a in c if a is not None), self.sp(meta))

    def neg(self, meta, c):
        return s.Neg(c[0], self.sp(meta))

    def _bin(op):
        def rule(self, meta, c):
            return s.BinOp(op, c[0], c[1], self.sp(meta))
        return rule

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    floordiv = _bin("//")
    mod = _bin("%")

    # arguments
    def pos_arg(self, meta, c):
        return s.Arg("pos", c[0], self.sp(meta))

    def kw_arg(self, meta, c):
        return s.Arg("kw", c[1], self.sp(meta), str(c[0]), _tok_span(self.file, c[0]))

    def stride_arg(self, meta, c):
        return s.Arg("stride", c[0], self.sp(meta))

    def call_args(self, meta, c):
        return tuple(a for a in c if a is not None)

    def label(self, meta, c):
        return c[0]

    def label_named(self, meta, c):
        return c[0]

    # statements
    def element(self, meta, c):
        name_tok, call_args, *rest = c
        label_tok = rest.pop() if rest else None
        args = tuple(call_args or ()) + tuple(rest)
        return s.Element(str(name_tok), args, str(label_tok) if label_tok else None, self.sp(meta),
                         _tok_span(self.file, name_tok), _tok_span(self.file, label_tok) if label_tok else None)

    def chain(self, meta, c):
        return s.Chain(tuple(c), self.sp(meta))

    def suite(self, meta, c):
        return _body(c)

    def inline_suite(self, meta, c):
        return _body(c)

    def input_stmt(self, meta, c):
        return s.InputStmt(c[0], self.sp(meta))

    def _composite(kind):
        def rule(self, meta, c):
            args, label, body = c
            return s.Composite(kind, tuple(args or ()), str(label) if label else None, body, self.sp(meta),
                               _tok_span(self.file, label) if label else None)
        return rule

    concat_stmt = _composite("concat")
    add_stmt = _composite("add")
    residual_stmt = _composite("residual")

    def branch_stmt(self, meta, c):
        label, body = c
        return s.BranchStmt(str(label) if label else None, body, self.sp(meta),
                            _tok_span(self.file, label) if label else None)

    def shortcut_stmt(self, meta, c):
        return s.ShortcutStmt(c[0], self.sp(meta))

    def repeat_stmt(self, meta, c):
        count, var, label, body = c
        return s.RepeatStmt(count, str(var) if var else None, str(label) if label else None, body, self.sp(meta))

    def scope_default(self, meta, c):
        return s.ScopeDefault(str(c[0]), tuple(c[1] or ()), self.sp(meta))

    def with_stmt(self, meta, c):
        return s.WithStmt(tuple(c[:-1]), c[-1], self.sp(meta))

    def aux_stmt(self, meta, c):
        name, args, tap, body = c
        return s.AuxStmt(str(name), tuple(args or ()), str(tap) if tap else None, body, self.sp(meta),
                         _tok_span(self.file, tap) if tap else None)

    # top level
    def param(self, meta, c):
        return s.Param(str(c[0]), c[1], self.sp(meta))

    def param_list(self, meta, c):
        return tuple(p for p in c if p is not None)

    def _definition(kind):
        def rule(self, meta, c):
            name, params, body = c
            return s.Definition(kind, str(name), tuple(params or ()), body, self.sp(meta), _tok_span(self.file, name))
        return rule

    network_def = _definition("network")
    block_def = _definition("block")

    def include(self, meta, c):
        return s.Include(str(c[0])[1:-1], self.sp(meta))

    def start(self, meta, c):
        includes = tuple(i for i in c if isinstance(i, s.Include))
        defs = tuple(d for d in c if isinstance(d, s.Definition))
        return s.Module(self.file, includes, defs)


# Human names for the terminals Lark may report as expected.
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "DIMS": "a size such as `3x3`",
    "STRING": "a quoted path", "_NL": "end of line", "_INDENT": "an indented block",
    "_DEDENT": "end of the indented block", "COLON": "`:`", "LPAR": "`(`", "RPAR": "`)`",
    "COMMA": "`,`", "EQUAL": "`=`", "SLASH": "`/`", "__ANON_0": "`->`", "$END": "end of file",
    "MINUS": "`-`", "PLUS": "`+`", "STAR": "`*`", "DOT": "`.`",
}

_EXAMPLE = ("a spec looks like:\n"
            "        network tiny(classes = 10):\n"
            "            input 3x32x32\n"
            "            conv 3x3 32 S -> maxpool 2x2 /2\n"
            "            gap -> flatten -> linear classes")


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    if tok.type in ("_INDENT", "_DEDENT"):
        return "change of indentation"
    return f"`{tok}`"


def _terminal_name(name: str) -> str:
    """How a terminal reads in a message: `->` for punctuation and keywords, never `__ANON_1`."""
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return f"`{name.lower()}`"
    return f"`{pattern.value}`" if pattern.type == "str" else f"`{name.lower()}`"


def _expected(expected) -> str:
    names = sorted({_terminal_name(t) for t in expected},
                   key=lambda n: (n.startswith("`") and len(n) <= 4, n))
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _after_colon_newline(exc: UnexpectedToken) -> bool:
    """Whether the parser had just read `:` and the end of its line (a body must follow)."""
    stack = getattr(getattr(exc, "state", None), "value_stack", None) or []
    return [getattr(v, "type", None) for v in stack[-2:]] == ["COLON", "_NL"]


def _syntax_error(exc: UnexpectedInput, file: str, text: str) -> IncdslError:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        span = Span(file, line, col, line, col + 1)
        shown = repr(ch)[1:-1] if not ch.isprintable() else ch
        hint = "`3x3` is a kernel, `/2` a stride, `V` or `S` a padding" if ch in "[]{}" else None
        return error(f"unexpected character `{shown}`", span, hint=hint)
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        elif tok.type == "_INDENT":
            line, col = _next_code_line(text, line)
            return error("unexpected indentation", Span(file, line, col, line, col + 1),
                         hint="indent only the body of a `block`, `network`, `concat`, `branch`, `repeat`, `with` or `aux`")
        span = Span(file, line, col, line, col + max(1, len(str(tok)) if tok.type not in ("_NL", "$END", "_INDENT", "_DEDENT") else 1))
        if set(exc.expected or ()) == {"_INDENT"} or _after_colon_newline(exc):  # `concat:` and no body
            found = "end of file" if tok.type == "$END" else "a line that is not indented further"
            return error(f"expected an indented body after `:`, found {found}", span,
                         hint="indent the statements of the body below the line that ends in `:`")
        msg = f"unexpected {_describe_token(tok)}"
        exp = _expected(exc.expected or exc.accepts or ())
        notes = [f"expected {exp}"] if exp else []
        hint = None
        if tok.type in ("_NL", "$END") and "COLON" not in (exc.expected or ()):
            hint = _EXAMPLE
        return error(msg, span, notes=notes, hint=hint)
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        return error("unexpected end of file", span, hint=_EXAMPLE)
    return error(str(exc).splitlines()[0], Span(file, line, col, line, col + 1))


def parse(text: str, file: str = "<spec>") -> s.Module:
    """Parse one source text into a `Module`.

    Raises:
        IncdslError: on any syntax error, with its location.
    """
    if "\x00" in text:
        pos = text.index("\x00")
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise IncdslError(error("spec contains a NUL byte", Span(file, line, col, line, col + 1)).diagnostics, {file: text})
    if not text.endswith("\n"):
        text += "\n"
    tree = None
    try:
        tree = _parser().parse(text)  # LALR: no recursion, however deep the text nests
        return _ToAst(file).transform(tree)  # recursive: one level of Python stack per level of tree
    except UnexpectedInput as exc:
        err = _syntax_error(exc, file, text)
    except DedentError as exc:
        err = _dedent_error(exc, file, text)
    except RecursionError:
        err = _too_deep(tree, file)
    except VisitError as exc:
        if isinstance(exc.orig_exc, RecursionError):
            err = _too_deep(tree, file)
        elif isinstance(exc.orig_exc, IncdslError):
            err = exc.orig_exc  # a rule's complaint about the text (a huge number)
        else:
            raise exc.orig_exc  # a bug in a transformer rule, never the user's fault
    err.sources[file] = text
    raise err


def _too_deep(tree, file: str) -> IncdslError:
    """The error for a text nested past Python's stack (thousands of parentheses or operators in
    one expression, hundreds of nested bodies), placed at its deepest point, found without recursion."""
    deepest, depth = tree, 0
    stack = [(tree, 1)] if tree is not None else []
    while stack:
        node, d = stack.pop()
        if d > depth and not node.meta.empty:
            deepest, depth = node, d
        stack.extend((c, d + 1) for c in node.children if isinstance(c, Tree))
    span = _span(file, deepest.meta) if deepest is not None and not deepest.meta.empty else None
    return error(f"the spec nests too deeply here ({depth} levels)", span,
                 hint="split long expressions and deep nesting into block parameters or blocks")


def _next_code_line(text: str, after: int) -> tuple[int, int]:
    """(line, col) of the first non-blank, non-comment line after line `after`."""
    lines = text.splitlines()
    for number in range(after + 1, len(lines) + 1):
        stripped = lines[number - 1].lstrip(" \t")
        if stripped and not stripped.startswith("#"):
            return number, len(lines[number - 1]) - len(stripped) + 1
    return after, 1


def _dedent_error(exc: DedentError, file: str, text: str) -> IncdslError:
    # Lark does not say where; find the first line whose indentation matches no open level.
    levels = [0]
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw[: len(raw) - len(stripped)].expandtabs(8))
        if indent > levels[-1]:
            levels.append(indent)
            continue
        while indent < levels[-1]:
            levels.pop()
        if indent != levels[-1]:
            col = len(raw) - len(stripped) + 1
            return error("indentation does not match any outer level", Span(file, number, col, number, col + 1),
                         hint=f"indent it by {levels[-1]} columns, like the block it belongs to")
    return error("inconsistent indentation", Span(file, 1, 1, 1, 2))
