"""The `incdsl` command line. Only this layer touches files and prints.

Exit codes: 0 success, 1 spec error or an output that cannot be written, 2 bad usage, 3 over
budget (`cost --max-*`), 69 something to install first (sysexits' EX_UNAVAILABLE: Graphviz's
`dot` for `draw` to a format other than DOT, an extra such as PyTorch for `train`, `eval`,
`compile --onnx`, Ray Tune for `search`), 70 internal error (a bug).
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
import textwrap

from .lang.values import parse_value
from .version import __version__
from .commands import COMMANDS
from .diagnostics import IncdslError, did_you_mean, render, terminal_safe
from .io import OutputError

EXIT_SPEC, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 69


class UsageError(Exception):
    """Bad command-line usage found after argparse (exit 2)."""


class MissingExtra(Exception):
    """A command needs a package (an optional extra) that is not installed (exit 69)."""

    def __init__(self, message: str, install: str):
        super().__init__(message)
        self.install = install


class ParagraphHelpFormatter(argparse.HelpFormatter):
    """Help whose description has paragraphs (blank-line separated), each filled to the terminal's
    width like argparse's own; a paragraph with indented lines (a table) is kept as written."""

    def _fill_text(self, text, width, indent):
        def fill(para: str) -> str:  # as argparse fills, but never inside `--budget-epochs`
            return textwrap.fill(" ".join(para.split()), width, initial_indent=indent, subsequent_indent=indent,
                                 break_on_hyphens=False, break_long_words=False)
        return "\n\n".join(para if "\n " in para or para[:1].isspace() else fill(para)
                           for para in text.split("\n\n"))


def parse_shape(text: str) -> tuple:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 3x224x224, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_max_layers(text: str) -> int:
    """`--max-layers N`: a whole number from 1 to 10**9."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 10 and 1 <= int(digits) <= 10**9):
        raise argparse.ArgumentTypeError(f"expected a whole number of layers from 1 to 1000000000, got {text!r}")
    return int(text)


def add_spec_arguments(p: argparse.ArgumentParser, *, spec_help: str | None = None) -> None:
    """The arguments every spec-reading command shares (`spec_help`: the spec is optional)."""
    if spec_help:
        p.add_argument("spec", nargs="?", help=spec_help)
    else:
        p.add_argument("spec", help="the .inc spec file (- for standard input)")
    p.add_argument("-I", "--include-path", dest="include_path", metavar="DIR", action="append", default=[],
                   help="another directory `include` may read from (repeatable; INCDSL_PATH adds more). "
                        "Without it, includes stay inside the spec's directory tree")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="override a network parameter, e.g. --set classes=10 (repeatable)")
    p.add_argument("--input", type=parse_shape, metavar="CxHxW", help="another input size, e.g. 3x224x224")
    from .ir.lower import MAX_LAYERS
    p.add_argument("--max-layers", type=parse_max_layers, default=MAX_LAYERS, metavar="N",
                   help=f"refuse networks of more than N layers (default {MAX_LAYERS:,}); bounds time and memory")


def overrides(args) -> dict:
    """The network parameters given with --set NAME=VALUE."""
    params = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        if not value.strip():  # `--set classes=` (an unset shell variable): no value to read
            raise UsageError(f"--set {item}: no value after `=`")
        if "=" in value:  # no value holds `=`: several settings in one flag
            pairs = " ".join(f"--set {part}" for part in re.split(r"[,;\s]+", item) if part)
            raise UsageError(f"--set takes one NAME=VALUE, got {item!r}: give each its own --set ({pairs})")
        params[key.strip()] = parse_value(value.strip())
        if isinstance(params[key.strip()], float) and not math.isfinite(params[key.strip()]):
            raise UsageError(f"--set {item}: number is not finite")
    return params


def spec_text(args):
    """The spec named on the command line, read once (standard input for `-`): a `SpecText`."""
    if getattr(args, "spec_text", None) is None:
        from .ir.network import read_spec_file
        args.spec_text = read_spec_file(args.spec)
    return args.spec_text


def load_spec(args):
    from .ir.network import load
    net = load(spec_text(args), params=overrides(args), input=args.input, include_path=args.include_path,
               max_layers=args.max_layers, debug=getattr(args, "debug", False))
    for w in net.warnings:
        print(render(w, net.sources), file=sys.stderr)
    return net


class Parser(argparse.ArgumentParser):
    """argparse's parser whose complaint about a value outside an option's choices names the
    closest ones, as for a misspelt option or command, and whose errors read like the others."""

    def error(self, message):
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:
            hint = did_you_mean(m.group(1), [c.strip().strip("'") for c in m.group(2).split(",")])
            if hint:
                message = f"{message}; {hint}"
        # headed `incdsl: error:` like every other error without a place (argparse would write
        # `incdsl check: error:`); the usage line above it names the command
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"incdsl: error: {terminal_safe(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="incdsl", description="Check, cost, draw, compile, train, evaluate and search convolutional networks "
                                   "written as incdsl specs (the Inception family and a zoo).")
    parser.add_argument("--version", action="version", version=f"incdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="check the IR's invariants; show Python tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"incdsl.commands.{name}").register(sub)
    parser.command_parsers = sub.choices  # each command's own parser: its usage goes with its errors
    return parser


def check_command(argv: list[str], parser: argparse.ArgumentParser) -> None:
    """A misspelt command is a usage error that names the closest commands (argparse only lists them)."""
    word = next((a for a in argv if not a.startswith("-")), None)  # the top level's options take no value
    if word is not None and word not in COMMANDS:
        hint = did_you_mean(word, COMMANDS)
        parser.error(f"unknown command `{word}`" + (f"; {hint}" if hint else "") + f" (commands: {', '.join(COMMANDS)})")


def unrecognized(extra: list[str], command: argparse.ArgumentParser) -> str:
    """argparse's complaint about arguments no option takes, with the closest options named."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    options = [o for action in command._actions if action.dest != "help"
               for o in action.option_strings if o.startswith("--")]
    for arg in extra:
        if arg.startswith("--"):
            hint = _choice_as_option(arg, command) or did_you_mean(arg.partition("=")[0], options)
            if hint:
                return f"{message}; {hint}"
    return message


def _choice_as_option(arg: str, command: argparse.ArgumentParser) -> str | None:
    """`--json` where `--format json` is meant: the hint naming the option that takes it."""
    value = arg[2:].partition("=")[0]
    for action in command._actions:
        if action.choices and value in action.choices and action.option_strings:
            return f"did you mean `{action.option_strings[-1]} {value}`?"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    check_command(sys.argv[1:] if argv is None else argv, parser)
    args, extra = parser.parse_known_args(argv)
    command = parser.command_parsers[args.command]
    if extra:
        command.error(unrecognized(extra, command))
    try:
        return args.func(args) or 0
    except IncdslError as exc:
        print(exc.render("incdsl"), file=sys.stderr)
        return EXIT_SPEC
    except OutputError as exc:  # a path that cannot or must not be written: one line
        print(f"incdsl: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return EXIT_SPEC
    except MissingExtra as exc:
        print(f"incdsl: error: {terminal_safe(str(exc))}\n  install with: {exc.install}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except UsageError as exc:
        command.print_usage(sys.stderr)
        print(f"incdsl: error: {terminal_safe(str(exc))}", file=sys.stderr)  # it may quote a file name
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
