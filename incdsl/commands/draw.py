"""`incdsl draw SPEC`: a diagram of the network with Graphviz (SVG, PDF, PNG or DOT).

Exit codes besides the shared ones: 69 when the output needs Graphviz's `dot` and it is not
installed (DOT output never needs it).
"""
from __future__ import annotations

import os
import sys

EXIT_NO_GRAPHVIZ = 69  # sysexits EX_UNAVAILABLE


def _font(text: str) -> str:
    import argparse
    from ..render.style import check_font
    try:
        return check_font(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dpi(text: str) -> int:
    import argparse
    if not text.isdigit() or not 10 <= int(text) <= 2400:
        raise argparse.ArgumentTypeError(f"expected a resolution from 10 to 2400 dots per inch, got {text!r}")
    return int(text)


def _call(text: str) -> int:
    import argparse
    if not text.isdigit() or not 1 <= int(text) <= 10**9:
        raise argparse.ArgumentTypeError(f"expected a call number from 1, got {text!r}")
    return int(text)


def _label(text: str) -> str:
    import argparse
    if not text.strip() or len(text) > 60 or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"expected a short one-line label, got {text!r}")
    return text


def _max_nodes(text: str) -> int:
    import argparse
    if not text.isdigit() or not 1 <= int(text) <= 10**7:
        raise argparse.ArgumentTypeError(f"expected a number of boxes from 1 to 10000000, got {text!r}")
    return int(text)


def register(sub) -> None:
    from ..cli import add_spec_arguments
    from ..render.paper import BRANCH_ORDERS
    from ..render.style import FORMATS, LEVELS, RANKDIRS, DrawOptions
    max_nodes = DrawOptions.max_nodes  # `dot` lays out 2,000 boxes in about a second and 250 MB
    p = sub.add_parser(
        "draw", help="draw the network, one block, or every layer (SVG, PDF, PNG, DOT)",
        description="Draw a diagram with Graphviz: the overall schema (--level network, the default), one block "
                    "definition in the style of the papers' module figures (--block NAME), or every layer in "
                    "clusters by scope (--level layer). The format follows the suffix of -o (.svg .pdf .png .dot) "
                    "or --format; without -o the SVG (or DOT) goes to standard output. Writing DOT needs no "
                    "Graphviz; the other formats run its `dot` program.")
    add_spec_arguments(p)
    p.add_argument("--level", choices=LEVELS, help="network (default), block (needs --block) or layer")
    p.add_argument("--block", metavar="NAME", help="the block definition to draw (implies --level block)")
    p.add_argument("--call", type=_call, default=1, metavar="N",
                   help="draw the block from its N-th call (default 1): calls differ where an `if` picks layers")
    p.add_argument("-o", "--output", metavar="FILE", help="write here; the suffix picks the format")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from the -o suffix, else svg)")
    p.add_argument("--rankdir", choices=RANKDIRS, default="BT",
                   help="BT puts the input at the bottom as the papers do (default); TB at the top; LR at the left")
    p.add_argument("--no-aux", dest="aux", action="store_false", help="leave out the auxiliary heads")
    p.add_argument("--mono", action="store_true", help="black on white, no fill colours (for print)")
    p.add_argument("--dpi", type=_dpi, default=DrawOptions.dpi, metavar="N",
                   help=f"PNG resolution in dots per inch (default {DrawOptions.dpi}, for print)")
    p.add_argument("--input-label", default=DrawOptions.input_label, type=_label, metavar="TEXT",
                   help="name of a block figure's input box: 'Previous layer' (GoogLeNet's figures, the default) "
                        "or 'Filter concat' (Inception-v4's)")
    p.add_argument("--branch-order", choices=BRANCH_ORDERS, default="spec",
                   help="block figures: branches left to right as in the spec (default), or the pooling branch "
                        "first (Inception-v4's figures) or last")
    p.add_argument("--font", default=None, type=_font, metavar="NAME",
                   help="font name for every label: letters, digits, spaces and - _ , . (default Helvetica); "
                        "a font fontconfig does not know gets a warning, since Graphviz substitutes another")
    p.add_argument("--max-nodes", type=_max_nodes, default=max_nodes, metavar="N",
                   help=f"refuse drawings of more than N boxes (default {max_nodes:,}; Graphviz needs "
                        "minutes and gigabytes for ten thousand)")
    p.add_argument("--no-shapes", dest="shapes", action="store_false", help="no tensor shapes on the arrows")
    p.set_defaults(func=run)


