"""`incdsl cost SPEC`: parameters, multiply-adds, FLOPs, memory and receptive fields."""
from __future__ import annotations

import sys


def register(sub) -> None:
    from ..cli import add_spec_arguments
    from ..report.conventions import CONVENTIONS
    from ..report.tables import DTYPE_BYTES
    p = sub.add_parser(
        "cost", help="count parameters, MACs, FLOPs and activation memory",
        description="Count parameters, multiply-accumulates (MACs, the papers' multiply-adds), FLOPs (2 x MACs), "
                    "activation memory and receptive fields, per layer, block or stage. Auxiliary heads get their "
                    "own rows and stay out of the totals unless --aux. Exit 0 within budget, 3 over a --max-* "
                    "budget, 1 on a spec error.")
    add_spec_arguments(p)
    p.add_argument("other", nargs="?", metavar="SPEC_B",
                   help="a second spec: its totals and per-row deltas beside the first's (ablations, reviews)")
    p.add_argument("--by", choices=("layer", "block", "stage"), default="block", help="row granularity (default block)")
    p.add_argument("--format", choices=("text", "csv", "json", "markdown", "latex"), default="text",
                   help="text (default), csv, json, or a markdown or LaTeX table for a paper")
    p.add_argument("--aux", action="store_true", help="include auxiliary heads in the totals")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32", metavar="TYPE",
                   help="bytes per activation value, for activation memory: float32 (fp32, the default), "
                        "bfloat16 (bf16), float16 (fp16), float64 or int8")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size: scales activations and memory; params, MACs and FLOPs stay per image (default 1)")
    p.add_argument("--max-params", metavar="N", help="budget, e.g. 25M; exit 3 when exceeded")
    p.add_argument("--max-macs", metavar="N", help="budget, e.g. 6G; exit 3 when exceeded")
    p.add_argument("--max-flops", metavar="N", help="budget, e.g. 12G; exit 3 when exceeded")
    p.add_argument("--against", metavar="TABLE.csv", help="a reference table (the paper's numbers) to compare with")
    p.add_argument("--convention", metavar="NAME",
                   help="add the number another counter prints for the compiled network: "
                        + ", ".join(CONVENTIONS) + "; `all` lists every one")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import UsageError, load_spec
    from ..io import write_atomic
    from ..passes.cost import count_costs
    from ..report.tables import build_report, parse_amount, render

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
    if args.convention is not None and args.convention != "all":
        from ..report.conventions import CONVENTIONS
        if args.convention not in CONVENTIONS:
            from ..diagnostics import did_you_mean
            hint = did_you_mean(args.convention, [*CONVENTIONS, "all"])
            raise UsageError(f"--convention: unknown counter `{args.convention}`; "
                             + (f"{hint} " if hint else "") + "known: " + ", ".join(CONVENTIONS) + ", all")
    if args.convention == "all" and args.against:
        # the listing is one total per counter: it has no rows to set beside the paper's
        raise UsageError("--against compares a cost table, which --convention all does not print; "
                         "use --convention NAME (or none) with --against")
    if args.convention == "all":
        # one total per counter for one image: the table's options have nothing to act on
        ignored = [flag for flag, used in (("--by", args.by != "block"), ("--aux", args.aux), ("--batch", args.batch != 1),
                                           ("--dtype", args.dtype != "float32")) if used]
        if ignored:
            raise UsageError(f"{', '.join(ignored)} shape{'s' if len(ignored) == 1 else ''} the cost table, which "
                             "--convention all does not print (one total per counter, for one image); "
                             "use --convention NAME to add a counter's column to the table")
    if args.other is not None:
        return run_diff(args)
    reference = None
    if args.against:
        from ..report.against import read_table
        reference = read_table(args.against)  # before anything is printed: a bad table is an error
    net = load_spec(args)
    costs = count_costs(net)
    report = build_report(net, costs, args.by, args.aux, args.dtype, args.batch)
    if args.convention == "all":
        _emit(args, render_conventions(net, costs, args.format), net)
        return _check_budgets(report["total"], budgets)  # the listing does not lift a budget
    if args.convention is not None:
        add_convention(report, net, costs, args.convention, args.by)
    comparison = None
    if reference is not None:
        from ..report.against import compare, other_configurations, other_configurations_note, render_comparison
        comparison = compare(reference, net, costs)
        report["against"] = comparison
        skipped = [] if comparison else other_configurations(reference, net)  # why nothing was compared
        if skipped:
            report["against_other_configurations"] = skipped
    text = render(report, args.format)
    if comparison is not None and args.format != "json":
        text += "\n" + render_comparison(comparison, args.format)
        if skipped:
            text += other_configurations_note(skipped, net) + "\n"
    _emit(args, text, net)
    return _check_budgets(report["total"], budgets)


