"""`incdsl check SPEC`: parse and check a spec, print a short summary."""
from __future__ import annotations

from collections import Counter


def register(sub) -> None:
    from ..cli import add_spec_arguments
    from ..search.sampling import CHECK_ALL_LIMIT
    p = sub.add_parser("check", help="check a spec and print a summary",
                       description="Parse and check a spec completely (syntax, names, types, shapes) and print "
                                   "a summary. A search space (a spec with `choice(...)`) gets its exact size and "
                                   f"its choices, and a check of its points (all of them up to {CHECK_ALL_LIMIT}). Exit 0 when it "
                                   "is sound, 1 with diagnostics when not.")
    add_spec_arguments(p)
    p.add_argument("--ir", action="store_true", help="also print the IR, one node a line")
    p.set_defaults(func=run)


def run(args) -> int:
    from .sample import check_space  # a spec with choices is a search space: report and check its points
    if (code := check_space(args)) is not None:
        return code
    from ..cli import load_spec
    from ..ir.graph import format_shape
    from ..passes.cost import count_costs
    net = load_spec(args)
    costs = count_costs(net)
    ops = Counter(net.graph.nodes[n]["op"] for n in net.layers)
    kinds = ", ".join(f"{op} {n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
    lines = [
        f"{net.name}: ok",
        f"  layers      {len(net.layers)} ({kinds})",
        f"  input       {format_shape(net.input_shape)}",
        f"  output      {format_shape(net.output_shape)}",
        f"  parameters  {costs.total.params:,}",
        f"  MACs        {costs.total.macs:,}",
    ]
    if net.aux_heads:
        heads = ", ".join(f"{h['name']} (weight {h['weight']:g}, output {format_shape(net.graph.nodes[h['output']]['shape'])})"
                          for h in net.aux_heads)
        lines.append(f"  aux heads   {heads}")
    if net.warnings:
        lines.append(f"  warnings    {len(net.warnings)}")
    print("\n".join(lines))
    if args.ir:
        print(net.format())
    return 0
