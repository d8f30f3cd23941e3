"""Which weight-holding layers of a module run, in what order, and which of them each one reads.

A state dict lists layers in registration order, which is not always the order they run in:
timm's `legacy_xception` registers a block's shortcut before its main path; `resnetv2_50` runs
its projection shortcut between the pre-activation and the first conv, where ours (main path,
then shortcut) runs it last. One forward pass on a dummy input, watched with hooks, gives both
the order and the data flow: each layer's input is followed back through autograd's graph
(`grad_fn.next_functions`: ReLUs, sums, concatenations, pools, in-place ops included) to the
nearest weight-holding layers that produced it. Two networks that compute the same function
have the same flow between their weight layers whatever their names and orders, so
`load_weights` pairs layers that read from paired layers.

The same walk gives each layer's input *layout*: where every channel of its input comes from,
as a set of (layer, output channel) per channel (several where paths were summed). Two
networks that concatenate their branches in different orders feed the next layer the same
channels in another order; comparing layouts tells `load_weights` how to permute that layer's
input axis. And a *signature*: the operations between the layers that feed a layer and the
layer itself (`AvgPool2D(Cat(Relu(U),Relu(U)))`, inputs of a concatenation or a sum in sorted
order), which tells a 1x1 conv after a pool from one that reads the same layers directly.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch


INPUT = "<input>"  # the network's input in layouts (no module path has a `<`)


@dataclass(frozen=True)
class Flow:
    """order: the layers (module paths) in the order they first ran; reads: for each, the
    layers its input was computed from, without another weight layer between (empty for
    layers that read the network's input); layouts: for each, its input's channels (a tuple
    of frozensets of atoms `(layer, channel)`, `(INPUT, channel)` for the network's input, with
    the position within the channel appended after a flatten), or None where an operation on
    the way is not understood; signatures: for each, the operations between it and the layers
    it reads (a string)."""
    order: tuple
    reads: dict
    layouts: dict = field(default_factory=dict)
    signatures: dict = field(default_factory=dict)


def _tensors(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _dummy_input(module, input_shape) -> torch.Tensor:
    """One image of `input_shape` on the module's device and in its float dtype; a private
    generator leaves the global random state alone."""
    ref = next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
    return x.to(device=ref.device, dtype=ref.dtype) if ref is not None else x


class _Shapes(torch.overrides.TorchFunctionMode):
    """Records the shape of every tensor an operation returns, by its autograd node (held, so
    that no other node takes its id)."""

    def __init__(self):
        super().__init__()
        self.shapes, self.held = {}, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            if t.grad_fn is not None:
                self.shapes[id(t.grad_fn)] = tuple(t.shape)
                self.held.append(t.grad_fn)
        return out


def _run(module, x, layers: dict, shapes: _Shapes | None = None) -> tuple[list, dict, dict]:
    """Forward `x` with hooks on `layers` (path -> module): (order, input nodes, output nodes),
    recording every operation's output shape in `shapes`."""
    order, inputs, outputs = [], {}, {}

    def before(path):
        def hook(_, args, kwargs=None):
            inputs.setdefault(path, [t.grad_fn for t in _tensors(args) if t.grad_fn is not None])
        return hook

    def after(path):
        def hook(_, args, out):
            if path not in outputs:
                order.append(path)
                outputs[path] = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
        return hook

    handles = [h for path, m in layers.items()
               for h in (m.register_forward_pre_hook(before(path)), m.register_forward_hook(after(path)))]
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()  # batch-norm statistics stay as they are; no dropout, no aux heads
        with torch.enable_grad(), (shapes or _Shapes()):
            module(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return order, inputs, outputs


def _nearest(starts: list, produced_by: dict) -> frozenset:
    """The layers met first walking back from `starts` through autograd's graph."""
    found, seen, stack = set(), {}, list(starts)
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node  # held, so that no other node can take its id while we walk
        if id(node) in produced_by:
            found.add(produced_by[id(node)])
            continue
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return frozenset(found)


def trace_flow(module, paths, input_shape) -> Flow:
    """The flow between the modules at `paths` (those holding weights) in one eval-mode forward
    pass of `module` on a random input of shape `input_shape` (C, H, W). Modules that never ran
    are left out of the result. The module's train/eval modes and its state are unchanged.

    Raises whatever the module's forward raises for that input (e.g. a size it cannot take).

    Example:
        >>> flow = trace_flow(timm_model, ["conv1", "bn1", "fc"], (3, 224, 224))
        >>> flow.order, flow.reads["bn1"]
        (('conv1', 'bn1', 'fc'), frozenset({'conv1'}))
    """
    wanted = set(paths)
    layers = {path: m for path, m in module.named_modules() if path in wanted}
    x = _dummy_input(module, input_shape).requires_grad_().clone()  # non-leaf: in-place first layers are allowed
    shapes, input_node = _Shapes(), x.grad_fn  # taken before the forward: an in-place first op replaces it
    shapes.shapes[id(input_node)] = tuple(x.shape)
    order, inputs, outputs = _run(module, x, layers, shapes)
    produced_by = {id(node): path for path, nodes in outputs.items() for node in nodes}
    walk = _Walk(produced_by, shapes.shapes, input_node)
    firsts = {path: inputs[path][0] if len(inputs.get(path, [])) == 1 else None for path in order}
    return Flow(tuple(order), {path: _nearest(inputs.get(path, []), produced_by) for path in order},
                {path: walk.layout(node) if node is not None else None for path, node in firsts.items()},
                {path: walk.signature(node) if node is not None else "?" for path, node in firsts.items()})


def layer_outputs(module, paths, input_shape) -> dict:
    """What the modules at `paths` return (detached) in one eval-mode forward pass of `module`
    on `dataflow`'s dummy input of shape `input_shape`; modes and state unchanged."""
    wanted, found = set(paths), {}
    layers = {path: m for path, m in module.named_modules() if path in wanted}

    def keep(path):
        def hook(_, args, out):
            if isinstance(out, torch.Tensor) and path not in found:
                found[path] = out.detach().to("cpu", torch.float32, copy=True)  # before an in-place op changes it
        return hook
    handles = [m.register_forward_hook(keep(path)) for path, m in layers.items()]
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            module(_dummy_input(module, input_shape))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return found


# --- layouts and signatures --------------------------------------------------------------

def _op(node) -> str:
    """`ReluBackward0` -> `Relu`: the operation an autograd node undoes."""
    return re.sub(r"Backward\d*$", "", type(node).__name__)


# one tensor in, the same channels out (elementwise, per-channel or spatial operations)
_CHANNELWISE = frozenset({
    "Relu", "Relu6", "Hardtanh", "LeakyRelu", "Elu", "Gelu", "Silu", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid",
    "Mish", "Softplus", "Threshold", "Clamp", "ClampMin", "ClampMax", "Neg", "Clone", "ToCopy", "Alias",
    "AvgPool2D", "MaxPool2DWithIndices", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "UpsampleNearest2D",
    "UpsampleBilinear2D", "UpsampleBicubic2D", "ReflectionPad2D", "ReplicationPad2D", "NativeBatchNorm",
    "CudnnBatchNorm"})
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Maximum", "Minimum"})  # tensors of the same channels
_RESHAPES = frozenset({"View", "UnsafeView", "Reshape", "ReshapeAlias", "Squeeze", "SqueezeDim", "Unsqueeze",
                       "Expand", "Flatten"})
_ORDER_FREE = frozenset({"Cat", "Add", "Mul", "Maximum", "Minimum"})  # signatures sort their inputs
_POOL_ATTRS = ("_saved_kernel_size", "_saved_stride", "_saved_padding", "_saved_output_size")


def _dim(value, rank: int) -> int:
    """A saved dimension (negative ones come back as unsigned 64-bit numbers) as 0..rank-1."""
    value = int(value)
    if value >= 2**63:
        value -= 2**64
    return value % rank if rank else value


class _Walk:
    """Layouts and signatures of autograd nodes, memoised, stopping at weight layers' outputs."""

    def __init__(self, produced_by: dict, shapes: dict, input_node):
        self.produced_by, self.shapes, self.input_node = produced_by, shapes, input_node
        self.layouts, self.signatures, self.held = {}, {}, []

    def _children(self, node) -> list:
        return [n for n, _ in getattr(node, "next_functions", ()) if n is not None]

    def _shape(self, node):
        return self.shapes.get(id(node))

    def layout(self, node):
        if id(node) not in self.layouts:
            self.held.append(node)
            try:
                self.layouts[id(node)] = self._layout(node)
            except RecursionError:
                self.layouts[id(node)] = None
        return self.layouts[id(node)]

    def _layout(self, node):
        path = self.produced_by.get(id(node))
        shape = self._shape(node)
        if path is not None or node is self.input_node:
            if shape is None or len(shape) < 2:
                return None
            return tuple(frozenset({(INPUT if path is None else path, i)}) for i in range(shape[1]))
        op = _op(node)
        children = [c for c in self._children(node) if _op(c) != "AccumulateGrad"]  # parameters: no channels
        inner = [self.layout(c) for c in children]
        if not inner or any(x is None for x in inner):
            return None
        if op in _CHANNELWISE or (op in _ELEMENTWISE and len(inner) == 1):
            return inner[0] if len(inner) == 1 else None
        if op in _ELEMENTWISE:
            return _merge(inner)
        if op == "Cat":
            if shape is None:
                return None
            return tuple(e for x in inner for e in x) if _dim(node._saved_dim, len(shape)) == 1 else _merge(inner)
        if op in ("Mean", "Sum", "Amax") and hasattr(node, "_saved_dim") and len(inner) == 1:
            rank = len(getattr(node, "_saved_self_sym_sizes", ()) or ())
            dims = node._saved_dim if isinstance(node._saved_dim, (tuple, list)) else (node._saved_dim,)
            return inner[0] if dims and 1 not in {_dim(d, rank) for d in dims} else None
        if op == "Slice" and len(inner) == 1:
            rank = len(node._saved_self_sym_sizes)
            if _dim(node._saved_dim, rank) != 1:
                return inner[0]
            stop = min(int(node._saved_end), len(inner[0]))
            return inner[0][int(node._saved_start):stop:int(node._saved_step)]
        if op == "ConstantPadNd" and len(inner) == 1 and shape is not None:
            return inner[0] if len(node._saved_pad) <= 2 * (len(shape) - 2) else None  # rows and columns only
        if op in _RESHAPES and len(inner) == 1:
            return _reshaped(inner[0], self._shape(children[0]), shape, expand=op == "Expand")
        return None

    def signature(self, node) -> str:
        if id(node) not in self.signatures:
            self.held.append(node)
            try:
                self.signatures[id(node)] = self._signature(node)
            except RecursionError:
                self.signatures[id(node)] = "?"
        return self.signatures[id(node)]

    def _signature(self, node) -> str:
        if id(node) in self.produced_by:
            return "U"
        if node is self.input_node:
            return "X"
        op = _op(node)
        if op == "AccumulateGrad":
            return "P"
        parts = [self.signature(c) for c in self._children(node)]
        if op in _ORDER_FREE:
            parts.sort()
        attrs = [str(tuple(getattr(node, a))) for a in _POOL_ATTRS if hasattr(node, a)]
        return f"{op}{'[' + ','.join(attrs) + ']' if attrs else ''}({','.join(parts)})"


def _merge(layouts: list):
    """Channel by channel union of layouts of tensors combined elementwise (one channel broadcasts)."""
    width = max(len(x) for x in layouts)
    if any(len(x) not in (1, width) for x in layouts):
        return None
    return tuple(frozenset().union(*(x[i] if len(x) == width else x[0] for x in layouts)) for i in range(width))


def _reshaped(layout: tuple, before, after, expand: bool = False):
    """A layout through a view: the same channels (squeezing or adding dimensions of size 1 after
    them, or broadcasting them), or a flatten of (N, C, ...) into (N, C x ...), whose features
    are (channel, position)."""
    if before is None or after is None or len(before) < 2 or len(after) < 2 or before[0] != after[0]:
        return None
    if before[1] == after[1] and (expand or math.prod(before[2:]) == math.prod(after[2:])):
        return layout
    positions = math.prod(before[2:])
    if len(after) == 2 and len(before) > 2 and after[1] == before[1] * positions:
        return tuple(frozenset(atom + (s,) for atom in entry) for entry in layout for s in range(positions))
    return None
