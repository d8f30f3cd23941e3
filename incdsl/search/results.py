"""The results of a search experiment: one row per trial, written as OUT/trials.csv and
OUT/trials.json, each trial's spec as OUT/specs/<trial>.inc, and the Pareto plot.

Ray-free: the rows come from plain trial records (see `incdsl.search.tune.trial_records`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re

from ..report.tables import counted
from .pareto import pareto_front, plot_front

COLUMNS = ("trial", "status", "accuracy", "best_accuracy", "epochs", "params", "macs", "train_seconds",
           "pareto", "spec", "key", "error")


def trial_order(name: str) -> tuple:
    """A sort key that orders trial names by their numbers: trial_9999 before trial_10000."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def trial_row(record: dict, budget_epochs: int) -> dict:
    """A table row from a trial record: {"trial", "config", "metrics" (the last report) or
    None, "error" (a message) or None}."""
    config, metrics = record["config"], record.get("metrics") or {}
    epochs = int(metrics.get("epoch") or 0)
    if record.get("error"):
        status = "error"
    elif epochs == 0:
        status = "unfinished"
    elif epochs < budget_epochs:
        # ASHA cut it short (Tune marks its last result done), or an interrupt did: that
        # trial is unfinished, and `--resume` trains the rest
        status = "stopped early" if metrics.get("done", True) else "unfinished"
    else:
        status = "done"
    return {
        "trial": record["trial"], "status": status,
        "accuracy": metrics.get("val_top1"), "best_accuracy": metrics.get("best_val_top1"),
        "epochs": epochs, "params": config["params"], "macs": config["macs"],
        "train_seconds": round(float(metrics.get("train_seconds") or 0.0), 3),
        "pareto": False, "spec": f"specs/{record['trial']}.inc", "key": config["key"],
        "error": record.get("error") or "", "choices": config.get("choices", {}),
    }


def mark_front(rows: list[dict], cost: str) -> list[int]:
    """Mark the Pareto rows (finished trials with an accuracy) and return their positions."""
    scored = [i for i, r in enumerate(rows) if r["accuracy"] is not None and r["status"] == "done"]
    front = [scored[j] for j in pareto_front([(rows[i][cost], rows[i]["accuracy"]) for i in scored])]
    for i in front:
        rows[i]["pareto"] = True
    return front


def median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def write_results(out: str, rows: list[dict], specs: dict[str, str], experiment: dict, cost: str,
                  plot: bool = True) -> dict:
    """Write the table, the specs and the plot under `out`; returns the JSON document."""
    from ..io import write_atomic
    os.makedirs(os.path.join(out, "specs"), exist_ok=True)
    for trial, text in sorted(specs.items()):
        write_atomic(os.path.join(out, "specs", f"{trial}.inc"), text)
    front = mark_front(rows, cost)
    document = {"experiment": experiment, "objective": ["accuracy", cost],
                "pareto": [rows[i]["trial"] for i in front], "trials": rows}
    write_atomic(os.path.join(out, "trials.json"), json.dumps(document, indent=2) + "\n")
    write_atomic(os.path.join(out, "trials.csv"), _csv(rows))
    if plot and front:
        done = [r for r in rows if r["status"] == "done" and r["accuracy"] is not None]
        plot_front(done, [done.index(rows[i]) for i in front], cost,
                   [os.path.join(out, "pareto.png"), os.path.join(out, "pareto.svg")],
                   f"{experiment.get('space_name', 'search')}: {len(done)} trials, "
                   f"{_epochs(experiment.get('budget_epochs'))} each")
    return document


def _epochs(n) -> str:
    return counted(n, "epoch") if isinstance(n, int) else f"{n} epochs"


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    choice_names = sorted({name for r in rows for name in r["choices"]})
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(COLUMNS) + choice_names)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS] + [r["choices"].get(n, "") for n in choice_names])
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(rows: list[dict], cost: str) -> str:
    """The rows as an aligned text table, best accuracy first."""
    ordered = sorted(rows, key=lambda r: (r["accuracy"] is None, -(r["accuracy"] or 0.0), trial_order(r["trial"])))
    lines = [f"{'trial':<11} {'status':<13} {'top-1':>7} {'params':>10} {'MACs':>13} {'time':>7}  pareto"]
    for r in ordered:
        acc = f"{100 * r['accuracy']:.2f}%" if r["accuracy"] is not None else "-"
        lines.append(f"{r['trial']:<11} {r['status']:<13} {acc:>7} {r['params']:>10,} {r['macs']:>13,} "
                     f"{r['train_seconds']:>6.1f}s  {'*' if r['pareto'] else ''}")
    return "\n".join(lines)
