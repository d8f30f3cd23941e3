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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Flow:
    """order: the layers (module paths) in the order they first ran; reads: for each, the
    layers its input was computed from, without another weight layer between (empty for
    layers that read the network's input)."""
    order: tuple
    reads: dict


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


def _run(module, x, layers: dict) -> tuple[list, dict, dict]:
    """Forward `x` with hooks on `layers` (path -> module): (order, input nodes, output nodes)."""
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
        with torch.enable_grad():
            module(x.requires_grad_().clone())  # a non-leaf input: in-place first layers are allowed
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
    order, inputs, outputs = _run(module, _dummy_input(module, input_shape), layers)
    produced_by = {id(node): path for path, nodes in outputs.items() for node in nodes}
    return Flow(tuple(order), {path: _nearest(inputs.get(path, []), produced_by) for path in order})
