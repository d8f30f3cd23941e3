"""Cost reports: rows per layer, block instance or stage, and their rendering.

Pure functions from `Costs` (passes/cost.py) to row data and from rows to text in one of
five formats. Grouping uses the IR's scope paths: a *block* is the first scope component
(`inception_a.2`, or a top-level layer such as `conv_0`), a *stage* is a block with its
repeat index dropped (`inception_a`, the four instances together).
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from fractions import Fraction

from ..ir.graph import format_shape

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "float64": 8, "int8": 1}
SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
AMOUNT_LIMIT = 10**30  # budgets above this mean nothing (and a float would overflow past 1e308)


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # op for layers; block name for blocks; "N x block" for stages
    shape: tuple
    params: int
    macs: int
    activations: int  # output elements per image, summed over the row's nodes
    rf: tuple
    aux: str | None
    count: int = 1  # nodes (layers) or instances (stages)


def parse_amount(text: str) -> int:
    """`25M`, `13G`, `1.5G`, `42679816`, `0` -> int, exactly (no float). Raises ValueError.

    Budgets are inclusive upper limits, so 0 is a budget (a network without parameters
    meets it); above `AMOUNT_LIMIT` is an error."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGTkmgt]?)\s*", text)
    shown = text if len(text) <= 40 else text[:20] + "..." + text[-10:]
    if not m:
        hint = _amount_hint(text.strip())
        raise ValueError(f"expected a number with an optional K, M, G or T suffix, got {shown!r}"
                         + (f"; {hint}" if hint else ""))
    digits = m.group(1).lstrip("0")
    if len(digits.partition(".")[0]) > 31:  # checked before the arithmetic: the text may be any length
        raise ValueError(f"{shown} is too large; budgets go up to {AMOUNT_LIMIT:.0e}")
    value = Fraction(m.group(1)) * SUFFIXES[m.group(2).upper()]
    if value > AMOUNT_LIMIT:
        raise ValueError(f"{shown} is too large; budgets go up to {AMOUNT_LIMIT:.0e}")
    return round(value)


def _amount_hint(text: str) -> str | None:
    """What a rejected budget probably meant: `2e9` -> write `2G`, `13GB` -> write `13G`,
    `-1` -> budgets start at 0; None when there is no good guess."""
    sci = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE]\+?([0-9]{1,2})", text)
    if sci:  # exponents of two digits at most: 10**99 is cheap, and anything above 1e30 is refused anyway
        value = Fraction(sci.group(1)) * 10 ** int(sci.group(2))
        if value > AMOUNT_LIMIT:
            return f"budgets go up to {AMOUNT_LIMIT:.0e}"
        return f"write `{_with_suffix(value)}` for {text}"
    unit = re.fullmatch(r"([0-9.]+[KMGTkmgt])[Bb]", text)
    if unit:
        return f"write `{unit.group(1).upper()}`: a budget counts parameters or operations, not bytes"
    if re.fullmatch(r"-[0-9.]+[KMGTkmgt]?", text):
        return "a budget is a count from 0 up"
    return None


def _with_suffix(value: Fraction) -> str:
    """2000000000 -> '2G', 1500000 -> '1.5M', 12 -> '12': the largest suffix that keeps the
    number exact in at most three decimals."""
    for suffix in ("T", "G", "M", "K"):
        scaled = value / SUFFIXES[suffix]
        if scaled >= 1 and (scaled * 1000).denominator == 1:
            return f"{_decimal(scaled)}{suffix}"
    return _decimal(value)


def _decimal(value: Fraction) -> str:
    """An exact decimal of a Fraction whose denominator divides a power of ten."""
    whole, rest = divmod(value.numerator, value.denominator)
    if not rest:
        return str(whole)
    digits = ""
    while rest and len(digits) < 12:
        rest *= 10
        digit, rest = divmod(rest, value.denominator)
        digits += str(digit)
    return f"{whole}.{digits}"


