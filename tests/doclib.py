"""The fenced code blocks of a Markdown page and the `<!-- key: value -->` markers just above
each (see test_readme's docstring), for the tests that run the README's and docs' blocks."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MARKER = re.compile(r"<!--\s*([\w-]+)\s*:\s*(.*?)\s*-->")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    markers: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln.strip() and not ln.startswith("#")), "")
        return f"L{self.line}-{self.lang}-{first[:40]}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the markers in the comments right above each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        markers, j = {}, i - 1
        while j >= 0 and MARKER.fullmatch(lines[j].strip()):
            key, value = MARKER.fullmatch(lines[j].strip()).groups()
            markers[key] = value
            j -= 1
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        blocks.append(Block(m.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1, markers))
        i = end + 1
    return blocks


def fenced(page: str, lang: str) -> list[str]:
    """The texts of a page's blocks fenced as ```LANG."""
    return [b.text for b in readme_blocks(page) if b.lang == lang]
