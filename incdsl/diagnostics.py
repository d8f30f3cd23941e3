"""Source spans, diagnostics and their rendering.

A `Diagnostic` is plain data; `render()` is the one place that turns it into the
text users read (GNU first line, rustc-style body)::

    specs/v4.inc:14:9: error: concat branches disagree in spatial size
       |
    14 |         branch: conv 3x3 96 /2 V
       |         ^^^^^^^^^^^^^^^^^^^^^^^^
       |
       = note: the other branches give 35x35
       = hint: stride 1 with padding S keeps 35x35

A diagnostic may point at other places too (`Label`s: "first defined here"), each shown
with its own source line, underlined with ``-``.
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Mapping

TAB_WIDTH = 8


@dataclass(frozen=True)
class Span:
    """A region of one source file; lines and columns start at 1, end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Label:
    """A secondary place a diagnostic points at, and what it is: ``first defined here``."""

    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "warning"
    message: str
    span: Span | None = None
    notes: tuple[str, ...] = ()
    hint: str | None = None
    labels: tuple[Label, ...] = ()


class IncdslError(Exception):
    """The one exception type for spec errors. Carries one or more diagnostics."""

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic], sources: Mapping[str, str] | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__(self.diagnostics[0].message if self.diagnostics else "error")

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span if self.diagnostics else None

    def render(self, program: str | None = None) -> str:
        """The diagnostics as text; `program` (the CLI passes "incdsl") heads those without a location."""
        return "\n".join(render(d, self.sources, program) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self):  # Exception's pickles `args` (the message): rebuild from the diagnostics instead
        return type(self), (self.diagnostics, self.sources), self.__dict__


def error(message: str, span: Span | None = None, *, notes: Iterable[str] = (), hint: str | None = None,
          labels: Iterable[Label] = ()) -> IncdslError:
    """Build an IncdslError holding one error diagnostic (raise it at the call site)."""
    return IncdslError(Diagnostic("error", message, span, tuple(notes), hint, tuple(labels)))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidates to a misspelt name, or None. A candidate that differs
    only in case comes first (`s` for `S`: difflib finds no likeness in one letter)."""
    candidates = sorted(set(candidates))
    same = [c for c in candidates if c.lower() == name.lower() and c != name]
    close = (same + [c for c in difflib.get_close_matches(name, candidates, n=3, cutoff=0.6) if c not in same])[:3]
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


def _display_col(line: str, col: int) -> int:
    """Column as displayed, tabs expanded to TAB_WIDTH (1-based in, 1-based out)."""
    return len(line[: col - 1].expandtabs(TAB_WIDTH)) + 1


# --- what reaches the terminal ----------------------------------------------------------------
#
# A spec, a file name or an include path may hold ESC and other control characters, bidi
# overrides, or a line of megabytes. The renderer escapes every character that does not print
# (`\x1b`, `\u202e`) and shows at most WINDOW columns of a source line around the caret.

WINDOW = 200  # columns of a source line shown around the caret
MAX_LINE = 400  # characters of one line of a message, note or hint
ELLIPSIS = "\u2026"


def normalize_newlines(text: str) -> str:
    """The one line-ending rule of incdsl: a line ends at \\n, \\r\\n or a lone \\r, nothing else
    (form feed, \\x85 and U+2028 are characters within a line)."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def escape_char(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def terminal_safe(text: str, newlines: bool = True) -> str:
    """`text` with every character that does not print escaped, line breaks kept (unless not
    `newlines`: a file name); each line cut to MAX_LINE characters."""
    lines = []
    for line in text.split("\n") if newlines else [text]:
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + ELLIPSIS
        if not line.isprintable():
            line = "".join(ch if ch.isprintable() or ch == "\t" else escape_char(ch) for ch in line)
        lines.append(line)
    return "\n".join(lines)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _cells(text: str, at: int) -> list[tuple[str, int]]:
    """(shown text, display width) of each character, the first at display column `at` (0-based)."""
    out = []
    for ch in text:
        if ch == "\t":
            shown = " " * (TAB_WIDTH - at % TAB_WIDTH)
            width = len(shown)
        elif not ch.isprintable():
            shown = escape_char(ch)
            width = len(shown)
        else:
            shown, width = ch, _char_width(ch)
        out.append((shown, width))
        at += width
    return out


