"""`cost --against TABLE.csv`: a paper's table beside the computed numbers.

Table format (CSV, header names case-insensitive, other columns are kept as context):

    scope     the spec node or block scope the row describes (`inception_3a`, `conv1`);
              several joined with `+` are summed; `*` is the whole network (its totals,
              auxiliary heads left out); empty for rows that name nothing
    network   (optional) the network the row is about: rows for other networks are left out,
              so one table can hold a whole zoo (specs/tables/zoo.csv)
    set       (optional) parameter values the row needs, `n1=2 n2=2 bn=off`: rows whose values
              differ from the network's are left out (one spec, several configurations); a row
              that names its `network` is about it at its defaults but for these values, so a
              network given other values (`--set classes=10`) is not compared with it
    params    the paper's parameter count as printed: `2.7K`, `159K`, `1000K`, `6797700`
    ops       (or `macs`) the paper's multiply-adds as printed: `34M`, `1.5G`
    output    (or `output size`) the printed output size, HxWxC as papers write it: `112x112x64`
    note      shown beside the row

A printed value matches when the computed one rounds to it at the printed precision
(`2.7K` covers 2,650 to 2,750). A row that does not match is reported as such, with the ratio:
the paper's table is shown beside the layers, not made to agree with them.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from ..diagnostics import Span, error, terminal_safe
from ..io import ReadError, os_reason, read_text
from ..ir.graph import node
from .tables import SUFFIXES


@dataclass(frozen=True)
class Printed:
    """A number as a paper prints it: value and the precision its digits imply."""
    text: str
    value: float
    unit: float  # half of this is the rounding tolerance

    def matches(self, n: int | float, unit_scale: int = 1000) -> bool:
        """Whether n prints as this value, rounded to nearest or truncated (papers do both)."""
        scale = 1.0
        if unit_scale != 1000:  # the same digits read with K = 1024
            scale = (unit_scale / 1000) ** ("KMGT".index(self.text[-1].upper()) + 1) if self.text[-1].upper() in "KMGT" else 1.0
        value, unit = self.value * scale, self.unit * scale
        return abs(n - value) <= unit / 2 + 1e-9 or value <= n < value + unit


def parse_printed(text: str) -> Printed | None:
    t = text.strip().replace(",", "")
    if not t:
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([KMGTkmgt]?)", t)
    if not m:
        raise ValueError(f"cannot read {text!r} as a number such as 2.7K or 34M")
    digits, suffix = m.groups()
    mult = SUFFIXES[suffix.upper()]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return Printed(t, float(digits) * mult, mult / 10**decimals)


@dataclass(frozen=True)
class Table:
    path: str
    header: list
    rows: list  # dicts with lower-cased keys, plus "_line"


def _read_rows(path: str) -> list[list[str]]:
    """The CSV rows of a table file: a regular file of at most `incdsl.io.MAX_FILE_BYTES`, UTF-8."""
    try:
        text = read_text(path)
    except OSError as exc:
        raise error(f"cannot read reference table {path}: {os_reason(exc)}") from None
    except ReadError as exc:
        if exc.line is None:
            raise error(f"cannot read reference table {path}: {exc.reason}") from None
        raise error(f"reference table: {exc.reason}", Span(path, exc.line, exc.col, exc.line, exc.col + 1),
                    hint="save the table as UTF-8") from None
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise error(f"cannot read reference table {path}: {exc}") from None


def read_table(path: str) -> Table:
    """Read and validate a reference table. Raises IncdslError with the file:line of a bad cell."""
    lines = _read_rows(path)
    if not lines:
        raise error(f"reference table {path} is empty")
    header = [h.strip().lower() for h in lines[0]]
    if "scope" not in header:
        raise error(f"reference table {path} has no `scope` column",
                    Span(path, 1, 1, 1, len(",".join(lines[0])) + 1),
                    hint="name the spec node or block each row describes in a `scope` column")
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        row = dict(zip(header, (c.strip() for c in cells)))
        if row.get("set"):
            try:
                parse_settings(row["set"])
            except ValueError as exc:
                col = header.index("set") + 1
                raise error(f"{exc}", Span(path, number, col, number, col + 1)) from None
        for key in ("params", "ops", "macs"):
            if row.get(key):
                try:
                    parse_printed(row[key])
                except ValueError as exc:
                    col = header.index(key) + 1
                    raise error(f"{exc}", Span(path, number, col, number, col + 1)) from None
        row["_line"] = number
        rows.append(row)
    return Table(path, header, rows)


def parse_settings(text: str) -> dict[str, str]:
    """`n1=2 n2=2 bn=off` -> {"n1": "2", "n2": "2", "bn": "off"}."""
    out = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        if not eq or not name.isidentifier() or not value:
            raise ValueError(f"cannot read {item!r} as a parameter value such as n1=2")
        out[name] = value
    return out


def _same_value(actual, printed: str) -> bool:
    """Whether a parameter's value is the one a table cell writes (`off` for off/False/None)."""
    if printed.lower() in ("off", "no", "false"):
        return actual in (False, None)
    if printed.lower() in ("on", "yes", "true"):
        return actual is True
    try:
        return actual is not None and not isinstance(actual, bool) and float(actual) == float(printed)
    except (TypeError, ValueError):
        return str(actual) == printed


