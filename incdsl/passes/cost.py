"""Parameters, multiply-accumulates, FLOPs, activation memory and receptive field per node.

Conventions (those of torchvision's `_ops` / timm's GMACs and of the reference note):

* MACs count convolutions and linear layers only:
  conv ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w``; linear ``in * out``.
  Pooling, normalisation, activations, residual sums and biases are free.
* FLOPs = 2 x MACs (one multiply and one add per MAC).
* Parameters are trainable values, PyTorch style: conv weights, conv bias (only where the
  layer has one), batch-norm gamma and beta (2 per channel; running statistics are buffers),
  linear weight and bias.
* Receptive field of a node: the input window (h, w) that influences one output position,
  following ``rf_out = rf_in + (k_eff - 1) * jump_in``, ``jump_out = jump_in * stride``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from ..ir.graph import inputs, node as ir_node
from ..ir.network import network_graph
from ..ops.table import OPS


@dataclass(frozen=True)
class NodeCost:
    name: str
    op: str
    shape: tuple
    params: int
    macs: int
    activations: int  # output elements per image
    rf: tuple  # receptive field (h, w); () for flat outputs
    aux: str | None

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class Total:
    params: int
    macs: int
    activations: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Costs:
    """Per-node costs in graph order; `total` excludes auxiliary heads, `total_with_aux` does not."""
    nodes: list[NodeCost]
    total: Total
    total_with_aux: Total

    def by_name(self) -> dict[str, NodeCost]:
        return {c.name: c for c in self.nodes}

    def __repr__(self) -> str:  # one line: the dataclass repr lists every node
        t = self.total
        return f"<Costs: {len(self.nodes)} nodes, {t.params:,} params, {t.macs:,} MACs>"


def _elements(shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def node_params_macs(op: str, attrs: dict, in_shapes: list, out_shape) -> tuple[int, int]:
    """(parameters, MACs) of one node: its op's closed forms (each cited in its `ops/` module)."""
    return OPS[op].cost(attrs, in_shapes, out_shape)


def _whole_pixels(rf: tuple) -> tuple:
    """The (h, w) field as reported: whole pixels (fractions arise after upsampling)."""
    if rf and (type(rf[0]) is not int or type(rf[1]) is not int):
        return (math.ceil(rf[0]), math.ceil(rf[1]))
    return rf


def count_costs(network, graph: nx.DiGraph | None = None) -> Costs:
    """Costs of every node of a network (or of a bare IR graph).

    Parameters:
        network: a `Network` (or None when `graph` is given).
    Returns:
        `Costs` with one `NodeCost` per node, in graph order, and the totals.
    Raises:
        TypeError: `network` is no `Network` (a path: load it first).

    Example:
        >>> count_costs(incdsl.load("specs/inception_v4.inc")).total.macs
        12253974624
    """
    g = graph if graph is not None else network_graph(network, "count_costs")
    rows, fields = [], {}
    for name in g.nodes:
        node = ir_node(g, name)
        op = OPS[node.op]
        ins = inputs(g, name)
        in_shapes = [g.nodes[i]["shape"] for i in ins]
        shape = node.shape
        if not ins:  # the network's input: each position sees itself
            field = (1, 1, 1, 1) if len(shape) == 3 else ()
        elif len(shape) != 3 or not all(fields[i] for i in ins):  # flat, or after a flat or global input
            field = ()  # (any input of a join: `residual: gap` on a 1x1 input sums a global and a local field)
        else:  # (rf_h, rf_w, jump_h, jump_w) through the op
            field = op.receptive(node.attrs, [fields[i] for i in ins], in_shapes, shape)
        fields[name] = field
        params, macs = op.cost(node.attrs, in_shapes, shape)
        rows.append(NodeCost(name, node.op, shape, params, macs, _elements(shape), _whole_pixels(field[:2]), node.aux))
    trunk = [r for r in rows if r.aux is None]
    return Costs(rows, _total(trunk), _total(rows))


def _total(rows) -> Total:
    return Total(sum(r.params for r in rows), sum(r.macs for r in rows), sum(r.activations for r in rows))