def _check_budgets(total: dict, budgets: dict) -> int:
    """Print a line per exceeded budget; 3 when any is, else 0."""
    over = []
    for label, limit in budgets.items():
        value = total[label]
        if value > limit:
            share = f", +{100 * (value - limit) / limit:.1f}%" if limit else ""  # a budget of 0 has no percentage
            over.append(f"over budget: {label} {value:,} > {limit:,} (by {value - limit:,}{share})")
    for line in over:
        print(f"incdsl: {line}", file=sys.stderr)
    return 3 if over else 0


def _emit(args, text: str, *nets) -> None:
    from ..io import write_atomic
    if args.output:
        sources = [s for n in nets for s in n.sources]
        write_atomic(args.output, text, inputs=[*sources, *([args.against] if args.against else [])])
    else:
        sys.stdout.write(text)


def add_convention(report: dict, net, costs, name: str, by: str) -> None:
    """Add counter `name`'s total and per-row numbers to the report (rows of aux heads get 0)."""
    from ..report.conventions import CONVENTIONS, per_node
    from ..report.tables import row_values
    c = CONVENTIONS[name]
    per_row = row_values(costs, net.graph, by, per_node(net, costs, name))
    for r in report["rows"]:
        r["convention"] = 0 if r["aux"] else per_row.get(r["name"], 0)
    report["convention"] = {"name": name, "tool": c.tool, "unit": c.unit, "counts": c.counts,
                            "total": sum(per_row.get(r["name"], 0) for r in report["rows"] if not r["aux"])}


def render_conventions(net, costs, fmt: str) -> str:
    """Every counter's total for one network: what each tool prints and what it counts."""
    import json
    from ..report.conventions import CONVENTIONS, count_convention
    from ..report.tables import markdown_cell
    recs = [{"convention": c.name, "total": count_convention(net, costs, c.name), "unit": c.unit, "tool": c.tool,
             "counts": c.counts} for c in CONVENTIONS.values()]
    if fmt == "json":
        return json.dumps({"network": net.name, "conventions": recs}, indent=2) + "\n"
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(recs[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(recs)
        return buf.getvalue()
    if fmt in ("markdown", "latex"):
        lines = ["| counter | total | unit | counts |", "|---|---:|---|---|"]
        lines += [f"| {r['convention']} | {r['total']:,} | {r['unit']} | {markdown_cell(r['counts'])} |" for r in recs]
        return "\n".join(lines) + "\n"
    width = max(len(r["convention"]) for r in recs)
    num = max(len(f"{r['total']:,}") for r in recs)
    lines = [f"{net.name}: input {'x'.join(map(str, net.input_shape))}, batch 1, what each counter prints"]
    lines += [f"{r['convention']:<{width}}  {r['total']:>{num},}  {r['unit']}: {r['counts']}" for r in recs]
    return "\n".join(lines) + "\n"


def run_diff(args) -> int:
    """`incdsl cost A.inc B.inc`: side-by-side totals and per-row deltas."""
    import argparse
    import os
    from ..cli import UsageError, load_spec
    from ..report.diff import build_diff, render_diff
    from ..passes.cost import count_costs
    for flag in ("against", "max_params", "max_macs", "max_flops", "convention"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')} takes one spec, not two")
    net_a = load_spec(args)
    net_b = load_spec(argparse.Namespace(**{**vars(args), "spec": args.other, "spec_text": None}))  # not A's text
    label_a, label_b = (os.path.splitext(os.path.basename(p))[0] for p in (args.spec, args.other))
    if label_a == label_b:
        label_a, label_b = "A", "B"
    diff = build_diff(net_a, count_costs(net_a), net_b, count_costs(net_b), args.by)
    _emit(args, render_diff(diff, args.format, label_a, label_b), net_a, net_b)
    return 0
