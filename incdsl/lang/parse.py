"""Text -> AST. Lark's tree is shaped by the grammar; a Transformer builds the AST.

Lark's exceptions are translated into diagnostics here: users never see terminal names.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.grammar import Rule
from lark.lexer import TerminalDef
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from . import syntax as s
from ..diagnostics import TAB_WIDTH, IncdslError, Span, did_you_mean, error, normalize_newlines


MAX_DIGITS = 100

# Lark's LALR parser takes about 15 us a token here (a 700 KB spec of one long `choice`: 4 s),
# so the files of one spec may hold at most this many tokens together, counted before parsing:
# 8 MiB of `1,1,1,...` would otherwise parse for minutes. The largest shipped spec has ~1,500.
MAX_TOKENS = 200_000
# Close to the grammar's tokens (a number such as 1.5e-3 may count as two): names, numbers,
# strings, comments (not counted), operators of two characters, any other character.
_TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_]\w*|\.?[0-9][\w.]*|->|//|[=!<>]=|\S')


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


GRAMMAR_OPTIONS = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True)
_CACHE_MAGIC = b"incdsl-grammar-cache 1"


def cache_dir() -> str | None:
    """Where the analysed grammar is kept between processes: `$XDG_CACHE_HOME/incdsl` or
    `~/.cache/incdsl`, a directory only its owner may write; None where there is none such."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "incdsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
    except OSError:
        return None
    private = not info.st_mode & 0o022 and (not hasattr(os, "getuid") or info.st_uid == os.getuid())
    return folder if private and os.access(folder, os.W_OK) else None


def _grammar_key(grammar: str) -> str:
    """What the analysed tables depend on: the grammar, our options, the Lark and Python versions."""
    what = f"{grammar}\0{sorted(GRAMMAR_OPTIONS.items())}\0{lark.__version__}\0{sys.version_info[:2]}"
    return hashlib.sha256(what.encode("utf-8")).hexdigest()


# Lark's own cache is a pickle, unpickled before its hash is checked: a planted file would run
# code. Ours is JSON (which cannot), behind a header holding the grammar's key and the sha256
# of the JSON, both checked before it is decoded; anything else is ignored and rebuilt.

