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

from dataclasses import dataclass

import networkx as nx

from ..ir import inputs


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


def _elements(shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def conv_params(attrs: dict, c_in: int) -> int:
    kh, kw = attrs["kernel"]
    f = attrs["filters"]
    weights = kh * kw * (c_in // attrs["groups"]) * f
    return weights + (f if attrs["bias"] else 0) + (2 * f if attrs["bn"] is not None else 0)


def conv_macs(attrs: dict, c_in: int, out_shape) -> int:
    kh, kw = attrs["kernel"]
    _, h, w = out_shape
    return h * w * attrs["filters"] * (c_in // attrs["groups"]) * kh * kw


def node_params_macs(op: str, attrs: dict, in_shapes: list, out_shape) -> tuple[int, int]:
    """(parameters, MACs) of one node; the closed forms stated in the module docstring."""
    if op == "conv":
        c_in = in_shapes[0][0]
        return conv_params(attrs, c_in), conv_macs(attrs, c_in, out_shape)
    if op == "linear":
        n_in = in_shapes[0][0]
        u = attrs["units"]
        return n_in * u + (u if attrs["bias"] else 0), n_in * u
    if op == "bn":
        return 2 * in_shapes[0][0], 0
    return 0, 0


def _receptive(op: str, attrs: dict, ins: list[tuple]) -> tuple:
    """(rf_h, rf_w, jump_h, jump_w) from the inputs' fields."""
    if not ins or not ins[0]:
        return ()
    if op in ("concat", "add"):
        return tuple(max(v[i] for v in ins) for i in range(4))
    rf_h, rf_w, j_h, j_w = ins[0]
    if op in ("conv", "maxpool", "avgpool"):
        kh, kw = attrs["kernel"]
        dh, dw = attrs.get("dilation", (1, 1))
        sh, sw = attrs["stride"]
        return (rf_h + dh * (kh - 1) * j_h, rf_w + dw * (kw - 1) * j_w, j_h * sh, j_w * sw)
    return ins[0]


def count_costs(network, graph: nx.DiGraph | None = None) -> Costs:
    """Costs of every node of a network (or of a bare IR graph).

    Parameters:
        network: a `Network` (or None when `graph` is given).
    Returns:
        `Costs` with one `NodeCost` per node, in graph order, and the totals.

    Example:
        >>> count_costs(incdsl.load("specs/inception_v4.inc")).total.macs
        12253974624
    """
    g = graph if graph is not None else network.graph
    rows, fields = [], {}
    for name, node in g.nodes(data=True):
        ins = inputs(g, name)
        in_shapes = [g.nodes[i]["shape"] for i in ins]
        shape = node["shape"]
        if node["op"] == "input":
            fields[name] = (1, 1, 1, 1) if len(shape) == 3 else ()
            params = macs = 0
        else:
            params, macs = node_params_macs(node["op"], node["attrs"], in_shapes, shape)
            if node["op"] == "gap":
                fields[name] = ()
            elif len(shape) == 3:
                fields[name] = _receptive(node["op"], node["attrs"], [fields[i] for i in ins])
            else:
                fields[name] = ()
        rows.append(NodeCost(name, node["op"], shape, params, macs, _elements(shape), fields[name][:2], node["aux"]))
    trunk = [r for r in rows if r.aux is None]
    return Costs(rows, _total(trunk), _total(rows))


def _total(rows) -> Total:
    return Total(sum(r.params for r in rows), sum(r.macs for r in rows), sum(r.activations for r in rows))