def applies(row: dict, network) -> bool:
    """Whether a row is about this network: its `network` and `set` cells, where given, agree. A row
    that names its network is about that network at its defaults but for what `set` says: with
    `--set classes=10` a zoo table's ImageNet row no longer applies."""
    if row.get("network") and row["network"] != network.name:
        return False
    params, wanted = network.params, parse_settings(row.get("set", ""))
    if not all(k in params and _same_value(params[k], v) for k, v in wanted.items()):
        return False
    return not row.get("network") or all(k in wanted for k in getattr(network, "changed_params", ()))


def other_configurations(table: Table, network) -> list[int]:
    """The lines of rows about this network that `applies` leaves out: another configuration."""
    return [r["_line"] for r in table.rows if r.get("network") == network.name and not applies(r, network)]


def other_configurations_note(lines: list[int], network) -> str:
    """Why rows of this network were not compared, for the terminal."""
    changed = " ".join(f"{k}={_fmt_setting(network.params[k])}" for k in network.changed_params)
    rows = ", ".join(map(str, lines[:8])) + (f" and {len(lines) - 8} more" if len(lines) > 8 else "")
    given = f"; this one sets {changed}" if changed else ""
    return (f"not compared: row{'s' if len(lines) > 1 else ''} {rows} of the table "
            f"{'are' if len(lines) > 1 else 'is'} about `{network.name}` in another configuration "
            f"(the spec's defaults but for the row's `set` cell{given})")