def _to_json(x):
    if isinstance(x, tuple):
        return {"t": [_to_json(v) for v in x]}
    if isinstance(x, list):
        return [_to_json(v) for v in x]
    if isinstance(x, dict):
        return {"d": [[_to_json(k), _to_json(v)] for k, v in x.items()]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot cache a {type(x).__name__}")


def _from_json(x):
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    if isinstance(x, dict):
        if set(x) == {"t"}:
            return tuple(_from_json(v) for v in x["t"])
        return {_from_json(k): _from_json(v) for k, v in x["d"]}
    return x


def _cache_bytes(parser: Lark, key: str) -> bytes:
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data = dict(data, options={k: v for k, v in data["options"].items() if k != "postlex"})
    body = json.dumps(_to_json({"data": data, "memo": memo}), separators=(",", ":")).encode("utf-8")
    return b" ".join([_CACHE_MAGIC, key.encode(), hashlib.sha256(body).hexdigest().encode()]) + b"\n" + body


def _from_cache_bytes(blob: bytes, key: str) -> Lark | None:
    """The parser stored in `blob`, or None unless its header names `key` and the body's hash."""
    header, _, body = blob.partition(b"\n")
    if header != b" ".join([_CACHE_MAGIC, key.encode(), hashlib.sha256(body).hexdigest().encode()]):
        return None
    try:
        stored = _from_json(json.loads(body))
        return Lark._load_from_dict(stored["data"], stored["memo"], postlex=_SpecIndenter())
    except Exception:  # verified but unusable (another Lark's layout): rebuild
        return None


def build_parser(folder: str | None) -> Lark:
    """The LALR parser of grammar.lark, its tables read from `folder` when a valid cache is there.

    Building the tables takes a few tens of ms, most of a short `incdsl check`; loading them
    about half that. A missing, stale, corrupt or tampered cache file is rebuilt, never run.
    """
    grammar = resources.files("incdsl.lang").joinpath("grammar.lark").read_text(encoding="utf-8")
    key = _grammar_key(grammar)
    path = os.path.join(folder, f"grammar-{key[:16]}.json") if folder else None
    if path:
        try:
            with open(path, "rb") as f:
                parser = _from_cache_bytes(f.read(4 << 20), key)
            if parser is not None:
                return parser
        except OSError:
            pass
    parser = Lark(grammar, postlex=_SpecIndenter(), **GRAMMAR_OPTIONS)
    if path:
        _save_cache(path, _cache_bytes(parser, key))
    return parser


def _save_cache(path: str, blob: bytes) -> None:
    """Write the cache whole or not at all (another process may be reading it)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".grammar-", dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return build_parser(cache_dir())


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _body(items) -> tuple:
    return tuple(items)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str, text: str = ""):
        super().__init__()
        self.file = file
        self.text = text

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

    def not_(self, meta, c):
        return s.Not(c[0], self.sp(meta))

    def compare(self, meta, c):
        return s.BinOp(str(c[1]), c[0], c[2], self.sp(meta))

    or_ = _bin("or")
    and_ = _bin("and")
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

    def range_arg(self, meta, c):
        span = self.sp(meta)
        return s.Arg("pos", s.RangeLit(c[0], c[1], span), span)

    def stride_arg(self, meta, c):
        # `pad = k / 2` reads as `pad = k` and stride 2 (a layer's arguments are atoms), which
        # looks like a division; a stride is written `/2`, so `/` then a space is refused
        if self.text[meta.start_pos + 1: meta.start_pos + 2] in (" ", "\t"):
            span = Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)
            raise error("a space after `/`: in a layer's arguments `/` is the stride, not a division", span,
                        hint="write the stride as `/2`, or divide in parentheses: `pad = (k / 2)`")
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

    def join_stmt(self, meta, c):
        kind, args, label, body = c
        return s.Composite(kind, tuple(args or ()), str(label) if label else None, body, self.sp(meta),
                           _tok_span(self.file, label) if label else None)

    def join_kind(self, meta, c):
        return str(c[0])

    def branch_stmt(self, meta, c):
        source, label, body = c
        return s.BranchStmt(str(label) if label else None, body, self.sp(meta),
                            _tok_span(self.file, label) if label else None,
                            str(source) if source else None, _tok_span(self.file, source) if source else None)

    def branch_source(self, meta, c):
        return c[0]

    def shortcut_stmt(self, meta, c):
        return s.ShortcutStmt(c[0], self.sp(meta))

    def repeat_stmt(self, meta, c):
        count, var, label, body = c
        return s.RepeatStmt(count, str(var) if var else None, str(label) if label else None, body, self.sp(meta))

    def let_stmt(self, meta, c):
        start, value = self.sp(meta), c[1]  # the span ends with the value, not the line break
        span = Span(self.file, start.line, start.col, value.span.end_line, value.span.end_col)
        return s.LetStmt(str(c[0]), value, span, _tok_span(self.file, c[0]))

    def if_stmt(self, meta, c):
        return s.IfStmt(tuple(x for x in c if x is not None), self.sp(meta))

    def require_stmt(self, meta, c):
        cond, message = c
        start, end = self.sp(meta), _tok_span(self.file, message) if message else cond.span
        span = Span(self.file, start.line, start.col, end.end_line, end.end_col)  # not the line break
        return s.RequireStmt(cond, str(message)[1:-1] if message else None, span)

    def if_clause(self, meta, c):
        return s.IfClause("if", c[0], c[1], self.sp(meta))

    def elif_clause(self, meta, c):
        return s.IfClause("elif", c[0], c[1], self.sp(meta))

    def else_clause(self, meta, c):
        return s.IfClause("else", None, c[0], self.sp(meta))

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
    "STRING": "a quoted string", "_NL": "end of line", "_INDENT": "an indented block",
    "_DEDENT": "end of the indented block", "COLON": "`:`", "LPAR": "`(`", "RPAR": "`)`",
    "COMMA": "`,`", "EQUAL": "`=`", "SLASH": "`/`", "__ANON_0": "`->`", "$END": "end of file",
    "MINUS": "`-`", "PLUS": "`+`", "STAR": "`*`", "DOT": "`.`", "COMPARE": "a comparison such as `==`",
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


def _character_hint(ch: str) -> str | None:
    if ch in "[]{}":
        return "`3x3` is a kernel, `/2` a stride, `V` or `S` a padding"
    if ch.isnumeric():
        return "numbers are written with the ASCII digits 0-9"
    return None


# How each statement is written, for errors inside its header (before its `:`).
_FORMS = {
    "concat": "`concat:` or `concat as name:`, its `branch:` statements indented below",
    "add": "`add:` or `add(act = relu):`, its `branch:` statements indented below",
    "residual": "`residual:` or `residual(scale = 0.17, act = relu):`, its branch indented below",
    "branch": "`branch:` or `branch as name:`, its layers after the `:` or indented below",
    "shortcut": "`shortcut:`, its layers after the `:` or indented below",
    "repeat": "`repeat 3:` or `repeat n as i:`, its body after the `:` or indented below "
              "(in a join, `branch:` statements indented below)",
    "with": "`with conv(bn = 0.001, act = relu):`, its body indented below",
    "aux": "`aux head(weight = 0.3) from label:`, its layers indented below",
    "if": "`if n > 1:`, its statements after the `:` or indented below, then `elif ...:` or `else:`",
    "elif": "`elif n > 1:` right after an `if` clause, at the same indentation",
    "else": "`else:` right after an `if` or `elif` clause, at the same indentation",
    "let": "`let d = 16 + alpha * (i + 1) // n`, one name and one expression",
    "require": "`require width > 0` or `require width > 0, \"width must be positive\"`, a condition "
               "and an optional quoted message",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _statement_form(text: str, line: int, col: int):
    """For an error in the header of a statement (`repeat 3 branch:`, `residual scale=0.2:`,
    `if n > 1` with no `:`): a function of the generic message giving (message, hint, column
    to point at instead, or None) that names the statement and shows how it is written; None
    elsewhere."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    before = lines[line - 1][:max(col - 1, 0)]
    words = [(m.start(), m.group()) for m in _WORD.finditer(before.split("#")[0])]
    keyword = next(((at, w) for at, w in reversed(words) if w in _FORMS), None)
    if keyword is None or ":" in before[keyword[0]:] or "->" in before[keyword[0]:]:
        return None
    at, word = keyword
    if before[:at].strip() not in ("",) and not before[:at].rstrip().endswith(":"):
        return None  # a word inside an expression or a layer's arguments, not a statement
    if word in ("else", "elif") and at == len(before) - len(before.lstrip()) and _no_if_before(lines, line, at):
        return lambda msg: (f"`{word}` without an `if` before it", f"write {_FORMS[word]}", at + 1)
    return lambda msg: (f"{msg} in `{word}`", f"`{word}` is written {_FORMS[word]}", None)


def misplaced_statement(line_text: str, col: int) -> tuple[str, str, int] | None:
    """For a statement written where only a layer fits: after `->` in a chain (`conv 3x3 32 ->
    repeat 2: b`) or, on the same line, after a `:` that opens an inline body (`branch: repeat 2:
    b`). `col` is the column of the error (at or after the statement's word). Returns (message,
    hint, column of the word), or None where no statement word follows the last `->` or `:`
    before `col`. The parser reads such a word as a layer's name (`repeat 2: b` even parses:
    a layer `repeat` with the channel range `2:b`), so this serves both its errors and the
    lowering's."""
    before = line_text[:max(col - 1, 0)].split("#")[0]
    found = None
    for m in re.finditer(r"(->|:)[ \t]*([A-Za-z_][A-Za-z0-9_]*)\b", before):
        if m.group(2) in _FORMS and m.end(2) <= len(before):
            found = m
    if found is None or "->" in before[found.end(2):]:
        return None
    after, word = found.group(1), found.group(2)
    written = f"`{word}` is written {_FORMS[word]}"
    if after == "->":
        return (f"`{word}` cannot follow `->` in a chain",
                f"`{word}` starts a statement of its own: end the chain before it and begin a new line; {written}",
                found.start(2) + 1)
    if not before[:found.start(1)].strip() or not _WORD.search(before[:found.start(1)]):
        return None  # `repeat` at the start of a statement's own body (`if x: ...`): not this case
    return (f"`{word}` cannot follow `:` on the same line",
            f"after `:` a line holds only a chain of layers; put the `{word}` on a line of its own, indented "
            f"below; {written}", found.start(2) + 1)


# The words that open a statement with a body (`WORD ...:`), at the top level and inside one.
_TOP_WORDS = ("block", "network", "include")
_BODY_WORDS = ("concat", "add", "residual", "mean", "max", "multiply", "gate", "branch", "shortcut", "repeat",
               "with", "aux", "if", "elif", "else")


def _misspelt_statement(text: str, line: int, col: int, tok: Token, expected) -> tuple[str, int, str] | None:
    """For a word where a statement's word belongs (`conact:`, `netwrk n:`): (the word, its
    column, a hint naming the statements it may mean), or None. Inside a body, `WORD:` or
    `WORD(...):` can only be a statement with a body; at the top level, only `block`,
    `network` and `include` start a line."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    source = lines[line - 1].split("#")[0]
    if tok.type == "COLON" and "->" not in source[:col - 1]:
        m = re.fullmatch(r"([ \t]*)([A-Za-z_][A-Za-z0-9_]*)[ \t]*(\(.*\))?[ \t]*", source[:col - 1])
        words = _BODY_WORDS
    elif tok.type == "NAME" and {"BLOCK", "NETWORK", "INCLUDE"} & set(expected):
        m = re.match(r"()([A-Za-z_][A-Za-z0-9_]*)", source)
        words = _TOP_WORDS
    else:
        return None
    if m is None or m.group(2) in words:
        return None
    word, at = m.group(2), len(m.group(1)) + 1
    listed = ", ".join(f"`{w}`" for w in words[:-1]) + f" or `{words[-1]}`"
    where = "only " + listed + " take a body after `:`" if words is _BODY_WORDS else \
        "a line at the top level starts with " + listed
    return word, at, did_you_mean(word, words) or where


def _no_if_before(lines: list[str], line: int, indent: int) -> bool:
    """Whether the statement before line `line` at indentation `indent` is not an `if` clause."""
    for raw in reversed(lines[:line - 1]):
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(raw) - len(stripped)
        if depth < indent:
            return True
        if depth == indent:
            return not re.match(r"(if|elif)\b", stripped)
    return True


def normalize(text: str) -> str:
    """The text as the parser and the diagnostics read it: without a byte-order mark, and with
    every line ending in \\n. A line ends at \\n, \\r\\n or a lone \\r (as in Python source);
    nothing else (form feed, U+2028, ...) ends a line."""
    return normalize_newlines(text[1:] if text.startswith("\ufeff") else text)


def end_position(text: str) -> tuple[int, int]:
    """(line, col) just after the last character of `text`, a final line break not counted."""
    body = text[:-1] if text.endswith("\n") else text
    last = body.rfind("\n")
    return body.count("\n") + 1, len(body) - last


def _syntax_error(exc: UnexpectedInput, file: str, text: str) -> IncdslError:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        span = Span(file, line, col, line, col + 1)
        shown = repr(ch)[1:-1] if not ch.isprintable() else ch
        return error(f"unexpected character `{shown}`", span, hint=_character_hint(ch))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            line, col = end_position(text)
        elif tok.type == "_INDENT":
            line, col = _next_code_line(text, line)
            return error("unexpected indentation", Span(file, line, col, line, col + 1),
                         notes=_tab_note(text, line),
                         hint="indent a line further only as the body of a statement that ends in `:` "
                              "(`block`, `network`, `concat`, `branch`, `residual`, `repeat`, `if`, ...)")
        span = Span(file, line, col, line, col + max(1, len(str(tok)) if tok.type not in ("_NL", "$END", "_INDENT", "_DEDENT") else 1))
        if set(exc.expected or ()) == {"_INDENT"} or _after_colon_newline(exc):  # `concat:` and no body
            found = "end of file" if tok.type == "$END" else "a line that is not indented further"
            return error(f"expected an indented body after `:`, found {found}", span,
                         hint="indent the statements of the body below the line that ends in `:`")
        misspelt = _misspelt_statement(text, line, col, tok, exc.expected or ())
        if misspelt is not None:
            word, at, hint = misspelt
            return error(f"unknown statement `{word}`", Span(file, line, at, line, at + len(word)), hint=hint)
        msg = f"unexpected {_describe_token(tok)}"
        exp = _expected(exc.expected or exc.accepts or ())
        notes = [f"expected {exp}"] if exp else []
        hint = None
        if tok.type in ("_NL", "$END") and "COLON" not in (exc.expected or ()):
            hint = _EXAMPLE
        lines = text.split("\n")
        misplaced = misplaced_statement(lines[line - 1], col) if 1 <= line <= len(lines) else None
        # After `->` the word was read as a layer's name; after `:`, a `let` or `require` (no
        # `:` of its own) cannot be the header of a statement with a body.
        if misplaced is not None and ("->" in misplaced[0] or misplaced[0].split("`")[1] not in _BODY_WORDS):
            msg, hint, at = misplaced
            word = msg.split("`")[1]
            return error(msg, Span(file, line, at, line, at + len(word)), hint=hint)
        form = _statement_form(text, line, col)
        if form is not None:
            msg, hint, keyword_col = form(msg)
            if keyword_col is not None:  # a clause out of place: point at its word; what was expected is noise
                span, notes = Span(file, line, keyword_col, line, keyword_col + len(msg.split("`")[1])), []
        return error(msg, span, notes=notes, hint=hint)
    if isinstance(exc, UnexpectedEOF):
        line, col = end_position(text)
        span = Span(file, line, col, line, col + 1)
        return error("unexpected end of file", span, hint=_EXAMPLE)
    return error(str(exc).splitlines()[0], Span(file, line, col, line, col + 1))


def count_tokens(text: str, file: str, used: int = 0) -> int:
    """The number of tokens in `text` (comments aside), when with the `used` tokens of the spec's
    other files they stay within `MAX_TOKENS`.

    Raises:
        IncdslError: at the first token past the limit, before any parsing.
    """
    tokens = _TOKEN.findall(text)
    count = len(tokens) - sum(1 for t in tokens if t[0] == "#")
    if used + count <= MAX_TOKENS:
        return count
    seen = used
    for m in _TOKEN.finditer(text):
        if m.group()[0] != "#":
            seen += 1
            if seen > MAX_TOKENS:
                break
    pos = m.start()
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    notes = [f"the files read before this one hold {used:,} of them"] if used else []
    raise IncdslError(error(
        f"spec too large: more than {MAX_TOKENS:,} tokens", Span(file, line, col, line, col + len(m.group())),
        notes=notes, hint="the largest shipped spec has about 1,500; write long option lists as `range(...)` "
                          "and long stacks of layers with `repeat`").diagnostics, {file: text})


def parse(text: str, file: str = "<spec>") -> s.Module:
    """Parse one source text into a `Module`.

    Raises:
        IncdslError: on any syntax error, with its location.
    """
    text = normalize(text)
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
        return _ToAst(file, text).transform(tree)  # recursive: one level of Python stack per level of tree
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
    lines = text.split("\n")
    for number in range(after + 1, len(lines) + 1):
        stripped = lines[number - 1].lstrip(" \t")
        if stripped and not stripped.startswith("#"):
            return number, len(lines[number - 1]) - len(stripped) + 1
    return after, 1


def _tab_note(text: str, line: int) -> list[str]:
    """A note when line `line` is indented with a tab, which counts to the next multiple of 8 columns."""
    lines = text.split("\n")
    raw = lines[line - 1] if 1 <= line <= len(lines) else ""
    if "\t" in raw[:len(raw) - len(raw.lstrip(" \t"))]:
        return [f"this line is indented with a tab, which counts to the next multiple of {TAB_WIDTH} columns"]
    return []


def _dedent_error(exc: DedentError, file: str, text: str) -> IncdslError:
    # Lark does not say where; find the first line whose indentation matches no open level.
    levels = [0]
    for number, raw in enumerate(text.split("\n"), 1):
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw[: len(raw) - len(stripped)].expandtabs(8))
        if indent > levels[-1]:
            levels.append(indent)
            continue
        inner = levels[-1]
        while indent < levels[-1]:
            inner = levels.pop()
        if indent != levels[-1]:
            col = len(raw) - len(stripped) + 1
            return error("indentation does not match any outer level", Span(file, number, col, number, col + 1),
                         notes=_tab_note(text, number),
                         hint=f"indent it by {inner} columns, as the lines above it, or by {levels[-1]}, "
                              "as the statement that holds them")
    return error("inconsistent indentation", Span(file, 1, 1, 1, 2))
