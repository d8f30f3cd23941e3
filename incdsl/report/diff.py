"""Two specs side by side: totals and per-row deltas of parameters and MACs (`incdsl cost A B`).

For ablation tables and reviewers: rows are matched by name (block instance, stage or layer
scope path), in the order of both networks merged; a row only one network has shows a blank
on the other side.
"""
from __future__ import annotations

import csv
import difflib
import io
import json

from .tables import aligned_lines, human, latex_table, markdown_table, rows


def _merge(names_a: list[str], names_b: list[str]) -> list[str]:
    """Both name lists merged, keeping each one's order (B-only names go where B has them)."""
    out = []
    sm = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        out += names_a[i1:i2]
        if tag != "equal":
            out += [n for n in names_b[j1:j2] if n not in names_a]
    return out


def build_diff(net_a, costs_a, net_b, costs_b, by: str) -> dict:
    """The comparison as plain data (JSON carries exactly this). Auxiliary heads are left out."""
    ra = {r.name: r for r in rows(costs_a, net_a.graph, by, aux=False)}
    rb = {r.name: r for r in rows(costs_b, net_b.graph, by, aux=False)}
    out_rows = []
    for name in _merge(list(ra), list(rb)):
        a, b = ra.get(name), rb.get(name)
        out_rows.append({
            "name": name, "kind": (a or b).kind if a is None or b is None or a.kind == b.kind else f"{a.kind} / {b.kind}",
            "params_a": a.params if a else None, "params_b": b.params if b else None,
            "macs_a": a.macs if a else None, "macs_b": b.macs if b else None,
            "params_delta": (b.params if b else 0) - (a.params if a else 0),
            "macs_delta": (b.macs if b else 0) - (a.macs if a else 0)})
    ta, tb = costs_a.total, costs_b.total
    return {"a": net_a.name, "b": net_b.name, "by": by, "rows": out_rows,
            "total": {"params_a": ta.params, "params_b": tb.params, "params_delta": tb.params - ta.params,
                      "macs_a": ta.macs, "macs_b": tb.macs, "macs_delta": tb.macs - ta.macs}}


def _num(v) -> str:
    return "" if v is None else f"{v:,}"


def _delta(v: int) -> str:
    return f"{v:+,}" if v else "0"


def _pct(delta: int, base: int) -> str:
    return f"{100 * delta / base:+.1f}%" if base else ""


def render_diff(diff: dict, fmt: str, label_a: str, label_b: str) -> str:
    """Render `build_diff`'s data as text | csv | json | markdown | latex."""
    if fmt == "json":
        return json.dumps(diff, indent=2) + "\n"
    keys = ("params_a", "params_b", "params_delta", "macs_a", "macs_b", "macs_delta")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["name", "kind", *keys], lineterminator="\n")
        w.writeheader()
        for r in diff["rows"]:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in ["name", "kind", *keys]})
        w.writerow({"name": "total", "kind": "", **diff["total"]})
        return buf.getvalue()
    header = ["name", "kind", f"params {label_a}", f"params {label_b}", "Δ params",
              f"MACs {label_a}", f"MACs {label_b}", "Δ MACs"]
    body = [[r["name"], r["kind"], _num(r["params_a"]), _num(r["params_b"]), _delta(r["params_delta"]),
             _num(r["macs_a"]), _num(r["macs_b"]), _delta(r["macs_delta"])] for r in diff["rows"]]
    t = diff["total"]
    total = ["total", "", _num(t["params_a"]), _num(t["params_b"]),
             f"{_delta(t['params_delta'])} ({_pct(t['params_delta'], t['params_a'])})",
             _num(t["macs_a"]), _num(t["macs_b"]), f"{_delta(t['macs_delta'])} ({_pct(t['macs_delta'], t['macs_a'])})"]
    numeric = set(range(2, 8))
    if fmt == "markdown":
        return markdown_table(header, body, total, numeric)
    if fmt == "latex":
        return latex_table([h.replace("Δ", "$\\Delta$") for h in header], body, total, numeric)
    title = " vs ".join(lab if lab == net else f"{lab} ({net})" for lab, net in ((label_a, diff["a"]), (label_b, diff["b"])))
    return "\n".join([f"{title}, by {diff['by']}", *aligned_lines(header, body, total, numeric),
                      f"params {human(t['params_a'])} -> {human(t['params_b'])}; "
                      f"MACs {human(t['macs_a'])} -> {human(t['macs_b'])}"]) + "\n"