def _fmt_setting(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _members(names: list[str], scope: str) -> list[str]:
    return [n for n in names if n == scope or n.startswith(scope + "/")]


def _fmt_shape_hwc(shape) -> str:
    """HxWxC as papers print it; a flat vector of n is 1x1xn."""
    c, h, w = shape if len(shape) == 3 else (shape[0], 1, 1)
    return f"{h}x{w}x{c}"


def _weights(graph, name: str, params: int) -> int:
    """Parameters less biases and batch-norm shifts/scales: what most papers' tables count."""
    n = node(graph, name)
    return n.kind.weights(n.attrs, params)


def compare(table: Table, network, costs) -> list[dict]:
    """One record per table row: the printed and computed values and a verdict."""
    by_name = costs.by_name()
    names = list(by_name)
    out = []
    trunk = set(network.layers)
    for row in (r for r in table.rows if applies(r, network)):
        scopes = [s.strip() for s in row.get("scope", "").split("+") if s.strip()]
        rec = {"line": row["_line"], "scope": row.get("scope", ""), "context": row.get("type") or row.get("layer") or "",
               "note": row.get("note", ""), "problems": []}
        members = []
        for sc in scopes:
            found = [n for n in names if n in trunk] if sc == "*" else _members(names, sc)
            if not found:
                rec["problems"].append(f"`{sc}` is not a node or scope of {network.name}")
            members += found
        if not scopes or not members:
            rec["verdict"] = "not compared" if not scopes else "unknown scope"
            out.append(rec)
            continue
        params = sum(by_name[m].params for m in members)
        weights = sum(_weights(network.graph, m, by_name[m].params) for m in members)
        macs = sum(by_name[m].macs for m in members)
        last = by_name[members[-1]]
        rec.update(params=params, macs=macs, output=_fmt_shape_hwc(last.shape))
        checks = []
        for key, value in (("params", params), ("ops", macs), ("macs", macs)):
            printed = parse_printed(row.get(key, "") or "")
            if printed is None:
                continue
            rec[f"paper_{'ops' if key != 'params' else 'params'}"] = printed.text
            alternatives = [value] + ([weights] if key == "params" and weights != params else [])
            if any(printed.matches(v) for v in alternatives):
                checks.append(True)
                if key == "params" and not printed.matches(params):
                    rec["problems"].append(f"params match the weights alone ({weights:,}; biases left out)")
            # K as 1024 only for parameters: 3.8G multiply-adds never means 3.8 x 2^30
            elif key == "params" and any(printed.matches(v, 1024) for v in alternatives):
                checks.append(True)
                rec["problems"].append(f"{key} match only reading K as 1024")
            else:
                checks.append(False)
                ratio = value / printed.value if printed.value else float("inf")
                rec["problems"].append(f"{key}: the paper prints {printed.text}, its layers give {value:,} (x{ratio:.2f})")
        printed_out = row.get("output") or row.get("output size")
        if printed_out:
            rec["paper_output"] = printed_out
            if printed_out.replace(" ", "").lower() != rec["output"]:
                checks.append(False)
                rec["problems"].append(f"output: the paper prints {printed_out}, the spec gives {rec['output']}")
            else:
                checks.append(True)
        rec["verdict"] = "matches" if all(checks) else "INCONSISTENT"
        out.append(rec)
    return out


def render_comparison(records: list[dict], fmt: str) -> str:
    """The comparison as text, csv, markdown or latex (JSON embeds the records instead)."""
    header = ["row", "scope", "paper params", "params", "paper ops", "MACs", "verdict"]
    # cells and notes quote the table's own text: any character in it prints escaped, on one line
    body = [[terminal_safe(c, newlines=False) for c in
             [str(r["line"]), r["scope"] or r["context"], r.get("paper_params", ""),
              f"{r['params']:,}" if "params" in r else "", r.get("paper_ops", ""),
              f"{r['macs']:,}" if "macs" in r else "", r["verdict"]]] for r in records]
    problems = [terminal_safe(f"row {r['line']} ({r['scope']}): {'' if r['verdict'] == 'INCONSISTENT' else 'note: '}{p}",
                              newlines=False)
                for r in records for p in r["problems"]]
    compared = [r for r in records if r["verdict"] != "not compared"]
    bad = sum(r["verdict"] != "matches" for r in compared)
    summary = (f"{len(compared) - bad} of {len(compared)} compared rows reproduced; {bad} inconsistent with the layers"
               + (f"; {len(records) - len(compared)} rows name no scope" if len(records) > len(compared) else ""))
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header] + body)
        return buf.getvalue()
    if fmt == "markdown":
        from .tables import markdown_cell
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in body]
        return "\n".join(lines + [""] + [f"- {p}" for p in problems] + ["", summary]) + "\n"
    if fmt == "latex":
        from .tables import latex_cell
        lines = ["\\begin{tabular}{llrrrrl}", "\\toprule", " & ".join(header) + r" \\", "\\midrule"]
        lines += [" & ".join(latex_cell(c) for c in row) + r" \\" for row in body]
        return "\n".join(lines + ["\\bottomrule", "\\end{tabular}"]) + "\n"
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    fmt_line = lambda row: "  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()
    lines = ["against the reference table:", fmt_line(header)] + [fmt_line(row) for row in body]
    return "\n".join(lines + [""] + problems + [summary]) + "\n"
