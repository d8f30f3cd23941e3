"""One namespace for generated Python: legal, unique identifiers, and literals for everything else.

Text from a spec or a user (file names, network, block, label and parameter names, a
`--class-name`) reaches generated source in exactly two ways:

* as an identifier, through `Namespace.create_name` (or `legal_identifier`), which makes it a
  legal Python name that collides with nothing the scope defines or reads, as torch.fx's
  `_Namespace.create_name` does;
* as a value, through `literal`, which writes any string, number or container of them as a
  Python expression that evaluates back to it: strings are escaped as `repr` escapes them, so
  no quote, backslash or control character ends a string early; `inf` and `nan` become
  ``float('inf')`` and ``float('nan')``.

Pure Python, no torch.
"""
from __future__ import annotations

import builtins
import keyword
import math
import unicodedata
from typing import Iterable

PYTHON_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
BUILTINS = frozenset(dir(builtins))


def identifier(text: str) -> str:
    """A Python identifier spelled like `text`: characters that cannot be in one become `_`.

    The text is NFKC-normalised first, as the Python parser normalises identifiers, so the
    name written is the name Python binds. A name starting with `_` or a digit (or an empty
    one) gets an `m` prefix: generated names are never private, dunder or numeric.
    """
    text = unicodedata.normalize("NFKC", text)
    name = _prefixed("".join(c if ("a" + c).isidentifier() else "_" for c in text))
    if unicodedata.normalize("NFKC", name) != name:  # a mark now follows another letter and composes
        name = _prefixed("".join(c if c.isascii() else "_" for c in name))
    return name


def _prefixed(name: str) -> str:
    return "m" + name if not name[:1].isidentifier() or name.startswith("_") else name


def legal_identifier(text: str, avoid: Iterable[str] = ()) -> str:
    """`identifier(text)`, with `_` appended while it is a Python keyword or in `avoid`."""
    name = identifier(text)
    avoid = frozenset(avoid)
    while name in PYTHON_KEYWORDS or name in avoid:
        name += "_"
    return name


class Namespace:
    """The names of one Python scope: each handed out once, each legal.

    Parameters:
        taken: names the scope already binds (they are never handed out).
        avoid: words that may not be used as names in this scope (Python keywords always
            are): a candidate that is one gets `_` appended (`class` -> `class_`).

    A candidate already handed out or taken gets a number instead (`Block` -> `Block_2`).

    Example:
        >>> ns = Namespace(taken={"F"}, avoid={"forward"})
        >>> ns.create_name("F"), ns.create_name("forward"), ns.create_name("lambda")
        ('F_2', 'forward_', 'lambda_')
    """

    def __init__(self, taken: Iterable[str] = (), avoid: Iterable[str] = ()):
        self._taken = set(taken)
        self._avoid = frozenset(avoid)

    def __contains__(self, name: str) -> bool:
        return name in self._taken

    @property
    def taken(self) -> frozenset:
        """The names bound so far."""
        return frozenset(self._taken)

    def create_name(self, candidate: str) -> str:
        """A legal identifier like `candidate`, unused in this scope; it is now used."""
        name = legal_identifier(candidate, self._avoid)
        if name in self._taken:
            k = 2
            while f"{name}_{k}" in self._taken or f"{name}_{k}" in self._avoid:
                k += 1
            name = f"{name}_{k}"
        self._taken.add(name)
        return name

    def free(self, name: str) -> bool:
        """Whether `name` could be bound here as it is: an identifier, not a keyword, not taken or avoided."""
        return (name.isidentifier() and unicodedata.normalize("NFKC", name) == name
                and name not in PYTHON_KEYWORDS and name not in self._avoid and name not in self._taken)

    def take(self, name: str) -> str:
        """Use exactly `name` (check `free` first); returns it."""
        if not self.free(name):
            raise ValueError(f"{name!r} cannot be used here")
        self._taken.add(name)
        return name


def literal(value, *, quote: str = "'", doc: bool = False) -> str:
    """Python source that evaluates to `value`: a str, int, float, bool, None, or a tuple, list
    or dict of them.

    Strings are written as `repr` writes them; `quote='"'` prefers double quotes where that
    needs no escape. `doc=True` writes a string that needs no escape between triple double
    quotes, as a docstring (any other string still as `repr`).
    """
    if isinstance(value, str):
        return _string(value, quote, doc)
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        try:
            return repr(value)
        except ValueError:  # more digits than int -> str allows (sys.set_int_max_str_digits)
            return hex(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "-float('inf')"
        return repr(value)
    if isinstance(value, tuple):
        items = [literal(v, quote=quote) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v, quote=quote) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k, quote=quote)}: {literal(v, quote=quote)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for {type(value).__name__}")


def _string(text: str, quote: str, doc: bool) -> str:
    if doc and _plain(text):
        return '"""' + text + '"""'
    r = repr(text)
    # repr quotes with ' unless the text holds ' and no "; with no " in the text it holds no ' either
    if quote == '"' and r[0] == "'" and '"' not in text:
        r = '"' + r[1:-1] + '"'
    return r


def _plain(text: str) -> bool:
    """Whether `text` reads the same between triple double quotes, with no escape."""
    return ("\\" not in text and '"""' not in text and not text.endswith('"')
            and all(line.isprintable() for line in text.split("\n")))
