"""The Pareto front of a search (accuracy up, cost down) and its plot.

`pareto_front` is pure; `plot_front` imports matplotlib (the `search` extra) when called.
"""
from __future__ import annotations

import os


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) no other point dominates, cheapest first.

    A point dominates another when it costs no more, is no less accurate, and is better in
    one of the two: equal points do not dominate each other, so all of them are on the front
    (in the order given).

    >>> pareto_front([(10, 0.5), (20, 0.9), (30, 0.8), (10, 0.6), (20, 0.9)])
    [3, 1, 4]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, last = [], None
    for i in order:
        # sorted by cost, then accuracy down: a point is undominated when it beats the accuracy
        # of every cheaper-or-equal point before it, or equals the last point on the front
        if last is None or points[i][1] > last[1] or tuple(points[i]) == last:
            front.append(i)
            last = tuple(points[i])
    return front


def plot_front(rows: list[dict], front: list[int], cost: str, paths: list[str], title: str) -> None:
    """Accuracy against `cost` ("macs" or "params") of every finished trial, the Pareto points
    marked and joined; written to each of `paths` (the format from the suffix)."""
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    xs = [r[cost] for r in rows]
    ys = [100 * r["accuracy"] for r in rows]
    ax.scatter(xs, ys, s=22, color="#8c8c8c", label="trial", zorder=2)
    fx = [xs[i] for i in front]
    fy = [ys[i] for i in front]
    ax.step(fx, fy, where="post", color="#d62728", linewidth=1.2, zorder=3)
    ax.scatter(fx, fy, s=46, color="#d62728", edgecolor="black", linewidth=0.6, label="Pareto front", zorder=4)
    for i in front:
        ax.annotate(rows[i]["trial"], (xs[i], ys[i]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if xs and max(xs) > 4 * max(min(xs), 1):
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))  # 4.8M, not 4.8 x 1e6
    ax.set_xlabel("multiply-adds" if cost == "macs" else "parameters")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    # SVGs: text as text (small files), fixed ids and no date (the same plot, the same bytes)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "incdsl"}):
        for path in paths:
            tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path))
            svg = path.endswith(".svg")
            fig.savefig(tmp, format=path.rsplit(".", 1)[-1], metadata={"Date": None} if svg else None)
            os.replace(tmp, path)  # whole files only
    plt.close(fig)
