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

    def render(self) -> str:
        return "\n".join(render(d, self.sources) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


def error(message: str, span: Span | None = None, *, notes: Iterable[str] = (), hint: str | None = None,
          labels: Iterable[Label] = ()) -> IncdslError:
    """Build an IncdslError holding one error diagnostic (raise it at the call site)."""
    return IncdslError(Diagnostic("error", message, span, tuple(notes), hint, tuple(labels)))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidates to a misspelt name, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


def _display_col(line: str, col: int) -> int:
    """Column as displayed, tabs expanded to TAB_WIDTH (1-based in, 1-based out)."""
    return len(line[: col - 1].expandtabs(TAB_WIDTH)) + 1


def render(diag: Diagnostic, sources: Mapping[str, str]) -> str:
    head = f"{diag.severity}: {diag.message}"
    span = diag.span
    if span is None:
        out = [head]
    else:
        line, col = span.line, span.col
        text = sources.get(span.file)
        src_line = None
        if text is not None:
            lines = text.splitlines()
            if 1 <= line <= len(lines):
                src_line = lines[line - 1]
        shown_col = _display_col(src_line, col) if src_line is not None else col
        out = [f"{span.file}:{line}:{shown_col}: {head}"]
        if src_line is not None:
            gutter = " " * len(str(line))
            expanded = src_line.expandtabs(TAB_WIDTH).rstrip()
            end = span.end_col if span.end_line == line else len(src_line) + 1
            width = max(1, _display_col(src_line, max(end, col + 1)) - shown_col)
            width = min(width, max(1, len(expanded) - shown_col + 1))
            out += [f"{gutter} |", f"{line} | {expanded}", f"{gutter} | {' ' * (shown_col - 1)}{'^' * width}"]
    for label in diag.labels:
        out += _label_lines(label, sources, len(str(span.line)) if span else 0)
    if diag.notes or diag.hint:
        pad = " " * (len(str(span.line)) if span else 0)
        if span is not None:
            out.append(f"{pad} |")
        out += [f"{pad} = note: {n}" for n in diag.notes]
        if diag.hint:
            out.append(f"{pad} = hint: {diag.hint}")
    return "\n".join(out)


def _label_lines(label: Label, sources: Mapping[str, str], width: int) -> list[str]:
    """A secondary place: its location, its source line, and the label under a ``-`` line."""
    span = label.span
    text = sources.get(span.file)
    lines = text.splitlines() if text is not None else []
    if not 1 <= span.line <= len(lines):
        return [f"{' ' * width} = note: {label.message}: {span}"]
    src_line = lines[span.line - 1]
    width = max(width, len(str(span.line)))
    gutter = " " * width
    col = _display_col(src_line, span.col)
    expanded = src_line.expandtabs(TAB_WIDTH).rstrip()
    end = span.end_col if span.end_line == span.line else len(src_line) + 1
    underline = max(1, min(_display_col(src_line, max(end, span.col + 1)) - col, len(expanded) - col + 1))
    return [f"{gutter} |", f"{gutter}::: {span.file}:{span.line}:{col}", f"{gutter} |",
            f"{str(span.line).rjust(width)} | {expanded}", f"{gutter} | {' ' * (col - 1)}{'-' * underline} {label.message}"]