def counted(n: int, noun: str) -> str:
    """1 -> '1 epoch', 3 -> '3 epochs' (regular plurals only), with thousands separators."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def human(n: int) -> str:
    """42679816 -> '42.68M'."""
    for suffix, unit in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= unit:
            return f"{n / unit:.2f}{suffix}"
    return str(n)


def _block_key(name: str) -> str:
    return name.split("/", 1)[0]


def _stage_key(name: str) -> str:
    return re.sub(r"\.\d+$", "", _block_key(name))


def rows(costs, graph, by: str = "layer", aux: bool = True) -> list[Row]:
    """Rows of a report. `by` is layer | block | stage; aux heads come last, on their own rows."""
    nodes = [c for c in costs.nodes if c.name != graph.graph["input"] and (aux or c.aux is None)]
    if by == "layer":
        return [Row(c.name, c.op, c.shape, c.params, c.macs, c.activations, c.rf, c.aux) for c in nodes]
    instances = graph.graph.get("instances", {})
    key = _block_key if by == "block" else _stage_key
    groups: dict[str, list] = {}
    for c in nodes:
        # an auxiliary head is one row, named after the head
        groups.setdefault(c.aux if c.aux else key(c.name), []).append(c)
    out = []
    for k, members in groups.items():
        last = members[-1]
        inst = instances.get(_block_key(members[0].name)) if not last.aux else None
        kind = inst["block"] if inst else ("aux head" if last.aux else members[0].op)
        count = len({_block_key(m.name) for m in members}) if inst else len(members)
        if by == "stage" and inst and count > 1:
            kind = f"{count} x {kind}"
        out.append(Row(k, kind, last.shape, sum(m.params for m in members), sum(m.macs for m in members),
                       sum(m.activations for m in members), last.rf, last.aux, count))
    trunk = [r for r in out if r.aux is None]
    return trunk + [r for r in out if r.aux is not None]


def row_values(costs, graph, by: str, values: dict[str, int]) -> dict[str, int]:
    """Per-node `values` summed into the rows `rows(..., by)` makes (same names); aux rows get 0."""
    out: dict[str, int] = {}
    key = (lambda n: n) if by == "layer" else (_block_key if by == "block" else _stage_key)
    for c in costs.nodes:
        if c.op == "input":
            continue
        name = c.aux if (c.aux and by != "layer") else key(c.name)
        out[name] = out.get(name, 0) + values.get(c.name, 0)
    return out


def memory_bytes(elements: int, dtype: str, batch: int) -> int:
    return elements * DTYPE_BYTES[dtype] * batch


COLUMNS = ("name", "kind", "output", "params", "macs", "flops", "activations", "memory_bytes", "rf")


def row_record(r: Row, dtype: str, batch: int) -> dict:
    return {"name": r.name, "kind": r.kind, "output": format_shape(r.shape), "params": r.params, "macs": r.macs,
            "flops": 2 * r.macs, "activations": r.activations * batch,
            "memory_bytes": memory_bytes(r.activations, dtype, batch),
            "rf": "x".join(map(str, r.rf)) if r.rf else "", "aux": r.aux}


def totals_record(total, output_shape, dtype: str, batch: int) -> dict:
    return {"params": total.params, "macs": total.macs, "flops": total.flops,
            "activations": total.activations * batch, "memory_bytes": memory_bytes(total.activations, dtype, batch),
            "output": format_shape(output_shape)}


def _fmt_bytes(n: int) -> str:
    for suffix, unit in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= unit:
            return f"{n / unit:.1f} {suffix}"
    return f"{n} B"


def render(report: dict, fmt: str) -> str:
    """Render a report (see `build_report`) as text | csv | json | markdown | latex."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    recs = report["rows"]
    if fmt == "csv":
        buf = io.StringIO()
        extra = ["convention"] if report.get("convention") else []
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS) + ["aux"] + extra, lineterminator="\n")
        w.writeheader()
        for r in recs:
            w.writerow(r)
        t = report["total"]
        w.writerow({"name": "total", "kind": "", "output": t["output"], "params": t["params"], "macs": t["macs"],
                    "flops": t["flops"], "activations": t["activations"], "memory_bytes": t["memory_bytes"],
                    "rf": "", "aux": "", **({"convention": report["convention"]["total"]} if extra else {})})
        return buf.getvalue()
    header = table_header(report["batch"])
    body = [[r["name"] + (" [aux]" if r["aux"] else ""), r["kind"], r["output"], f"{r['params']:,}", f"{r['macs']:,}",
             f"{r['activations']:,}", r["rf"]] for r in recs]
    t = report["total"]
    total_row = ["total" + (" (with aux)" if report["include_aux"] else ""), "", t["output"], f"{t['params']:,}",
                 f"{t['macs']:,}", f"{t['activations']:,}", ""]
    numeric = {3, 4, 5}
    conv = report.get("convention")
    if conv:  # one more column: the counter's number per row, after MACs
        header.insert(5, conv["name"])
        for row, r in zip(body, recs):
            row.insert(5, f"{r['convention']:,}")
        total_row.insert(5, f"{conv['total']:,}")
        numeric = {3, 4, 5, 6}
    if fmt == "markdown":
        return markdown_table(header, body, total_row, numeric)
    if fmt == "latex":
        return latex_table(header, body, total_row, numeric)
    per_image = " per image" if report["batch"] > 1 else ""
    out = [f"{report['network']}: input {report['input']}, batch {report['batch']}, {report['dtype']}"
           + (" (params and MACs per image; activations and memory for the batch)" if report["batch"] > 1 else ""),
           *aligned_lines(header, body, total_row, numeric)]
    if conv:
        out.append(f"{conv['name']}: {conv['total']:,} {conv['unit']}, as {conv['tool']} prints; it counts {conv['counts']}")
    out.append(f"FLOPs {t['flops']:,} ({human(t['flops'])}){per_image}; MACs {human(t['macs'])}; params {human(t['params'])}; "
               f"activation memory {_fmt_bytes(t['memory_bytes'])}")
    return "\n".join(out) + "\n"