def output_format(args) -> str:
    """--format, else the -o suffix, else svg."""
    from ..cli import UsageError
    from ..render.style import FORMATS
    if args.format:
        return args.format
    if not args.output or args.output == "-":
        return "svg"
    suffix = os.path.splitext(args.output)[1].lower().lstrip(".")
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format from {args.output!r}: use a .svg, .pdf, .png or .dot suffix, "
                         "or --format")
    return suffix


def _options(args, net):
    from ..cli import UsageError
    from ..render.collect import block_names
    from ..render.style import DrawOptions
    level = args.level or ("block" if args.block else "network")
    if args.block and level == "network":
        raise UsageError("--block applies to --level block (the block's figure) or --level layer (its layers), "
                         "not --level network")
    if args.call != 1 and not args.block:
        raise UsageError("--call picks which call of --block NAME to draw; give --block")
    if level == "block" and not args.block:
        names = block_names(net.graph)
        raise UsageError("--level block needs --block NAME; blocks of this network: " + (", ".join(names) or "none"))
    return DrawOptions(level=level, block=args.block, call=args.call, rankdir=args.rankdir, aux=args.aux, mono=args.mono,
                       font=args.font or DrawOptions.font, shapes=args.shapes, max_nodes=args.max_nodes,
                       input_label=args.input_label, branch_order=args.branch_order, dpi=args.dpi)


def warn_missing_font(font: str | None) -> None:
    """A font the user named that fontconfig does not know: Graphviz would substitute silently."""
    from ..render.fonts import installed_families, missing_font
    if font is not None and missing_font(font, installed_families()):
        print(f"incdsl: warning: font `{font}` is not installed (fc-list lists no such family); "
              "Graphviz will substitute another. `fc-list : family` lists those installed", file=sys.stderr)


def run(args) -> int:
    from ..cli import UsageError, load_spec
    from ..diagnostics import error
    from ..io import check_output, write_atomic
    from ..render.graphviz import DotTimeout, DrawError, DrawTooLarge, GraphvizNotFound, build_dot, run_dot
    fmt = output_format(args)
    if fmt in ("pdf", "png") and args.output in (None, "-") and sys.stdout.isatty():
        raise UsageError(f"{fmt.upper()} is binary: give -o FILE, or redirect standard output")
    net = load_spec(args)
    if fmt != "dot":
        warn_missing_font(args.font)
    if args.output:
        check_output(args.output, net.sources)  # before the layout, which can take a while
    try:
        source = build_dot(net, _options(args, net))
    except DrawTooLarge as exc:
        raise error(str(exc), hint="draw the overview (--level network) or one block (--block NAME); "
                                   f"--max-nodes {exc.boxes} draws it anyway") from None
    except DrawError as exc:
        raise UsageError(str(exc)) from None
    if fmt == "dot":
        data: str | bytes = source
    else:
        try:
            data = run_dot(source, fmt, dpi=args.dpi)
        except GraphvizNotFound as exc:
            print(f"incdsl: error: cannot write {fmt.upper()}: {exc}\n"
                  "(DOT output needs no Graphviz: use -o FILE.dot or --format dot)", file=sys.stderr)
            return EXIT_NO_GRAPHVIZ
        except DotTimeout as exc:
            raise error(str(exc), hint="draw less (--level network, --block NAME), or write the DOT text "
                                       "(--format dot) and run `dot` yourself") from None
    if args.output:
        write_atomic(args.output, data, inputs=net.sources)
    elif isinstance(data, str):
        sys.stdout.write(data)
        sys.stdout.flush()
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0
