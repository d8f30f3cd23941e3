"""`incdsl cost SPEC`: parameters, multiply-adds, FLOPs, memory and receptive fields."""
from __future__ import annotations

import sys


def register(sub) -> None:
    from ..cli import add_spec_arguments
    from ..report import DTYPE_BYTES
    p = sub.add_parser(
        "cost", help="count parameters, MACs, FLOPs and activation memory",
        description="Count parameters, multiply-accumulates (MACs, the papers' multiply-adds), FLOPs (2 x MACs), "
                    "activation memory and receptive fields, per layer, block or stage. Auxiliary heads get their "
                    "own rows and stay out of the totals unless --aux. Exit 0 within budget, 3 over a --max-* "
                    "budget, 1 on a spec error.")
    add_spec_arguments(p)
    p.add_argument("--by", choices=("layer", "block", "stage"), default="block", help="row granularity (default block)")
    p.add_argument("--format", choices=("text", "csv", "json", "markdown", "latex"), default="text")
    p.add_argument("--aux", action="store_true", help="include auxiliary heads in the totals")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32", help="for activation memory")
    p.add_argument("--batch", type=int, default=1, help="batch size: scales activations and memory; params, MACs and FLOPs stay per image (default 1)")
    p.add_argument("--max-params", metavar="N", help="budget, e.g. 25M; exit 3 when exceeded")
    p.add_argument("--max-macs", metavar="N", help="budget, e.g. 6G; exit 3 when exceeded")
    p.add_argument("--max-flops", metavar="N", help="budget, e.g. 12G; exit 3 when exceeded")
    p.add_argument("--against", metavar="TABLE.csv", help="a reference table (the paper's numbers) to compare with")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import UsageError, load_spec
    from ..io import write_atomic
    from ..passes.cost import count_costs
    from ..report import build_report, parse_amount, render

    budgets = {}
    for key, label in (("max_params", "params"), ("max_macs", "macs"), ("max_flops", "flops")):
        value = getattr(args, key)
        if value is not None:
            try:
                budgets[label] = parse_amount(value)
            except ValueError as exc:
                raise UsageError(f"--{key.replace('_', '-')}: {exc}") from None
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    reference = None
    if args.against:
        from ..against import read_table
        reference = read_table(args.against)  # before anything is printed: a bad table is an error
    net = load_spec(args)
    costs = count_costs(net)
    report = build_report(net, costs, args.by, args.aux, args.dtype, args.batch)
    comparison = None
    if reference is not None:
        from ..against import compare, render_comparison
        comparison = compare(reference, net, costs)
        report["against"] = comparison
    text = render(report, args.format)
    if comparison is not None and args.format != "json":
        text += "\n" + render_comparison(comparison, args.format)
    if args.output:
        write_atomic(args.output, text, inputs=[*net.sources, *([args.against] if args.against else [])])
    else:
        sys.stdout.write(text)
    over = []
    for label, limit in budgets.items():
        value = report["total"][label]
        if value > limit:
            over.append(f"over budget: {label} {value:,} > {limit:,} (by {value - limit:,}, +{100 * (value - limit) / limit:.1f}%)")
    for line in over:
        print(f"incdsl: {line}", file=sys.stderr)
    return 3 if over else 0
