"""The concrete spec of a point, as text.

Each choice's source text (``choice(64, 96, 128)``, or ``choice(a, b)`` up to its closing
parenthesis) is replaced by the chosen option's text; everything else, comments and layout
included, is kept. Included files are inlined: each `include` line becomes a comment and
the included file's text (its choices substituted too) follows the main file, each file
once, in the order `load_program` reads them. The result loads on its own from any
directory, which is what `incdsl sample` needs to write samples beside an index. Parameter
overrides and another input shape given to the space (`--set`, `--input`) are written into
the network's header and `input` line.
"""
from __future__ import annotations

import os

from ..lang import syntax as s
from ..diagnostics import escape_char
from ..lang.values import show
from .choices import offsets


class SpecWriter:
    """Writes the concrete spec of any point of one space (the include lines are found once)."""

    def __init__(self, space):
        self.space = space
        self.sources = space.program.sources
        self.includes: dict[str, list] = {}
        self.order = self._order(space.file)

    def _include_lines(self, file: str) -> list[tuple[int, int, str, str]]:
        """(start, end offset, path as written, file it names) of each include line of a file,
        as `load_program` resolved them."""
        if file not in self.includes:
            text = self.sources[file]
            starts = offsets(text)
            found = []
            for inc, target in self.space.program.includes.get(file, ()):
                a = starts[inc.span.line - 1] + inc.span.col - 1
                b = text.find("\n", a)
                found.append((a, len(text) if b < 0 else b, inc.path, target))
            self.includes[file] = found
        return self.includes[file]

    def _order(self, main: str) -> list[str]:
        order: list[str] = []

        def visit(file: str):
            order.append(file)
            for _, _, _, target in self._include_lines(file):
                if target not in order and target in self.sources:
                    visit(target)

        visit(main)
        return order

    def header(self, indices) -> str:
        space = self.space
        lines = [f"# A point of the search space `{space.name}` ({_one_line(os.path.basename(space.file))}), written by incdsl.",
                 "# Choices (name = option, at file:line:col of the space):"]
        width = max((len(c.name) for c in space.choices), default=0)
        for c, i in zip(space.choices, indices):
            lines.append(f"#   {c.name:<{width}} = {_one_line(c.options[i])}  ({_one_line(c.id)})")
        return "\n".join(lines) + "\n\n"

    def overrides(self) -> list[tuple[str, int, int, str]]:
        """(file, start, end, text) edits that write the space's parameter overrides and input
        shape into the network, so a concrete spec means what its point was costed as."""
        space, net = self.space, self.space.program.network
        text = self.sources[net.span.file]
        starts = offsets(text)

        def at(span):
            return starts[span.line - 1] + span.col - 1, starts[span.end_line - 1] + span.end_col - 1

        out = []
        for p in net.params:
            if p.name in space.params:
                out.append((net.span.file, *at(p.span), f"{p.name} = {show(space.params[p.name])}"))
        first = net.body[0] if net.body else None
        if space.input_shape is not None and isinstance(first, s.InputStmt):
            out.append((net.span.file, *at(first.shape.span), "x".join(map(str, space.input_shape))))
        return out

    def render(self, indices, header: bool = True) -> str:
        """Spec text of the point `indices` (see the module docstring)."""
        edits: dict[str, list] = {}
        fixed = self.overrides()
        for site, i in zip(self.space._sites, indices):
            file, (a, b) = site.node.span.file, site.extent
            if not any(f == file and x <= a and b <= y for f, x, y, _ in fixed):  # an overridden parameter's choice
                edits.setdefault(file, []).append((a, b, site.texts[i]))
        for file, a, b, new in fixed:
            edits.setdefault(file, []).append((a, b, new))
        parts = [self.header(indices)] if header else []
        base = os.path.dirname(self.space.file) or "."
        for n, file in enumerate(self.order):
            file_edits = edits.get(file, []) + [(a, b, f'# include "{path}": inlined below')
                                                for a, b, path, _ in self._include_lines(file)]
            body = _apply(self.sources[file], file_edits)
            if n:
                parts.append(f"\n# ---- inlined from {_one_line(os.path.relpath(file, base).replace(os.sep, '/'))} ----\n")
            parts.append(body if body.endswith("\n") else body + "\n")
        return "".join(parts)


def _one_line(name: str) -> str:
    """A file name fit for a comment: a line break in it would end the comment and start spec text."""
    return "".join(ch if ch.isprintable() else escape_char(ch) for ch in name)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, new) edit made, keeping continuation lines aligned.

    A line continued inside parentheses and aligned at or after the opening parenthesis
    (``mixed_a(b0 = choice(64, 96),\n        p = ...)``) moves with that parenthesis when an
    edit before it on its line changes length; hanging indents stay where they are.
    """
    edits = sorted(edits)
    out: list[str] = []
    col = 0  # column of the output's current line
    line_start = 0  # offset of the original's current line
    parens: list[tuple[int, int]] = []  # (original column, output column) of each open parenthesis
    pos, k, n = 0, 0, len(text)
    while pos < n:
        if k < len(edits) and pos == edits[k][0]:
            new = edits[k][2]
            out.append(new)
            col += len(new)
            pos = edits[k][1]
            k += 1
            continue
        ch = text[pos]
        if ch == "#" or ch == '"':
            stop = text.find("\n", pos) if ch == "#" else text.find('"', pos + 1) + 1
            stop = n if stop <= 0 else stop
            if k < len(edits):
                stop = min(stop, edits[k][0])
            out.append(text[pos:stop])
            col += stop - pos
            pos = stop
            continue
        if ch == "\n":
            out.append(ch)
            pos += 1
            line_start, col = pos, 0
            if parens:
                indent = len(text[pos:]) - len(text[pos:].lstrip(" "))
                orig, now = parens[-1]
                if indent > orig and text[pos + indent: pos + indent + 1] not in ("\n", ""):
                    out.append(" " * max(1, indent + now - orig))
                    col = max(1, indent + now - orig)
                    pos += indent
            continue
        if ch == "(":
            parens.append((pos - line_start, col))
        elif ch == ")" and parens:
            parens.pop()
        out.append(ch)
        col += 1
        pos += 1
    return "".join(out)
