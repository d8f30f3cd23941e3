"""The `incdsl` command line. Only this layer touches files and prints.

Exit codes: 0 success, 1 spec error, 2 bad usage, 3 over budget (`cost --max-*`),
69 Graphviz's `dot` missing (`draw` to a format other than DOT), 70 internal error (a bug).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile

from . import __version__
from .commands import COMMANDS
from .diagnostics import IncdslError, render

EXIT_SPEC, EXIT_USAGE = 1, 2


class UsageError(Exception):
    """Bad command-line usage found after argparse (exit 2)."""


def parse_value(text: str):
    """A `--set` value: integer, float, yes/no, or a bare word."""
    from .values import Sym, _WORDS
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text in _WORDS:
        return _WORDS[text]
    return Sym(text)


def parse_shape(text: str) -> tuple:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 3x224x224, got {text!r}")
    return tuple(int(p) for p in parts)


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every spec-reading command shares."""
    p.add_argument("spec", help="the .inc spec file")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="override a network parameter, e.g. --set classes=10 (repeatable)")
    p.add_argument("--input", type=parse_shape, metavar="CxHxW", help="another input size, e.g. 3x224x224")


def overrides(args) -> dict:
    """The network parameters given with --set NAME=VALUE."""
    params = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def load_spec(args):
    from .network import load
    net = load(args.spec, params=overrides(args), input=args.input, debug=getattr(args, "debug", False))
    for w in net.warnings:
        print(render(w, net.sources), file=sys.stderr)
    return net


def write_atomic(path: str, data: str | bytes) -> None:
    """Write a whole file or nothing: a temp file beside it, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".incdsl-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incdsl", description="Describe, check, cost, draw, compile and train Inception-family networks.")
    parser.add_argument("--version", action="version", version=f"incdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="check the IR's invariants; show Python tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"incdsl.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except IncdslError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_SPEC
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"incdsl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("incdsl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if args.debug:
            raise
        print(f"incdsl: internal error: {type(exc).__name__}: {exc}\n"
              "this is a bug in incdsl; run again with --debug for the traceback", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
