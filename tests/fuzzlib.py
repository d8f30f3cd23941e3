"""A fuzz harness for hostile specs: mutants of the shipped specs and hand-made attacks.

Each case is a spec file (bytes, a file name, a place in a copy of the repository's spec tree
so that relative includes resolve) plus the command-line arguments to use. Each command of a
case (`check`, `cost`, `compile`) runs in a child forked from this process, so incdsl, Lark's
tables and torch are imported once, not once per case; the child gets a wall-clock limit, an
address-space limit and a stdin that never delivers (a terminal nobody types into), and its
outcome is sorted into one of six classes:

    accepted                       exit 0 (for compile: the generated source also builds the
                                   model on the meta device and gives the spec's output shape)
    located diagnostic             exit 1 or 2 with a `file:line:col: error:` line
    diagnostic without location    exit 1 or 2 without one
    other exception                a traceback, exit 70 or any other code, a signal, generated
                                   source that does not build, code run from the input
    over 10 s                      killed at the wall-clock limit
    over 2 GB                      MemoryError under the address-space limit, or peak RSS over it

The last four are failures. Cases are deterministic for a seed: case `i` of seed `s` is built
from `random.Random(f"incdsl-fuzz:{s}:{i}")` alone, so one case can be rebuilt by its index.

Used by benchmarks/fuzz.py (10,000 cases) and tests/test_fuzz.py (a fast sample and the
hand-made cases in tests/fuzz_cases/).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
import re
import resource
import select
import shutil
import signal
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = Path(__file__).resolve().parent / "fuzz_cases"
SEED_GLOBS = ("specs/**/*.inc", "examples/*.inc", "tests/data/*.inc")

TIME_LIMIT_S = 10.0
MEMORY_LIMIT = 2 * 1024 ** 3  # bytes, beyond what the worker had mapped when it was forked

ACCEPTED = "accepted"
LOCATED = "located diagnostic"
UNLOCATED = "diagnostic without location"
EXCEPTION = "other exception"
TIMEOUT = "over 10 s"
MEMORY = "over 2 GB"
USAGE = "usage error"  # exit 2 from a bad command-line flag: has no place in the spec to point at
CLASSES = (ACCEPTED, LOCATED, USAGE, UNLOCATED, EXCEPTION, TIMEOUT, MEMORY)
BAD = (UNLOCATED, EXCEPTION, TIMEOUT, MEMORY)

LOCATED_RE = re.compile(r"^.*:\d+:\d+: error: ", re.MULTILINE)
USAGE_RE = re.compile(r"^usage: incdsl ", re.MULTILINE)  # argparse's, printed with every usage error
MARKER = "fuzz-pwned"  # what injected code creates in the case's scratch dir
SECRET_LINES = ("FUZZ-SECRET-LINE-1", "FUZZ-SECRET-LINE-2", "FUZZ-SECRET-LINE-3")
ROOT_TOKEN = "@FUZZROOT@"  # replaced by the run's root dir when the case is written


# --- cases ------------------------------------------------------------------------------------

@dataclass
class Case:
    """One spec to feed to incdsl, and how."""

    ident: str                     # "00042" for generated cases, the file stem for hand-made ones
    data: bytes                    # the spec file's bytes
    name: str = "case.inc"         # the spec file's name
    rel_dir: str = "."             # where it sits in the spec tree (so that relative includes resolve)
    mutations: list = field(default_factory=list)
    origin: str = ""               # the seed spec it was made from
    args: tuple = ()               # extra arguments for every command
    commands: tuple = ("check", "cost")
    spec_arg: str | None = None    # what to pass as SPEC ("-", "/dev/stdin"); default: the file
    stdin: bytes | None = None     # fed to the child's stdin; None: a pipe that never delivers
    setup: str | None = None       # a child-side hook run before the command (see SETUPS)
    expect: tuple = (ACCEPTED, LOCATED)  # hand-made cases: the classes that are right
    forbid: tuple = ()             # text the output must not hold
    show: tuple = ()               # text the output must hold (the source line a diagnostic shows)
    max_output: int | None = None  # bytes of output allowed
    item: str = ""                 # the issue item a hand-made case is about
    slow: bool = False


@dataclass
class Outcome:
    command: str
    klass: str
    rc: int | None
    seconds: float
    maxrss_mb: float
    detail: str = ""
    stdout: str = ""
    stderr: str = ""
    output_len: int = 0
    inferred: bool = False  # not run: the case's check was already over a limit
    forbidden: str | None = None  # forbidden text the output showed
    missing: list = field(default_factory=list)  # `show` text the diagnostic lacked


def seed_specs() -> dict[str, str]:
    """The shipped specs, by path relative to the repository."""
    out = {}
    for pattern in SEED_GLOBS:
        for path in sorted(REPO.glob(pattern)):
            out[path.relative_to(REPO).as_posix()] = path.read_text(encoding="utf-8")
    return out


# --- the mutators -----------------------------------------------------------------------------

KEYWORDS = ("include", "block", "network", "input", "concat", "add", "residual", "branch", "shortcut",
            "repeat", "as", "named", "with", "aux", "from", "choice", "range")
LAYERS = ("conv", "maxpool", "avgpool", "pool", "gap", "lrn", "bn", "act", "relu", "dropout", "flatten",
          "linear", "softmax", "identity", "gelu", "tanh")
VALUES = ("V", "S", "3x3", "1x7", "7x1", "1x1x1", "0x0", "3x299x299", "0", "1", "-1", "64", "0.5", "in.c",
          "in.h", "in.w", "in.x", "yes", "no", "on", "off", "true", "false", "none", "relu", "off", "/2", "/0")
PUNCT = ("->", ":", "(", ")", ",", "=", "/", "*", "+", "-", "//", "%", ".", "\"", "#", "\\", "\n", "\n    ",
         "\t", "(", ")")
FUNCS = ("min", "max", "abs", "int", "float", "round", "ceil", "floor", "divisible")
VOCAB = KEYWORDS + LAYERS + VALUES + PUNCT + FUNCS

SPECIALS = ("\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\r", "\r\n", "\x1b", "\x1b[2J", "\x1c", "\x1d",
            "\x1e", "\x1f", "\x7f", "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "\u200b", "\u202e", "\u0301",
            "\uff18", "\uff11\uff12", "\u0668", "\u00b2", "\u2167", "\U0001d7d8", "\ufffd", "\t",
            "\\", "\"", "'", "\x1a")

HUGE_NUMBERS = ("1000000000000000000000000000000", "-1000000000000000000000000000000", "1e400", "-1e400",
                "1e-400", "1e308", "-0", "0", "-0.0", "0.0", "nan", "inf", "-inf", "NaN", "4294967297",
                "9223372036854775808", "9" * 400, "99999999999x3", "3x99999999999", "0x0", "1x0",
                "(round(8, -1000000000000000000000000000000))", "(round(1e308, 1000000000000000000000))",
                "(1 / 0)", "(1 // 0)", "(1 % 0)", "(int(1e400))", "(ceil(1e400))", "(floor(-1e400))",
                "(divisible(1e308))", "(divisible(-1))", "(max())", "(min(1))", "(abs(-1e400))",
                "(1e308 * 1e308)", "(1000000000000000000000 * 1000000000000000000000 * 1000000000000000000000)",
                "(float(1000000000000000000000000000000))", "(round(0.5, 1000000000000000000000000000000))")

ADVERSARIAL_NAMES = (
    # Python keywords and builtins
    "class", "def", "lambda", "None", "True", "False", "import", "return", "yield", "await", "async",
    "global", "del", "pass", "is", "not", "and", "or", "if", "else", "for", "while", "try", "raise",
    "int", "str", "float", "list", "dict", "type", "object", "print", "len", "super", "range", "open",
    "exec", "eval", "__import__", "__init__", "__class__", "__dict__", "__builtins__", "__name__",
    # the language's own words
    "none", "true", "false", "none_", "true_", "yes", "no", "on", "off", "in", "V", "S", "x",
    # what the generated source uses
    "self", "node_paths", "F", "f", "torch", "nn", "math", "Scope", "ConvBnAct", "conv_bn_act",
    "PaddedPool", "padded_pool", "Concat", "concat_", "Add", "LinearAct", "copy", "init_weights",
    "IncdslNet", "forward", "forward_features", "forward_head", "state_dict", "training", "_modules",
    "num_classes", "seed", "Model", "inputs", "out", "x0", "_", "__",
)

HOSTILE_FILE_NAMES = (
    'a"""+str(__import__("os").mkdir("' + MARKER + '"))+"""b.inc',
    "a'''+str(__import__('os').mkdir('" + MARKER + "'))+'''b.inc",
    "x\\N.inc", "x\\u12.inc", "x\\x.inc", "back\\slash\\.inc", "it's.inc", 'q"uote.inc', "a\nb.inc",
    "tab\t.inc", "-rf.inc", "--help.inc", "a b.inc", "$(id).inc", "`id`.inc", "%s%n.inc", "{0}.inc",
    "\x1b[31mred.inc", "\u202eevil.inc", "\u00fcn\u00efc\u00f8de.inc", "cr\r.inc", "x" * 240 + ".inc",
)


def _tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\w+(?:\.\w+)?|->|//|\S", text)]


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _statement_lines(lines: list[str]) -> list[int]:
    """Indexes of indented lines that hold code (where a statement can go before)."""
    return [i for i, ln in enumerate(lines) if ln[:1] in (" ", "\t") and ln.strip() and not ln.strip().startswith("#")]


def _insert_statement(rng: random.Random, text: str, stmt: list[str]) -> str:
    """Insert the statement lines before a random indented line, at its indentation."""
    lines = _lines(text)
    spots = _statement_lines(lines)
    if not spots:
        return text + "\nnetwork fuzz:\n    input 3x32x32\n" + "".join("    " + s + "\n" for s in stmt)
    i = rng.choice(spots)
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i:i] = [indent + s for s in stmt]
    return "\n".join(lines)


def m_flip_char(rng, text, case):
    if not text:
        return "x"
    i = rng.randrange(len(text))
    return text[:i] + rng.choice(string.printable + "".join(SPECIALS)) + text[i + 1:]


def m_insert_token(rng, text, case):
    spans = _tokens(text) or [(0, 0)]
    _, end = rng.choice(spans)
    return text[:end] + " " + rng.choice(VOCAB) + " " + text[end:]


def m_insert_special(rng, text, case):
    ch = rng.choice(SPECIALS)
    roll = rng.random()
    if roll < 0.1:
        return ch + text
    comments = [m.end() for m in re.finditer("#", text)]
    if roll < 0.4 and comments:
        i = rng.choice(comments)
        i = min(len(text), i + rng.randrange(0, 20))
    else:
        i = rng.randrange(len(text) + 1)
    return text[:i] + ch + text[i:]


def m_delete_span(rng, text, case):
    if not text:
        return text
    i = rng.randrange(len(text))
    return text[:i] + text[i + rng.randint(1, 40):]


def m_line_edit(rng, text, case):
    """Delete, duplicate, swap or splice (from another seed) whole lines."""
    lines = _lines(text)
    i = rng.randrange(len(lines))
    op = rng.choice(("delete", "duplicate", "swap", "splice"))
    if op == "delete":
        del lines[i:i + rng.randint(1, 3)]
    elif op == "duplicate":
        lines[i:i] = lines[i:i + rng.randint(1, 5)]
    elif op == "swap":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        other = _lines(rng.choice(list(case["seeds"].values())))
        k = rng.randrange(len(other))
        lines[i:i] = other[k:k + rng.randint(1, 8)]
    return "\n".join(lines)


def m_swap_token(rng, text, case):
    spans = _tokens(text)
    if len(spans) < 2:
        return text
    a, b = sorted(rng.sample(spans, 2))
    if rng.random() < 0.5:  # replace one token with a word of the grammar
        return text[:a[0]] + rng.choice(VOCAB) + text[a[1]:]
    return text[:a[0]] + text[b[0]:b[1]] + text[a[1]:b[0]] + text[a[0]:a[1]] + text[b[1]:]


def m_huge_number(rng, text, case):
    numbers = [m.span() for m in re.finditer(r"(?<![\w.])\d+(?:x\d+)*(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.])", text)]
    if not numbers:
        return m_insert_token(rng, text, case)
    a, b = rng.choice(numbers)
    return text[:a] + rng.choice(HUGE_NUMBERS) + text[b:]


def m_deep_nest(rng, text, case):
    depth = rng.choice((10, 50, 90, 100, 200, 1000, 5000))
    kind = rng.choice(("parens", "repeat", "blocks", "concat", "calls"))
    if kind == "parens":
        numbers = [m.span() for m in re.finditer(r"(?<![\w.x])\d+(?![\w.x])", text)]
        if numbers:
            a, b = rng.choice(numbers)
            return text[:a] + "(" * depth + text[a:b] + ")" * depth + text[b:]
        kind = "repeat"
    if kind == "calls":
        return _insert_statement(rng, text, ["conv 1x1 (" + "min(" * depth + "8" + ", 8)" * depth + ")"])
    if kind == "blocks":
        depth = min(depth, 2000)
        defs = "".join(f"\nblock fz{i}: fz{i + 1}\n" for i in range(depth)) + f"\nblock fz{depth}: identity\n"
        return _insert_statement(rng, text, ["fz0"]) + defs
    head = "repeat 1:" if kind == "repeat" else None
    depth = min(depth, 500)
    stmt = []
    for level in range(depth):
        pad = "    " * level
        if head:
            stmt.append(pad + head)
        else:
            stmt += [pad + "concat:", pad + "    branch:"]
    stmt.append(("    " * (depth if head else 2 * depth)) + "identity")
    return _insert_statement(rng, text, stmt)


def m_huge_repeat(rng, text, case):
    count = rng.choice(("1000", "99999", "999990", "1000000000", "1000000000000000000000000000000", "-1", "0",
                        "1e400", "(1 / 0)"))
    repeats = [m.span(1) for m in re.finditer(r"\brepeat\s+(\S+?)(?=[\s:])", text)]
    if repeats and rng.random() < 0.5:
        a, b = rng.choice(repeats)
        return text[:a] + count + text[b:]
    if rng.random() < 0.5:
        return _insert_statement(rng, text, [f"repeat {count}: identity"])
    return _insert_statement(rng, text, ["repeat 999:", "    repeat 999: identity"])


def m_long_line(rng, text, case):
    n = rng.choice((1000, 10_000, 100_000))
    kind = rng.choice(("chain", "comment", "name", "digits", "path", "args"))
    if kind == "chain":
        return _insert_statement(rng, text, [" -> ".join(["identity"] * n)])
    if kind == "comment":
        return _insert_statement(rng, text, ["# " + "x" * (n * 10)])
    if kind == "name":
        return _insert_statement(rng, text, ["identity as " + "n" * n])
    if kind == "digits":
        return _insert_statement(rng, text, ["conv 1x1 " + "7" * n])
    if kind == "path":
        return f'include "{"a/" * n}x.inc"\n' + text
    return _insert_statement(rng, text, ["conv 1x1 (" + " + ".join(["1"] * n) + ")"])


def m_adversarial_name(rng, text, case):
    new = rng.choice(ADVERSARIAL_NAMES)
    defined = set(re.findall(r"\b(?:network|block)\s+(\w+)", text)) | set(re.findall(r"\bas\s+(\w+)", text))
    defined |= set(re.findall(r"[(,]\s*(\w+)\s*=", text))
    if defined and rng.random() < 0.7:
        old = rng.choice(sorted(defined))
        return re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, text)
    lines = _lines(text)
    spots = [i for i in _statement_lines(lines) if not lines[i].rstrip().endswith(":") and " as " not in lines[i]
             and "#" not in lines[i]]
    if not spots:
        return text
    i = rng.choice(spots)
    lines[i] = lines[i].rstrip() + " as " + new
    return "\n".join(lines)


def m_hostile_include(rng, text, case):
    depth = len(Path(case["rel_dir"]).parts) if case["rel_dir"] != "." else 0
    up = "../" * depth
    target = rng.choice((
        "/etc/passwd", "/proc/self/environ", "/proc/self/cmdline", "/dev/zero", "/dev/urandom", "/dev/stdin",
        "/dev/null", "/proc/self/fd/0", "/etc", "/", ".", "", "x\x00y", up + "fifo.inc", up + "fifo.inc",
        up + "../outside/secret.txt", up + "../" * 12 + "etc/hostname", ROOT_TOKEN + "/outside/secret.txt",
        "~/.bashrc", case["name"], "../" + case["name"], "missing.inc", "\x1b[2J.inc", "%s.inc",
    ))
    line = f'include "{target}"\n'
    tops = [m.start() for m in re.finditer(r"^(?:block|network|include)\b", text, re.MULTILINE)]
    at = rng.choice(tops + [0])
    return text[:at] + line + text[at:]


def m_many_choices(rng, text, case):
    kind = rng.choice(("each_number", "one_big", "many_small", "range_huge", "block_choice"))
    numbers = [m.span() for m in re.finditer(r"(?<=\s)\d+(?=\s|$)", text, re.MULTILINE)]
    if kind == "each_number" and numbers:
        out, last = [], 0
        for a, b in numbers:
            if rng.random() < 0.7:
                v = int(text[a:b])
                out += [text[last:a], f"choice({v}, {v + 8})"]
                last = b
        return "".join(out) + text[last:]
    if kind == "one_big":
        n = rng.choice((100, 2000, 100_000))
        return _insert_statement(rng, text, ["conv 1x1 choice(" + ", ".join(map(str, range(1, n + 1))) + ")"])
    if kind == "many_small":
        n = rng.choice((50, 500, 2000))
        return _insert_statement(rng, text, ["conv 1x1 choice(8, 16)"] * n)
    if kind == "range_huge":
        return _insert_statement(rng, text, [rng.choice((
            "conv 1x1 choice(range(1, 1000000000000000000000000000000))", "conv 1x1 choice(range(0, 0))",
            "conv 1x1 choice(range(1, 10, 0))", "conv 1x1 choice()", "conv 1x1 choice(range(-5, 5))",
            "repeat choice(range(1, 100000)): identity"))])
    blocks = re.findall(r"^block\s+(\w+)", text, re.MULTILINE)
    if len(blocks) < 2:
        return text
    return _insert_statement(rng, text, ["choice(" + ", ".join(rng.sample(blocks, 2)) + ")"])


def m_hostile_file_name(rng, text, case):
    case["name"] = rng.choice(HOSTILE_FILE_NAMES)
    return text


MUTATORS = {  # name: (function, weight)
    "flip_char": (m_flip_char, 10),
    "flip_byte": (None, 6),  # applied to the encoded bytes, last
    "insert_token": (m_insert_token, 10),
    "insert_special": (m_insert_special, 10),
    "delete_span": (m_delete_span, 6),
    "line_edit": (m_line_edit, 10),
    "swap_token": (m_swap_token, 10),
    "huge_number": (m_huge_number, 8),
    "adversarial_name": (m_adversarial_name, 8),
    "deep_nest": (m_deep_nest, 2),
    "huge_repeat": (m_huge_repeat, 2),
    "long_line": (m_long_line, 2),
    "hostile_include": (m_hostile_include, 2),
    "many_choices": (m_many_choices, 3),
    "hostile_file_name": (m_hostile_file_name, 2),
}


def make_case(seed: int, index: int, seeds: dict[str, str], compile_fraction: float = 0.1,
              commands: tuple = ("check", "cost", "compile")) -> Case:
    """Case `index` of the run with this seed: a seed spec with one to three mutations."""
    rng = random.Random(f"incdsl-fuzz:{seed}:{index}")
    origin = rng.choice(sorted(seeds))
    ctx = {"rel_dir": os.path.dirname(origin) or ".", "name": "case.inc", "seeds": seeds}
    text = seeds[origin]
    names, weights = zip(*((k, w) for k, (_, w) in MUTATORS.items()))
    kinds = rng.choices(names, weights, k=rng.choice((1, 1, 1, 2, 2, 3)))
    for kind in kinds:
        if MUTATORS[kind][0] is not None:
            text = MUTATORS[kind][0](rng, text, ctx)
    data = text.encode("utf-8", "surrogatepass")
    for kind in kinds:
        if kind == "flip_byte" and data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    run = tuple(c for c in commands if c != "compile" or rng.random() < compile_fraction)
    return Case(ident=f"{index:05d}", data=data, name=ctx["name"], rel_dir=ctx["rel_dir"], mutations=list(kinds),
                origin=origin, commands=run)


# --- hand-made cases --------------------------------------------------------------------------

def _header(data: bytes) -> dict[str, str]:
    """The `#@ key: value` lines at the top of a hand-made case (values take Python escapes)::

        #@ item: 13                          the issue item the case is about
        #@ expect: located accepted          the classes that are right (default: located)
        #@ commands: check cost compile      (default: check)
        #@ args: --set s=inf                 added to every command
        #@ variants: --class-name F | --class-name nn     one case per variant, its args added
        #@ forbid: PATH= | \x1b              text the output must not hold
        #@ show: the-error-line              text the diagnostic must hold
        #@ max-output: 65536                 characters of output allowed
        #@ slow: yes                         only in the slow test run
    """
    out: dict[str, str] = {}
    for raw in data.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
        if not raw.startswith(b"#@ "):
            break
        key, _, value = raw[3:].decode("ascii").partition(":")
        out[key.strip()] = value.strip().encode("ascii").decode("unicode_escape")
    return out


EXPECT_WORDS = {"accepted": ACCEPTED, "located": LOCATED, "usage": USAGE}


def _split(value: str | None) -> tuple:
    return tuple(value.split()) if value else ()


def file_cases() -> list[Case]:
    """The hand-made cases of tests/fuzz_cases/, one Case per variant."""
    cases = []
    for path in sorted(CASES_DIR.glob("*.inc")):
        data = path.read_bytes()
        head = _header(data)
        variants = [v.split() for v in head["variants"].split("|")] if "variants" in head else [[]]
        for n, extra in enumerate(variants):
            ident = path.stem + (f"[{' '.join(extra)}]" if extra else "")
            cases.append(Case(
                ident=ident, data=data, name=path.name, item=head.get("item", ""),
                args=_split(head.get("args")) + tuple(extra),
                commands=_split(head.get("commands")) or ("check",),
                expect=tuple(EXPECT_WORDS[e] for e in _split(head.get("expect"))) or (LOCATED,),
                forbid=tuple(x for x in head.get("forbid", "").split(" | ") if x),
                show=tuple(x for x in head.get("show", "").split(" | ") if x),
                max_output=int(head["max-output"]) if "max-output" in head else None,
                slow=head.get("slow") == "yes"))
    return cases


TINY = """network tiny(classes = 10):
    input 3x16x16
    conv 3x3 8 S -> maxpool 2x2 /2
    residual(scale = 0.5):
        conv 1x1 8
    gap -> flatten -> linear classes
