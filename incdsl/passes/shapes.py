"""Shape inference: each node through its op's shape rule (`ops/`), in graph order.

Shapes are tuples: ``(c, h, w)`` for feature maps, ``(n,)`` after `flatten`. The window and
padding arithmetic the rules share is stated once, in `ops/window.py`.
"""
from __future__ import annotations

from ..ir.graph import inputs, node as ir_node
from ..ops.table import OPS
from ..ops.window import ShapeError, Window, window  # noqa: F401  (re-exported: the shared arithmetic)

Shape = tuple  # (c, h, w) or (n,)

MAX_SIZE = 1 << 31  # larger sizes are certainly a mistake and overflow every backend


def _fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


def infer_node(op: str, attrs: dict, in_shapes: list[Shape]) -> tuple[Shape, list[str]]:
    """Output shape of one node from its inputs' shapes, and any warnings.

    Raises:
        ShapeError: when the inputs do not fit the node.
    """
    shape, warnings = OPS[op].shape(attrs, in_shapes)
    if any(v > MAX_SIZE for v in shape):
        raise ShapeError(f"output {_fmt(shape)} is larger than any backend can hold",
                         hint="check the filter counts" if shape[0] > MAX_SIZE else
                         "check the sizes that lead here (an upsampling, a padding, the input)")
    return shape, warnings


def infer_shapes(graph) -> dict[str, Shape]:
    """Recompute every node's output shape from the graph alone, in topological order.

    Parameters:
        graph: the IR (`networkx.DiGraph`), edges carrying their input `index`.
    Returns:
        node name -> shape.
    Raises:
        ShapeError: when a node does not fit its inputs.

    Example:
        >>> net = incdsl.load("specs/inception_v4.inc")
        >>> infer_shapes(net.graph)[net.output]
        (1000,)
    """
    import networkx as nx

    shapes: dict[str, Shape] = {}
    for name in nx.topological_sort(graph):
        node = ir_node(graph, name)
        shapes[name] = infer_node(node.op, node.attrs, [shapes[u] for u in inputs(graph, name)])[0]
    return shapes