def markdown_table(header: list[str], body: list[list[str]], total: list[str], numeric: set[int]) -> str:
    """A GitHub table, numeric columns right-aligned, the total row in bold."""
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in body]
    lines.append("| " + " | ".join(f"**{markdown_cell(c)}**" if c else "" for c in total) + " |")
    return "\n".join(lines) + "\n"


def latex_table(header: list[str], body: list[list[str]], total: list[str], numeric: set[int]) -> str:
    """A booktabs tabular; header cells holding `$` are already LaTeX."""
    spec = "".join("r" if i in numeric else "l" for i in range(len(header)))
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(h if "$" in h else latex_cell(h) for h in header) + r" \\", "\\midrule"]
    lines += [" & ".join(latex_cell(c) for c in row) + r" \\" for row in body]
    lines += ["\\midrule", " & ".join(latex_cell(c) for c in total) + r" \\", "\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def aligned_lines(header: list[str], body: list[list[str]], total: list[str], numeric: set[int]) -> list[str]:
    """Header, rule, rows, rule, total: columns padded, numeric ones right-aligned."""
    table = [header] + body + [total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row):
        return "  ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()
    rule = "-" * len(line(header))
    return [line(header), rule, *[line(r) for r in body], rule, line(total)]


def table_header(batch: int) -> list[str]:
    """Column titles; with a batch the table says which columns are per image and which per batch."""
    if batch == 1:
        return ["name", "kind", "output", "params", "MACs", "activations", "RF"]
    return ["name", "kind", "output", "params", "MACs/image", f"activations x{batch}", "RF"]


def markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


_LATEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_cell(text: str) -> str:
    """`text` as LaTeX prints it: every special character escaped (a reference table's cells may hold any)."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def build_report(network, costs, by: str, include_aux: bool, dtype: str, batch: int) -> dict:
    """The report as plain data; JSON carries exactly this."""
    total = costs.total_with_aux if include_aux else costs.total
    return {
        "network": network.name,
        "input": format_shape(network.input_shape),
        "by": by, "dtype": dtype, "batch": batch, "include_aux": include_aux,
        # --batch scales only activation counts and memory; costs stay per image (budgets compare per image)
        "per_image": ["params", "macs", "flops"], "per_batch": ["activations", "memory_bytes"],
        "total": totals_record(total, network.output_shape, dtype, batch),
        "aux_heads": [{"name": h["name"], "weight": h["weight"]} for h in network.aux_heads],
        "rows": [row_record(r, dtype, batch) for r in rows(costs, network.graph, by, aux=True)],
    }