def _excerpt(line: str, col: int, end: int) -> tuple[str, int, int]:
    """(shown line, caret offset, caret width): at most about WINDOW columns of `line` around
    characters col..end (1-based, end exclusive), with an ellipsis where it is cut."""
    n = len(line)
    first = min(col - 1, n)
    lo, hi = max(0, first - WINDOW), min(n, first + 2 * WINDOW)  # bounded work on any line
    cells = _cells(line[lo:hi], len(line[:lo].expandtabs(TAB_WIDTH)))
    filled = len(cells)  # cells up to the last that is not blank, where the line ends here
    while hi == n and filled and not cells[filled - 1][0].strip():
        filled -= 1
    k = first - lo  # the caret's first cell
    after = sum(w for _, w in cells[k:filled])
    left_budget = WINDOW // 2 if after > WINDOW // 2 else WINDOW - after
    left = k
    while left > 0 and cells[left - 1][1] <= left_budget:
        left -= 1
        left_budget -= cells[left][1]
    right_budget = WINDOW - sum(w for _, w in cells[left:k])
    right = k
    while right < filled and cells[right][1] <= right_budget:
        right_budget -= cells[right][1]
        right += 1
    head = ELLIPSIS if lo + left > 0 else ""
    tail = ELLIPSIS if right < filled or hi < n else ""
    shown = head + "".join(t for t, _ in cells[left:right]) + tail
    shown = shown if tail else shown.rstrip()
    stop = min(max(end - 1 - lo, k + 1), right)
    return shown, len(head) + sum(w for _, w in cells[left:k]), max(1, sum(w for _, w in cells[k:stop]))


def _source_line(sources: Mapping[str, str], span: Span) -> str | None:
    text = sources.get(span.file)
    if text is None:
        return None
    lines = normalize_newlines(text).split("\n")
    if text.endswith(("\n", "\r")):
        lines.pop()
    return lines[span.line - 1] if 1 <= span.line <= len(lines) else None


def render(diag: Diagnostic, sources: Mapping[str, str], program: str | None = None) -> str:
    """The diagnostic as users read it; every piece of it safe to print on a terminal.

    Every first line starts with where the problem is: a file position, or, for a problem with
    none (a file that cannot be read), the program's name when one is given, as compilers do
    (`incdsl: error: no such spec file: x.inc`), so that the CLI's errors all read alike."""
    head = terminal_safe(f"{diag.severity}: {diag.message}")
    span = diag.span
    if span is None:
        out = [f"{program}: {head}" if program else head]
    else:
        line, col = span.line, span.col
        src_line = _source_line(sources, span)
        shown_col = _display_col(src_line, col) if src_line is not None else col
        out = [f"{terminal_safe(span.file, newlines=False)}:{line}:{shown_col}: {head}"]
        if src_line is not None:
            gutter = " " * len(str(line))
            end = span.end_col if span.end_line == line else len(src_line) + 1
            shown, offset, width = _excerpt(src_line, col, max(end, col + 1))
            out += [f"{gutter} |", f"{line} | {shown}", f"{gutter} | {' ' * offset}{'^' * width}"]
    for label in diag.labels:
        out += _label_lines(label, sources, len(str(span.line)) if span else 0)
    if diag.notes or diag.hint:
        pad = " " * (len(str(span.line)) if span else 0)
        if span is not None:
            out.append(f"{pad} |")
        out += [f"{pad} = note: {terminal_safe(n)}" for n in _shown_notes(diag.notes)]
        if diag.hint:
            out.append(f"{pad} = hint: {terminal_safe(diag.hint)}")
    return "\n".join(out)


MAX_NOTES = 20  # a label used by 20,000 block instances made a 20,000-line message


def _shown_notes(notes: tuple) -> list:
    """The notes to print: all, or the first and last `MAX_NOTES // 2` and how many lie between
    (a chain of block calls keeps both ends: the error's place and the outermost call)."""
    if len(notes) <= MAX_NOTES:
        return list(notes)
    half = MAX_NOTES // 2
    return [*notes[:half], f"{ELLIPSIS} {len(notes) - 2 * half:,} more notes like these", *notes[-half:]]


def _label_lines(label: Label, sources: Mapping[str, str], width: int) -> list[str]:
    """A secondary place: its location, its source line, and the label under a ``-`` line."""
    span = label.span
    src_line = _source_line(sources, span)
    if src_line is None:
        return [f"{' ' * width} = note: {terminal_safe(label.message)}: {terminal_safe(str(span))}"]
    width = max(width, len(str(span.line)))
    gutter = " " * width
    col = _display_col(src_line, span.col)
    end = span.end_col if span.end_line == span.line else len(src_line) + 1
    shown, offset, underline = _excerpt(src_line, span.col, max(end, span.col + 1))
    return [f"{gutter} |", f"{gutter}::: {terminal_safe(span.file, newlines=False)}:{span.line}:{col}", f"{gutter} |",
            f"{str(span.line).rjust(width)} | {shown}",
            f"{gutter} | {' ' * offset}{'-' * underline} {terminal_safe(label.message)}"]