"""


def runtime_cases() -> list[Case]:
    """Hand-made cases that cannot sit in the repository as files: hostile file names, a FIFO,
    files outside the spec tree, stdin, a poisoned grammar cache, specs of many megabytes."""
    tiny = TINY.encode()
    up = "../../"  # from <root>/tree/rt/ to <root>
    cases = [
        Case("r01_filename_injection", tiny, name=HOSTILE_FILE_NAMES[0], item="1", commands=("check", "compile"),
             expect=(ACCEPTED,)),
        Case("r01_filename_injection_single_quotes", tiny, name=HOSTILE_FILE_NAMES[1], item="1",
             commands=("compile",), expect=(ACCEPTED,)),
        Case("r01_filename_backslash_N", tiny, name="x\\N.inc", item="1", commands=("compile",), expect=(ACCEPTED,)),
        Case("r01_filename_backslash_u12", tiny, name="x\\u12.inc", item="1", commands=("compile",),
             expect=(ACCEPTED,)),
        Case("r01_filename_newline", tiny, name="a\nb.inc", item="1", commands=("check", "compile"),
             expect=(ACCEPTED,)),
        Case("r02_include_absolute_outside", b'include "' + ROOT_TOKEN.encode() + b'/outside/secret.txt"\n' + tiny,
             item="2", expect=(LOCATED,), forbid=SECRET_LINES[1:]),
        Case("r02_include_dotdot_outside", f'include "{up}outside/secret.txt"\n'.encode() + tiny, item="2",
             expect=(LOCATED,), forbid=SECRET_LINES[1:]),
        Case("r03_include_fifo", f'include "{up}tree/fifo.inc"\n'.encode() + tiny, item="3", expect=(LOCATED,)),
        Case("r03_include_fifo_beside", b'include "fifo.inc"\n' + tiny, item="3", expect=(LOCATED,),
             setup="fifo_beside"),
        Case("r04_space_2000_choices", (TINY.replace("    gap", "\n".join(["    conv 1x1 choice(8, 16)"] * 2000)
                                                       + "\n    gap")).encode(), item="4", expect=(ACCEPTED, LOCATED)),
        Case("r04_million_layer_line", ("network n:\n    input 3x8x8\n    " + " -> ".join(["identity"] * 1_000_000)
                                        + "\n").encode(), item="4", expect=(LOCATED,), max_output=65536, slow=True),
        Case("r12_poisoned_grammar_cache", tiny, item="12", expect=(ACCEPTED,), setup="poison_grammar_cache"),
        Case("r14_stdin_dash", tiny, item="14", spec_arg="-", stdin=tiny, expect=(ACCEPTED,)),
        Case("r14_stdin_dev_stdin", tiny, item="14", spec_arg="/dev/stdin", stdin=tiny, expect=(ACCEPTED,)),
    ]
    for c in cases:
        c.rel_dir = "rt"
    return cases


def hand_made_cases() -> list[Case]:
    return file_cases() + runtime_cases()


# --- the spec tree ----------------------------------------------------------------------------

def prepare_slot(root: Path, seeds: dict[str, str], slot: int) -> Path:
    """A slot's own dir: tree/ (a copy of the seed specs, so that includes resolve, and a FIFO
    nobody writes), outside/secret.txt (a file no spec should be able to read), scratch/."""
    home = root / f"s{slot}"
    tree = home / "tree"
    for rel, text in seeds.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tree / "rt").mkdir(parents=True, exist_ok=True)
    if not (tree / "fifo.inc").exists():
        os.mkfifo(tree / "fifo.inc")
    (home / "outside").mkdir(exist_ok=True)
    (home / "outside" / "secret.txt").write_text("\n".join(SECRET_LINES) + "\n")
    return home


def write_case(home: Path, case: Case) -> tuple[Path, Path]:
    """Write the case's spec into the slot's tree; returns (spec path, an empty scratch dir)."""
    path = home / "tree" / case.rel_dir / case.name
    path.write_bytes(case.data.replace(ROOT_TOKEN.encode(), str(home).encode()))
    scratch = home / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return path, scratch


def remove_case(home: Path, case: Case) -> None:
    with contextlib.suppress(OSError):
        os.unlink(home / "tree" / case.rel_dir / case.name)
    if case.setup == "fifo_beside":
        with contextlib.suppress(OSError):
            os.unlink(home / "tree" / case.rel_dir / "fifo.inc")


# --- the child --------------------------------------------------------------------------------

def _setup_poison_grammar_cache(scratch: Path, spec: Path) -> None:
    """The grammar cache file replaced by a pickle that makes a directory when unpickled (the
    format of Lark's own cache: a hash line, then pickles); the parser cache of this process is
    dropped so that the file is read."""
    from incdsl.lang import parse
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    folder = parse.cache_dir()
    if not folder:
        return
    grammar = (Path(parse.__file__).parent / "grammar.lark").read_text(encoding="utf-8")
    target = Path(folder) / f"grammar-{parse._grammar_key(grammar)[:16]}.json"  # as build_parser names it

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(scratch / MARKER),))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        f.write(b"0" * 64 + b"\n" + pickle.dumps(Payload()) + pickle.dumps(Payload()))
    parse._parser.cache_clear()


def _setup_fifo_beside(scratch: Path, spec: Path) -> None:
    fifo = spec.parent / "fifo.inc"
    if not fifo.exists():
        os.mkfifo(fifo)


SETUPS = {"poison_grammar_cache": _setup_poison_grammar_cache, "fifo_beside": _setup_fifo_beside,
          # for the harness's own tests: a run that never ends, one that wants 3 GB
          "sleep": lambda scratch, spec: time.sleep(3600),
          "allocate_3gb": lambda scratch, spec: bytearray(3 * 1024 ** 3)}


def _vm_size() -> int:
    return _status_bytes("VmSize:")


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmSize: address space, VmRSS: resident), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _check_generated(source_path: Path, spec: str, args: list[str], message: str = "") -> str:
    """'' when the generated source builds the model on the meta device and its output has the
    spec's shape; what went wrong otherwise."""
    import torch

    from incdsl.cli import overrides, build_parser
    from incdsl.ir.network import load
    text = source_path.read_text(encoding="utf-8")
    try:
        code = compile(text, "generated.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"generated source does not compile: {type(exc).__name__}: {exc}"
    ns = {"__name__": "fuzz_generated"}
    try:
        exec(code, ns)
    except Exception as exc:
        return f"generated source fails on import: {type(exc).__name__}: {exc}"
    classes = [v for k, v in ns.items() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == "fuzz_generated" and k == v.__name__]
    opts = build_parser().parse_args(["compile", spec, *args])
    net = load(Path(spec), params=overrides(opts), input=opts.input)  # a path, whatever its characters
    # the class compile named ("wrote FILE (class NAME)"); else the last class the source defines
    named = re.search(r"\(class (\w+)\)", message)
    model_cls = ns.get(named.group(1)) if named else (classes[-1] if classes else None)
    if not (isinstance(model_cls, type) and issubclass(model_cls, torch.nn.Module)):
        return f"generated source defines no module class {named.group(1) if named else ''}"
    try:
        with torch.device("meta"):
            model = model_cls()
            model.eval()
            y = model(torch.empty(1, *net.input_shape))
    except Exception as exc:
        return f"generated model fails to build or run: {type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(y, (tuple, list)):
        y = y[0]
    if tuple(y.shape[1:]) != tuple(net.output_shape):
        return f"generated model gives {tuple(y.shape[1:])}, the spec says {tuple(net.output_shape)}"
    return ""


def _clip(text: str, head: int = 3000, tail: int = 1000) -> str:
    if len(text) <= head + tail:
        return text
    return text[:head] + f"\n[... {len(text) - head - tail} characters left out ...]\n" + text[-tail:]


def _child(case: Case, command: str, spec: Path, scratch: Path, stdin_fd: int, result: Path) -> None:
    """Runs in the forked child: limits, one incdsl command in-process, the result as JSON."""
    os.setpgid(0, 0)
    os.dup2(stdin_fd, 0)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))  # pytest may have replaced it
    limit = _vm_size() + MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir(scratch)
    out, err = io.StringIO(), io.StringIO()
    detail, rc = "", None
    try:
        if case.setup:
            SETUPS[case.setup](scratch, spec)
        from incdsl.cli import main
        spec_arg = case.spec_arg or str(spec)
        argv = [command, spec_arg, *case.args]
        if command == "compile":
            argv += ["-o", str(scratch / "generated.py")]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 2
            if rc == 0 and command == "compile":
                detail = _check_generated(scratch / "generated.py", str(spec), list(case.args), err.getvalue())
    except MemoryError:
        detail, rc = "MemoryError", 70
    except BaseException as exc:
        import traceback
        detail, rc = f"{type(exc).__name__} escaped main: {exc}", 70
        err.write("Traceback (most recent call last):\n" + traceback.format_exc())
    if (scratch / MARKER).exists():
        detail = "code from the input ran (the marker directory was made)"
    stdout, stderr = out.getvalue(), err.getvalue()
    payload = {"rc": rc, "detail": detail, "stdout": _clip(stdout), "stderr": _clip(stderr),
               "output_len": len(stdout) + len(stderr), "memory_error": "MemoryError" in stderr + detail,
               "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for name in case.forbid:
        if name in stdout or name in stderr:
            payload["forbidden"] = name
    payload["missing"] = [s for s in case.show if s not in stderr]
    result.write_text(json.dumps(payload))


def classify(rc, stderr: str, *, timed_out=False, memory=False, signal_name="", detail="") -> str:
    """The outcome class of one command's run."""
    if timed_out:
        return TIMEOUT
    if memory:
        return MEMORY
    if signal_name or detail or "Traceback (most recent call last)" in stderr:
        return EXCEPTION
    if rc == 0:
        return ACCEPTED
    if rc in (1, 2):
        if LOCATED_RE.search(stderr):
            return LOCATED
        return USAGE if rc == 2 and USAGE_RE.search(stderr) else UNLOCATED
    return EXCEPTION


# --- the pool ---------------------------------------------------------------------------------

@dataclass
class _Slot:
    home: Path
    case: Case | None = None
    remaining: list = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    spec: Path | None = None
    scratch: Path | None = None


@dataclass
class _Running:
    pid: int
    slot: _Slot
    command: str
    start: float
    result: Path
    rss_at_fork: int = 0  # bytes the child shares with this process from the start: not its own use


def warm_up(commands) -> None:
    """Import what the children need once, here, before forking."""
    import importlib

    import incdsl.cli
    from incdsl.commands import COMMANDS
    for name in COMMANDS:
        importlib.import_module(f"incdsl.commands.{name}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        incdsl.cli.main(["check", str(REPO / "tests/data/torch_tiny.inc")])
    if "compile" in commands:
        with contextlib.suppress(ImportError):
            import tempfile

            import torch
            torch.set_num_threads(1)
            # torch initialises much on first use (3 s for Inception-v3 on the meta device): here, once
            spec = str(REPO / "tests/data/torch_layers.inc")
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
                incdsl.cli.main(["compile", spec, "-o", f"{tmp}/g.py"])
                _check_generated(Path(tmp) / "g.py", spec, [])


def _outcome(run: _Running, status: int, usage, timed_out: bool, time_limit: float) -> Outcome:
    seconds = time.monotonic() - run.start
    payload = {}
    with contextlib.suppress(OSError, ValueError):
        payload = json.loads(run.result.read_text())
    sig = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) and not timed_out else ""
    maxrss_mb = usage.ru_maxrss / 1024
    # the child's peak counts what it shares with a large parent too: only growth is its own
    grown = maxrss_mb * 1024 ** 2 - run.rss_at_fork
    memory = payload.get("memory_error", False) or grown > MEMORY_LIMIT or sig == "SIGKILL"
    detail = payload.get("detail", "")
    if not payload and not timed_out and not sig:
        detail = f"the worker died without a result (status {status})"
    klass = classify(payload.get("rc"), payload.get("stderr", ""), timed_out=timed_out, memory=memory,
                     signal_name=sig, detail=detail)
    if timed_out:
        detail = f"killed after {time_limit:g} s"
    elif sig:
        detail = detail or f"killed by {sig}"
    return Outcome(run.command, klass, payload.get("rc"), round(seconds, 3), round(maxrss_mb, 1), detail,
                   payload.get("stdout", ""), payload.get("stderr", ""), payload.get("output_len", 0),
                   forbidden=payload.get("forbidden"), missing=payload.get("missing", []))


def run_cases(cases, root: Path, seeds: dict[str, str], *, jobs: int = 2, time_limit: float = TIME_LIMIT_S,
              infer: bool = True):
    """Run every command of every case, `jobs` children at a time; yields (case, [Outcome]) as
    cases finish. The commands of one case run one after the other; when `check` is over a
    limit, the case's other commands get the same class without running (unless not `infer`)."""
    cases = list(cases)
    warm_up({c for case in cases for c in case.commands})
    sys.stdout.flush()
    sys.stderr.flush()
    pending = [c for c in reversed(cases) if c.commands]
    slots = [_Slot(prepare_slot(root, seeds, n)) for n in range(jobs)]
    running: dict[int, _Running] = {}  # pidfd -> run
    never_r, never_w = os.pipe()       # a stdin that never delivers

    def start(slot: _Slot) -> None:
        case, command = slot.case, slot.remaining[0]
        if not slot.outcomes:
            slot.spec, slot.scratch = write_case(slot.home, case)
        result = slot.scratch / f"result-{command}.json"
        stdin_r = never_r
        if case.stdin is not None:
            stdin_r, stdin_w = os.pipe()
            os.write(stdin_w, case.stdin[:60000])
            os.close(stdin_w)
        pid = os.fork()
        if pid == 0:  # the child
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _child(case, command, slot.spec, slot.scratch, stdin_r, result)
            finally:
                os._exit(0)
        if stdin_r != never_r:
            os.close(stdin_r)
        running[os.pidfd_open(pid)] = _Running(pid, slot, command, time.monotonic(), result, _status_bytes("VmRSS:"))

    def take(slot: _Slot) -> bool:
        if not pending:
            slot.case = None
            return False
        slot.case = pending.pop()
        slot.remaining, slot.outcomes = list(slot.case.commands), []
        return True

    try:
        for slot in slots:
            if take(slot):
                start(slot)
        while running:
            deadline = min(r.start for r in running.values()) + time_limit
            ready, _, _ = select.select(list(running), [], [], max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            expired = [fd for fd, r in running.items() if fd not in ready and now - r.start > time_limit]
            for fd in expired:
                _kill(running[fd].pid)
            for fd in ready + expired:
                run = running.pop(fd)
                _, status, usage = os.wait4(run.pid, 0)
                os.close(fd)
                slot = run.slot
                outcome = _outcome(run, status, usage, fd in expired, time_limit)
                slot.outcomes.append(outcome)
                slot.remaining.pop(0)
                if infer and run.command == "check" and outcome.klass in (TIMEOUT, MEMORY):
                    slot.outcomes += [Outcome(c, outcome.klass, None, 0.0, 0.0, "not run: check was over a limit",
                                              inferred=True) for c in slot.remaining]
                    slot.remaining = []
                if slot.remaining:
                    start(slot)
                    continue
                remove_case(slot.home, slot.case)
                yield slot.case, slot.outcomes
                if take(slot):
                    start(slot)
    finally:
        for fd, run in running.items():
            _kill(run.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(run.pid, 0)
            os.close(fd)
        os.close(never_r)
        os.close(never_w)


def _kill(pid: int) -> None:
    """Kill a worker and whatever it started (its process group)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def expected_failures(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with a hand-made case's outcome ([] when nothing)."""
    problems = []
    if outcome.klass not in case.expect:
        problems.append(f"{outcome.command}: {outcome.klass}, expected {' or '.join(case.expect)}"
                        + (f" ({outcome.detail})" if outcome.detail else ""))
    if outcome.forbidden:
        problems.append(f"{outcome.command}: the output shows {outcome.forbidden!r}")
    if outcome.klass in (ACCEPTED, LOCATED) and outcome.missing:
        problems.append(f"{outcome.command}: the diagnostic does not show {outcome.missing!r}")
    if case.max_output is not None and outcome.output_len > case.max_output:
        problems.append(f"{outcome.command}: {outcome.output_len} characters of output (at most {case.max_output})")
    return problems


def run_all(cases, root: Path, seeds: dict[str, str], *, jobs: int = 2, time_limit: float = TIME_LIMIT_S,
            infer: bool = True):
    """`run_cases` in two passes: first every command but `compile`, from a process without
    torch (forking a process that holds torch costs several times more), then `compile`, with
    torch imported once. Yields (case, [Outcome]) like `run_cases`."""
    import dataclasses
    cases = list(cases)
    by_ident = {c.ident: c for c in cases}
    light = [dataclasses.replace(c, commands=tuple(x for x in c.commands if x != "compile")) for c in cases]
    held: dict[str, list] = {}
    for case, outcomes in run_cases(light, root, seeds, jobs=jobs, time_limit=time_limit, infer=infer):
        if "compile" in by_ident[case.ident].commands:
            held[case.ident] = outcomes
        else:
            yield by_ident[case.ident], outcomes
    heavy = []
    for c in cases:
        if "compile" not in c.commands:
            continue
        over = [o for o in held.get(c.ident, []) if o.command == "check" and o.klass in (TIMEOUT, MEMORY)]
        if infer and over:
            yield c, held.pop(c.ident) + [Outcome("compile", over[0].klass, None, 0.0, 0.0,
                                                  "not run: check was over a limit", inferred=True)]
        else:
            heavy.append(dataclasses.replace(c, commands=("compile",)))
    for case, outcomes in run_cases(heavy, root, seeds, jobs=jobs, time_limit=time_limit, infer=infer):
        yield by_ident[case.ident], held.pop(case.ident, []) + outcomes
