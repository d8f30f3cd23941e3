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


def point_labels(points: list[tuple[float, float]], names: list[str],
                 most: int = 3) -> list[tuple[tuple[float, float], str]]:
    """One label per distinct point, in the order points first appear: equal points (trials of
    equal cost and accuracy) share one marker and one label naming them all, up to `most`
    names and then how many more.

    >>> point_labels([(1, 0.5), (2, 0.9), (1, 0.5)], ["trial_3", "trial_1", "trial_7"])
    [((1, 0.5), 'trial_3, trial_7'), ((2, 0.9), 'trial_1')]
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for point, name in zip(points, names):
        groups.setdefault(tuple(point), []).append(name)
    labels = []
    for point, group in groups.items():
        shown = group if len(group) <= most else group[:most - 1] + [f"+{len(group) - most + 1} more"]
        labels.append((point, ", ".join(shown)))
    return labels


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in points, y up


def _area(a: Box, b: Box) -> float:
    """The area two boxes share (0 when apart)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box: Box, bounds: Box) -> float:
    """The area of `box` outside `bounds`."""
    return (box[2] - box[0]) * (box[3] - box[1]) - _area(box, bounds)


def _candidate_offsets(width: float, height: float, gap: float = 4.0, steps: int = 6) -> list[tuple[float, float]]:
    """Offsets of a label's lower-left corner from its point, nearest first: the four corners
    around the point, then further down and up on either side."""
    right, left = gap, -gap - width
    below, above = -gap - height, gap
    offsets = [(right, below), (right, above), (left, below), (left, above)]
    for k in range(1, steps + 1):
        step = k * (height + 1.0)
        offsets += [(right, below - step), (right, above + step), (left, below - step), (left, above + step)]
    return offsets


def place_labels(anchors: list[tuple[float, float]], sizes: list[tuple[float, float]], obstacles: list[Box],
                 bounds: Box) -> list[tuple[float, float] | None]:
    """Offsets (points) of each label's lower-left corner from its anchor, chosen in turn so that
    no label overlaps another label or an obstacle (markers, the legend) or leaves `bounds`;
    None for a label with no clear place (a crowded front: trials.csv names every trial, and
    a pile of overlapping labels names none readably).

    Greedy, labels in the order given: the first clear offset of `_candidate_offsets` wins, so
    an isolated point keeps its label at the lower right.
    """
    placed: list[Box] = []
    offsets: list[tuple[float, float] | None] = []
    for (x, y), (width, height) in zip(anchors, sizes):
        for dx, dy in _candidate_offsets(width, height):
            box = (x + dx, y + dy, x + dx + width, y + dy + height)
            if _outside(box, bounds) == 0 and not any(_area(box, other) for other in placed + obstacles):
                offsets.append((dx, dy))
                placed.append(box)
                break
        else:
            offsets.append(None)
    return offsets


def plot_front(rows: list[dict], front: list[int], cost: str, paths: list[str], title: str) -> None:
    """Accuracy against `cost` ("macs" or "params") of every finished trial, the Pareto points
    marked, joined and labelled (equal points once, nearby labels apart); written to each of
    `paths` (the format from the suffix)."""
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    xs = [r[cost] for r in rows]
    ys = [100 * r["accuracy"] for r in rows]
    ax.scatter(xs, ys, s=TRIAL_SIZE, color="#8c8c8c", label="trial", zorder=2)
    fx = [xs[i] for i in front]
    fy = [ys[i] for i in front]
    ax.step(fx, fy, where="post", color="#d62728", linewidth=1.2, zorder=3)
    ax.scatter(fx, fy, s=FRONT_SIZE, color="#d62728", edgecolor="black", linewidth=0.6, label="Pareto front", zorder=4)
    if xs and max(xs) > 4 * max(min(xs), 1):
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))  # 4.8M, not 4.8 x 1e6
    ax.set_xlabel("multiply-adds" if cost == "macs" else "parameters")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    legend = ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _label_front(fig, ax, legend, point_labels(list(zip(fx, fy)), [rows[i]["trial"] for i in front]),
                 list(zip(xs, ys)))
    # SVGs: text as text (small files), fixed ids and no date (the same plot, the same bytes)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "incdsl"}):
        for path in paths:
            tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path))
            svg = path.endswith(".svg")
            fig.savefig(tmp, format=path.rsplit(".", 1)[-1], metadata={"Date": None} if svg else None)
            os.replace(tmp, path)  # whole files only
    plt.close(fig)


TRIAL_SIZE, FRONT_SIZE, LABEL_FONT = 22, 46, 7  # marker areas (points^2), label size (points)


def _label_front(fig, ax, legend, labels: list, points: list[tuple[float, float]]) -> None:
    """Annotate each label at its point, placed by `place_labels` in the laid-out axes (points
    as units, so the PNG and the SVG agree); a label pushed away gets a thin leader line."""
    fig.canvas.draw()  # lays out the legend and ticks, so their boxes are final
    renderer = fig.canvas.get_renderer()
    scale = 72.0 / fig.dpi  # display pixels -> points

    def box(bbox) -> Box:
        return (bbox.x0 * scale, bbox.y0 * scale, bbox.x1 * scale, bbox.y1 * scale)

    sizes = []
    for _, text in labels:
        probe = ax.text(0, 0, text, fontsize=LABEL_FONT)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((extent.width * scale, extent.height * scale))
    anchors = [tuple(ax.transData.transform(point) * scale) for point, _ in labels]
    radius = (FRONT_SIZE ** 0.5) / 2  # the larger marker, for every point: cheap and safe
    markers = [(x - radius, y - radius, x + radius, y + radius)
               for x, y in (ax.transData.transform(p) * scale for p in points)]
    offsets = place_labels(anchors, sizes, markers + [box(legend.get_window_extent(renderer))],
                           box(ax.get_window_extent(renderer)))
    for ((point, text), offset, size) in zip(labels, offsets, sizes):
        if offset is None:
            continue
        leader = None if offset in set(_candidate_offsets(*size)[:4]) else \
            {"arrowstyle": "-", "color": "#8c8c8c", "linewidth": 0.5, "shrinkA": 1, "shrinkB": radius}
        ax.annotate(text, point, textcoords="offset points", xytext=offset, ha="left", va="bottom",
                    fontsize=LABEL_FONT, arrowprops=leader, zorder=5)
