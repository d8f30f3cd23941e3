"""Counting conventions: the number each popular counter prints for a compiled network.

Tools disagree because each counts a different set of operations: `fvcore` calls a MAC a
"flop" and adds batch norm, `ptflops` adds biases, activations and pooling, `thop` skips
layers whose module type it does not know, `torchinfo` multiplies parameters by output
positions, `torch.utils.flop_counter` counts two FLOPs per MAC. `incdsl cost --convention
NAME` reproduces each tool's default total, to the unit, from the IR alone (no torch).

How it works: every IR node is split into the *parts* that `incdsl.to_torch` builds for it
(a conv node becomes an `nn.Conv2d`, an `nn.BatchNorm2d` and an activation module; an
asymmetric pool becomes a `PaddedPool`; ...). A convention is a table from part kind to a
formula, read from the tool's source (versions: fvcore 0.1.5, ptflops 0.7.5, thop 0.1.1,
torchinfo 1.8, torch 2.x); a kind missing from a table counts 0. Totals cover the inference
graph (auxiliary heads do not run in eval mode), batch 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.graph import inputs
from ..passes.shapes import window


@dataclass(frozen=True)
class Part:
    """One module (or functional call) of the compiled network, with the sizes counters read."""
    kind: str
    node: str
    in_elems: int = 0
    out_elems: int = 0
    macs: int = 0          # multiply-accumulates of a conv or linear (no bias)
    bias: int = 0          # bias additions: output elements of a conv with bias, units of a linear
    channels: int = 0      # batch-norm channels; prelu slopes; learned scalars
    window: float = 0      # adaptive average pool: (h / oh) * (w / ow) (h * w for a global pool)
    rows: int = 1          # softmax: rows the softmax runs over
    extra: int = 0         # lrn: elements of the padded (C + size - 1) x H x W average; add: torch.add calls


def _numel(shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def _padded_input(attrs: dict, in_shape: tuple, out_shape: tuple) -> tuple[int, bool]:
    """(elements of the pool's input after the backend's explicit padding, whether it pads explicitly).

    Mirrors backends/plan.py `_pool`: symmetric padding stays inside `nn.MaxPool2d`/`nn.AvgPool2d`;
    asymmetric padding (TF SAME at stride 2) is applied with F.pad, plus any rows ceil rounding reaches.
    """
    c, h, w = in_shape
    wh = window(h, attrs["kernel"][0], attrs["stride"][0], 1, attrs["pad"], 0, attrs.get("ceil", False))
    ww = window(w, attrs["kernel"][1], attrs["stride"][1], 1, attrs["pad"], 1, attrs.get("ceil", False))
    if wh.before == wh.after and ww.before == ww.after:
        return c * h * w, False
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    ph = max(h + wh.before + wh.after, (out_shape[1] - 1) * sh + kh)
    pw = max(w + ww.before + ww.after, (out_shape[2] - 1) * sw + kw)
    return c * ph * pw, True


def _act_part(fn, node: str, elems: int) -> list[Part]:
    return [Part("act:" + fn, node, elems, elems)] if fn is not None else []


def node_parts(graph, name: str, cost) -> list[Part]:
    """The parts `to_torch` builds for one IR node (see backends/plan.py CONSTRUCTORS)."""
    node = graph.nodes[name]
    op, a, out = node["op"], node["attrs"], node["shape"]
    in_shapes = [graph.nodes[i]["shape"] for i in inputs(graph, name)]
    n_in = _numel(in_shapes[0]) if in_shapes else 0
    n_out = _numel(out)
    if op == "conv":
        parts = [Part("conv2d", name, n_in, n_out, macs=cost.macs, bias=n_out if a["bias"] else 0)]
        if a["bn"] is not None:
            parts.append(Part("batchnorm", name, n_out, n_out, channels=out[0]))
        return parts + _act_part(a["act"], name, n_out)
    if op in ("maxpool", "avgpool"):
        padded, explicit = _padded_input(a, in_shapes[0], out)
        kind = ("padded_" if explicit else "") + op
        return [Part(kind, name, padded, n_out)]
    if op == "gap":
        return [Part("adaptive_avgpool", name, n_in, n_out, window=in_shapes[0][1] * in_shapes[0][2])]
    if op == "adaptive_avgpool":  # thop divides the sizes in double precision: a fraction where they do not divide
        (_, h, w), (oh, ow) = in_shapes[0], a["size"]
        return [Part("adaptive_avgpool", name, n_in, n_out, window=(h / oh) * (w / ow))]
    if op == "adaptive_maxpool":
        return [Part("adaptive_maxpool", name, n_in, n_out)]
    if op == "prelu":  # `channels`: the slopes (torchinfo counts a module's parameters once per image)
        return [Part("prelu", name, n_in, n_out, channels=1 if a["shared"] else in_shapes[0][0])]
    if op == "learned_scale":
        return [Part("learned_scale", name, n_in, n_out, channels=1)]
    if op == "bn":
        return [Part("batchnorm", name, n_in, n_out, channels=in_shapes[0][0])]
    if op == "layer_norm":  # LayerNorm2d (an nn.LayerNorm subclass) on CxHxW, nn.LayerNorm on a flat input
        kind = "layernorm2d" if len(in_shapes[0]) == 3 else "layernorm"
        return [Part(kind, name, n_in, n_out, channels=in_shapes[0][0])]
    if op == "layer_scale":
        return [Part("layer_scale", name, n_in, n_out, channels=in_shapes[0][0])]
    if op == "act":
        return _act_part(a["fn"], name, n_out)
    if op == "linear":
        kind = "linear" if a["act"] is None else "linear_act"  # LinearAct: an nn.Linear subclass with a child
        return [Part(kind, name, n_in, n_out, macs=cost.macs, bias=a["units"] if a["bias"] else 0),
                *_act_part(a["act"], name, n_out)]
    if op == "lrn":
        c, h, w = in_shapes[0]
        return [Part("lrn", name, n_in, n_out, extra=(c + a["size"] - 1) * h * w)]
    if op == "softmax":
        return [Part("softmax", name, n_in, n_out, rows=n_in // out[0])]
    if op == "upsample":  # nn.Upsample, mode nearest or bilinear
        return [Part("upsample_" + a["mode"], name, n_in, n_out)]
    if op == "add":
        # Add.forward: y + x for scale 1 (Tensor.__add__), torch.add(y, x, alpha=s) otherwise
        calls = sum(1 for s in a["scales"][1:] if float(s) != 1.0)
        return [Part("add", name, n_out, n_out, extra=calls)] + _act_part(a["act"], name, n_out)
    return []  # input, dropout, flatten, identity, concat: no counter counts them


Rule = Callable[[Part], int]


@dataclass(frozen=True)
class Convention:
    name: str
    tool: str      # the call whose result is reproduced
    unit: str      # what the tool calls its number
    counts: str    # one line: what it counts
    rules: dict    # part kind -> Rule


def _twice(p: Part) -> int:
    return 2 * p.in_elems


CONVENTIONS = {c.name: c for c in (
    Convention(
        "incdsl", "incdsl cost", "MACs",
        "conv and linear multiply-accumulates; no bias, BN, pooling or activations (timm's GMACs, the papers' "
        "multiply-adds)",
        {"conv2d": lambda p: p.macs, "linear": lambda p: p.macs, "linear_act": lambda p: p.macs}),
    Convention(
        "fvcore", "fvcore.nn.FlopCountAnalysis(model, x).total()", "flops (= MACs)",
        "conv and linear MACs without bias, plus 2 per element of each batch norm (eval), 5 of each layer norm, 1 per input element "
        "of adaptive average pooling, 1 per output element of a nearest and 4 of a bilinear upsample; plain pooling, "
        "activations and sums are free",
        {"conv2d": lambda p: p.macs, "linear": lambda p: p.macs, "linear_act": lambda p: p.macs,
         "batchnorm": lambda p: 2 * p.in_elems, "adaptive_avgpool": lambda p: p.in_elems,
         # fvcore/nn/flop_count.py: aten::layer_norm is norm_flop_counter(2), 5 per element with the affine part
         "layernorm": lambda p: 5 * p.in_elems, "layernorm2d": lambda p: 5 * p.in_elems,
         # fvcore/nn/flop_count.py: aten::upsample_nearest2d 1, aten::upsample_bilinear2d 4 per output element
         "upsample_nearest": lambda p: p.out_elems, "upsample_bilinear": lambda p: 4 * p.out_elems}),
    Convention(
        "ptflops", "ptflops.get_model_complexity_info(..., backend='pytorch')", "MACs",
        "conv and linear MACs with bias, BN 2 per element, pooling and ReLU/ELU/GELU/PReLU modules 2 per element (the "
        "module hook and the patched functional both count), LeakyReLU/ReLU6 1, SiLU, softmax, torch.add 1, upsample "
        "2 per output element (module hook and F.interpolate), nn.LayerNorm 1 per element; "
        "LinearAct and LRN partly; LayerNorm2d not",
        {"conv2d": lambda p: p.macs + p.bias, "linear": lambda p: p.macs + p.bias,
         "batchnorm": lambda p: 2 * p.in_elems,
         # nn.LayerNorm: ptflops' bn hook, 1 per element (it has no `affine`); LayerNorm2d, a subclass, no hook
         "layernorm": lambda p: p.in_elems,
         "maxpool": _twice, "avgpool": _twice, "adaptive_avgpool": _twice,
         "adaptive_maxpool": lambda p: p.in_elems,  # `AdaptiveMaxPool`, a subclass: only the functional call counts
         "padded_maxpool": lambda p: p.in_elems, "padded_avgpool": lambda p: p.in_elems,
         "act:relu": _twice, "act:elu": _twice, "act:gelu": _twice,
         "act:leaky_relu": lambda p: p.in_elems, "act:relu6": lambda p: p.in_elems, "act:silu": lambda p: p.in_elems,
         "softmax": lambda p: p.in_elems, "add": lambda p: p.extra * p.out_elems, "prelu": _twice,
         "upsample_nearest": lambda p: 2 * p.out_elems, "upsample_bilinear": lambda p: 2 * p.out_elems,
         # F.local_response_norm: input.mul(input), avg_pool3d on the padded squares, .mul(alpha), .add(k)
         "lrn": lambda p: 3 * p.in_elems + p.extra}),
    Convention(
        "ptflops-aten", "ptflops.get_model_complexity_info(..., backend='aten')", "MACs",
        "aten convolution and matmul MACs with bias additions; nothing else",
        {"conv2d": lambda p: p.macs + p.bias, "linear": lambda p: p.macs + p.bias,
         "linear_act": lambda p: p.macs + p.bias}),
    Convention(
        "thop", "thop.profile(model, (x,))[0]", "MACs",
        "conv and nn.Linear MACs without bias, BN and nn.LayerNorm 4 per element (2, doubled for the affine part), AvgPool2d 1 per output, adaptive pool "
        "(window + 1) per output, softmax 3n - 1 per row, PReLU 1 per element, upsample 1 (nearest) or 11 (bilinear) per "
        "output; modules of other types (LinearAct, PaddedPool, LRN, LayerNorm2d, LayerScale) "
        "count 0",
        {"conv2d": lambda p: p.macs, "linear": lambda p: p.macs, "batchnorm": lambda p: 4 * p.in_elems,
         "layernorm": lambda p: 4 * p.in_elems,  # thop's count_normalization, as batch norm; not LayerNorm2d
         "avgpool": lambda p: p.out_elems, "adaptive_avgpool": lambda p: int((p.window + 1) * p.out_elems),
         "softmax": lambda p: 3 * p.in_elems - p.rows, "prelu": lambda p: p.out_elems,
         # thop/vision/calc_func.py calculate_upsample: the output's elements, times 11 for bilinear
         "upsample_nearest": lambda p: p.out_elems, "upsample_bilinear": lambda p: 11 * p.out_elems}),
    Convention(
        "torchinfo", "torchinfo.summary(model, input_size).total_mult_adds", "mult-adds",
        "each leaf module's weight and bias count times its output positions: conv MACs plus bias, linear MACs plus "
        "bias, 2 per BN or layer-norm channel (not per element), PReLU and learned scalars their parameters; LinearAct (a module with a child) and layer scale (not named `weight`) count 0",
        {"conv2d": lambda p: p.macs + p.bias, "linear": lambda p: p.macs + p.bias,
         "batchnorm": lambda p: 2 * p.channels, "layernorm": lambda p: 2 * p.channels,
         "layernorm2d": lambda p: 2 * p.channels, "prelu": lambda p: p.channels, "learned_scale": lambda p: p.channels}),
    Convention(
        "flop_counter", "torch.utils.flop_counter.FlopCounterMode().get_total_flops()", "FLOPs",
        "2 per conv and matmul MAC, no bias, nothing else",
        {"conv2d": lambda p: 2 * p.macs, "linear": lambda p: 2 * p.macs, "linear_act": lambda p: 2 * p.macs}),
)}


def network_parts(network, costs) -> list[Part]:
    """Every part of the inference graph (auxiliary heads excluded), in graph order."""
    g = network.graph
    return [p for c in costs.nodes if c.aux is None for p in node_parts(g, c.name, c)]


def count_convention(network, costs, name: str) -> int:
    """The total `name`'s tool prints for `to_torch(network)` on one image.

    Raises:
        KeyError: an unknown convention name (see `CONVENTIONS`).
    """
    rules = CONVENTIONS[name].rules
    return sum(rules[p.kind](p) for p in network_parts(network, costs) if p.kind in rules)


def per_node(network, costs, name: str) -> dict[str, int]:
    """The convention's count per IR node (nodes that count 0 included)."""
    rules = CONVENTIONS[name].rules
    out = {c.name: 0 for c in costs.nodes if c.aux is None}
    for p in network_parts(network, costs):
        if p.kind in rules:
            out[p.node] += rules[p.kind](p)
    return out
