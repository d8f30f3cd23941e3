"""The layers compiled networks are built from; this file imports torch only.

`incdsl compile` copies this module verbatim into every generated file (between the marker
comments below), so generated models need nothing but torch. Padding arithmetic is not done
here: the compiler resolves V, S and explicit padding for the spec's input size (see
`incdsl.passes.shapes`) and passes the result in, either as symmetric `padding` or as an
explicit `(left, right, top, bottom)` `pad` applied before the op, as timm's `Conv2dSame` does.

State-dict keys follow timm's `ConvNormAct` and torchvision's `BasicConv2d`
(`<path>.conv.weight`, `<path>.bn.*`), so weights move between those models and ours by
structure alone.
"""
# --- incdsl layers: begin
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


class Scope(nn.Module):
    """A named group of layers (a branch, a repeat member); holds modules, computes nothing."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


def eager_inference(module, x) -> bool:
    """Whether `module` computes `x` eagerly for inference: eval mode, autograd off, no compiler
    or tracer at work. Only then may a concatenation's inputs be written into its output
    (`Pending`): `out=` is not differentiable, and inductor plans concatenations itself."""
    return not (module.training or torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch.jit.is_tracing() or not isinstance(x, torch.Tensor))  # torch.fx traces proxies


class Pending:
    """What a module called with `defer=True` hands the concatenation that alone reads it, in
    eager inference (optimize="infer"): its output less the last step, which the concatenation
    does straight into its channel slice of the output, so `torch.cat` copies nothing. Either
    an activation not yet applied (`value`, `act`) or a nested concatenation's `parts`."""

    def __init__(self, value=None, act=None, parts=()):
        self.value, self.act, self.parts = value, act, tuple(parts)

    def leaves(self) -> list:
        """The tensors it is made of, in channel order."""
        if self.value is not None:
            return [self.value]
        return [t for p in self.parts for t in (p.leaves() if isinstance(p, Pending) else [p])]

    def finish(self):
        """The value itself, as the module would have returned it."""
        if self.value is not None:
            return self.act(self.value)
        return torch.cat([p.finish() if isinstance(p, Pending) else p for p in self.parts], 1)

    def write(self, out) -> None:
        """Write the value into `out`, a tensor view of its shape."""
        if self.value is None:
            write_parts(self.parts, out)
        elif type(self.act) is nn.ReLU:
            torch.clamp_min(self.value, 0, out=out)
        elif isinstance(self.act, nn.Hardtanh):  # ReLU6
            torch.clamp(self.value, self.act.min_val, self.act.max_val, out=out)
        else:  # no `out=` form: computed, then copied
            out.copy_(self.act(self.value))


def write_parts(parts, out) -> None:
    """`out.copy_(torch.cat(parts, 1))` without the intermediate: each part into its slice."""
    start = 0
    for p in parts:
        width = sum(t.shape[1] for t in p.leaves()) if isinstance(p, Pending) else p.shape[1]
        piece = out[:, start:start + width]
        if isinstance(p, Pending):
            p.write(piece)
        else:
            piece.copy_(p)
        start += width


def concat_pending(xs):
    """`torch.cat(xs, 1)` where some of `xs` are `Pending`: each written into its slice of one new
    tensor (in torch.cat's memory format). Inputs that torch.cat would promote or refuse (mixed
    dtypes or devices, unequal sizes) are finished and left to torch.cat."""
    leaves = [t for x in xs for t in (x.leaves() if isinstance(x, Pending) else [x])]
    first = leaves[0]
    if any(t.dim() != 4 or t.dtype != first.dtype or t.device != first.device or t.shape[0] != first.shape[0]
           or t.shape[2:] != first.shape[2:] for t in leaves):
        return torch.cat([x.finish() if isinstance(x, Pending) else x for x in xs], 1)
    channels_last = all(t.stride(1) < t.stride(3) for t in leaves)  # torch.cat keeps a common layout
    out = torch.empty((first.shape[0], sum(t.shape[1] for t in leaves), *first.shape[2:]), dtype=first.dtype,
                      device=first.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    write_parts(xs, out)
    return out


class ConvBnAct(nn.Module):
    """Convolution, optional batch norm, optional activation (children `conv`, `bn`, `act`).

    `act` is an activation module (the compiler gives it in place: its input is the fresh output
    of conv or bn) or None.

    `padding` is symmetric (rows, columns) and handled by the convolution; `pad`, when given,
    is an explicit (left, right, top, bottom) zero padding applied first (TF SAME at stride 2).
    """

    def __init__(self, in_channels, filters, kernel, stride=1, padding=0, pad=None, dilation=1, groups=1,
                 bias=False, bn_eps=None, act=None, bn_momentum=0.1):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(in_channels, filters, kernel, stride, padding, dilation, groups, bias)
        self.bn = nn.BatchNorm2d(filters, eps=bn_eps, momentum=bn_momentum) if bn_eps is not None else None
        self.act = act
        # optimize="infer": batch norm folded into the conv (see `fold`); not in the state dict
        self.register_buffer("folded_weight", None, persistent=False)
        self.register_buffer("folded_bias", None, persistent=False)

    def fold(self, on=True):
        """Keep (or drop, `on=False`) a copy of the convolution with batch norm folded in:
        ``w * g / sqrt(var + eps)`` and ``b - mean * g / sqrt(var + eps)``, used in eval mode
        without autograd. The copy is of the weights now: `IncdslNet` refreshes it whenever
        the model enters eval mode or loads a state dict."""
        if not on or self.bn is None:
            self.folded_weight = self.folded_bias = None
            return
        # In float64 where the device has it: a float32 fold rounds each product once more,
        # which over MobileNetV3-Large's 17 blocks doubled the difference from the unfolded model.
        wide = torch.float32 if self.conv.weight.device.type == "mps" else torch.float64
        with torch.no_grad():
            scale = torch.rsqrt(self.bn.running_var.to(wide) + self.bn.eps) * self.bn.weight.to(wide)
            shift = self.bn.bias.to(wide) - self.bn.running_mean.to(wide) * scale
            if self.conv.bias is not None:
                shift = shift + self.conv.bias.to(wide) * scale
            weight = self.conv.weight.to(wide) * scale.reshape(-1, 1, 1, 1)
            self.folded_weight = weight.to(self.conv.weight.dtype)
            self.folded_bias = shift.to(self.conv.weight.dtype)

    def use_folded(self, x):
        """Folded in eval mode without autograd. Not in eager CUDA: there cuDNN adds the bias in
        a pass of its own, which costs what batch norm did (measured on an H200, bf16), while
        `torch.compile` fuses bias and activation into one kernel. Not under `torch.jit.trace`,
        which checks its graph by tracing again without autograd: the graph must not depend on it."""
        return (self.folded_weight is not None and not self.training and not torch.is_grad_enabled()
                and not torch.jit.is_tracing() and (x.device.type != "cuda" or torch.compiler.is_compiling()))

    def forward(self, x, defer=False):
        """`defer=True` (optimize="infer", the output goes only into a concatenation): in eager
        inference return the output before the activation as a `Pending`."""
        y = self.conv_bn(x)
        if self.act is None:
            return y
        if defer and eager_inference(self, x):
            return Pending(y, self.act)
        return self.act(y)

    def conv_bn(self, x):
        """The output before the activation: padding, convolution, batch norm (or the folded copy)."""
        if self.pad is not None:
            x = F.pad(x, self.pad)
        if self.use_folded(x):
            return F.conv2d(x, self.folded_weight, self.folded_bias, self.conv.stride, self.conv.padding,
                            self.conv.dilation, self.conv.groups)
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class FusedConvBnAct(ConvBnAct):
    """Sibling `ConvBnAct`s that read the same tensor and differ only in filter count, run as
    one (horizontal fusion, optimize="train"): their weights, biases and batch-norm state
    concatenated along output channels. Exact in training too, as batch norm is per channel.
    `forward` returns each member's output, a view of its channels.

    `pools[i]`, when given, is an average pool that member i read its input through: it runs
    after the member's (1x1, bias-free) convolution instead, on the member's channels, before
    batch norm; average pooling and such a convolution commute, and the pool sees fewer
    channels. Pooled members come last."""

    def __init__(self, members, pools=None):
        first = members[0]
        c = first.conv
        super().__init__(c.in_channels, sum(m.conv.out_channels for m in members), c.kernel_size, c.stride,
                         c.padding, first.pad, c.dilation, c.groups, c.bias is not None,
                         first.bn.eps if first.bn is not None else None)
        self.act = first.act  # stateless, the same for every member
        self.splits = [m.conv.out_channels for m in members]
        with torch.no_grad():
            for mine, theirs in ((self.conv, [m.conv for m in members]), (self.bn, [m.bn for m in members])):
                for key, value in (mine.state_dict() if mine is not None else {}).items():
                    parts = [t.state_dict()[key] for t in theirs]
                    value.copy_(parts[0] if value.dim() == 0 else torch.cat(parts))
            if self.bn is not None:
                self.bn.momentum = first.bn.momentum
        pools = list(pools or [None] * len(members))
        self.pooled = sum(p is not None for p in pools)
        self.pools = nn.ModuleList([p for p in pools if p is not None])
        self.unpooled = sum(self.splits[:len(self.splits) - self.pooled])

    def forward(self, x, defer=()):
        """Each member's output; `defer` (optimize="infer") flags the members whose output goes
        only into a concatenation: in eager inference those are `Pending` (see `ConvBnAct`)."""
        deferring = any(defer) and eager_inference(self, x)
        if self.pooled and self.use_folded(x):  # inference: the parts stay apart, no concatenation
            parts = self.pooled_parts(x, folded=True)
            if self.act is not None and not deferring:
                parts = [self.act(p) for p in parts]
            members = (*(torch.split(parts[0], self.splits[:len(self.splits) - self.pooled], 1)
                         if self.unpooled else ()), *parts[1 if self.unpooled else 0:])
        else:
            y = self.conv_bn(x)
            if self.act is not None and not deferring:  # one activation, in place, over every member
                y = self.act(y)
            members = torch.split(y, self.splits, 1)
        if self.act is None or not deferring:
            return members  # as it is: torch.fx unpacks a traced split, but cannot iterate it
        return tuple(Pending(m, self.act) if d else self.act(m) for m, d in zip(members, defer))

    def conv_bn(self, x):
        if not self.pooled:
            return super().conv_bn(x)
        folded = self.use_folded(x)
        y = torch.cat(self.pooled_parts(x, folded), 1)
        return self.bn(y) if self.bn is not None and not folded else y

    def pooled_parts(self, x, folded):
        """The unpooled members' channels, then each pooled member's: the convolution on all
        channels, each pool on its member's; the folded shift added after the pool (a counted
        zero pad would scale it), in place on the fresh tensors (`folded`: autograd is off)."""
        if self.pad is not None:
            x = F.pad(x, self.pad)
        y = F.conv2d(x, self.folded_weight, None, self.conv.stride, self.conv.padding, self.conv.dilation,
                     self.conv.groups) if folded else self.conv(x)
        parts = [y[:, :self.unpooled]] if self.unpooled else []
        start = self.unpooled
        for pool, width in zip(self.pools, self.splits[len(self.splits) - self.pooled:]):
            parts.append(pool(y[:, start:start + width]))
            start += width
        if folded:
            start = 0
            for p in parts:
                p.add_(self.folded_bias[start:start + p.shape[1]].reshape(1, -1, 1, 1))
                start += p.shape[1]
        return parts


def fuse_siblings(net):
    """Replace each group that a module class lists in its `fusions` ((name, member paths), ...)
    by one `FusedConvBnAct` registered as `name`. The network's state dict keeps the members'
    keys, in the unfused order, and loads them (hooks), so checkpoints and references fit."""
    plain_keys = list(net.state_dict())
    plan = []  # (fused path, member paths, state leaves)
    for path, module in list(net.named_modules()):
        for name, members, pools in getattr(type(module), "fusions", ()):
            parts = [module.get_submodule(m) for m in members]
            fused = FusedConvBnAct(parts, [module.get_submodule(p) if p else None for p in pools])
            for m in (*members, *(p for p in pools if p)):
                parent, _, leaf = m.rpartition(".")
                holder = module.get_submodule(parent) if parent else module
                if isinstance(holder, nn.ModuleList):
                    holder[int(leaf)] = nn.Identity()  # keeps the indices of the others
                else:
                    delattr(holder, leaf)
            module.add_module(name, fused)
            prefix = path + "." if path else ""
            plan.append((prefix + name, tuple(prefix + m for m in members), tuple(fused.state_dict())))
    net.fusion_plan, net.plain_keys = plan, plain_keys
    net.register_state_dict_post_hook(_unfused_state)
    net.register_load_state_dict_pre_hook(_fused_state)


def _unfused_state(module, state_dict, prefix, local_metadata):
    for fused, members, leaves in module.fusion_plan:
        for leaf in leaves:
            value = state_dict.pop(f"{prefix}{fused}.{leaf}")
            splits = module.get_submodule(fused).splits
            parts = [value] * len(members) if value.dim() == 0 else value.split(splits)
            for m, part in zip(members, parts):
                state_dict[f"{prefix}{m}.{leaf}"] = part
    keys = [prefix + k for k in module.plain_keys]
    if all(k in state_dict for k in keys):  # the unfused order: references pair layers by it
        moved = [(k, state_dict.pop(k)) for k in keys]
        state_dict.update(moved)


def _fused_state(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    for fused, members, leaves in module.fusion_plan:
        for leaf in leaves:
            keys = [f"{prefix}{m}.{leaf}" for m in members]
            if all(k in state_dict for k in keys):
                parts = [state_dict.pop(k) for k in keys]
                state_dict[f"{prefix}{fused}.{leaf}"] = parts[0] if parts[0].dim() == 0 else torch.cat(parts)


class PaddedPool(nn.Module):
    """Max or average pooling with explicit, possibly asymmetric, padding.

    `pad` (left, right, top, bottom) is what is applied before pooling (-inf for max, zeros
    for average), including any trailing rows that ceil rounding needs. Average pooling then
    rescales each output to the divisor the spec asks for: the real input cells of the window
    (`count_pad=False`) or those plus the spec's padding `counted` (left, right, top, bottom).
    """

    def __init__(self, kind, kernel, stride, pad, in_size=None, counted=None, count_pad=True):
        super().__init__()
        self.kind, self.pad = kind, tuple(pad)
        self.kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.area = float(self.kernel[0] * self.kernel[1])
        divisor = self._divisors(in_size, counted if count_pad else (0, 0, 0, 0)) if kind == "avg" else None
        # not persistent: derived from the shapes, so not part of the state dict
        self.register_buffer("divisor", divisor, persistent=False)

    def _divisors(self, in_size, counted):
        """The divisor of each output, or None where every one is the window's area."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        left, right, top, bottom = self.pad
        h, w = in_size
        rows = self._counts(h, kh, sh, top, bottom, -counted[2], h + counted[3])
        cols = self._counts(w, kw, sw, left, right, -counted[0], w + counted[1])
        if all(r == kh for r in rows) and all(c == kw for c in cols):
            return None
        return torch.tensor([[float(r * c) for c in cols] for r in rows])

    @staticmethod
    def _counts(size, k, s, before, after, lo, hi):
        """For each window along one axis, how many of its cells lie in [lo, hi)."""
        out = (size + before + after - k) // s + 1
        return [sum(1 for i in range(o * s - before, o * s - before + k) if lo <= i < hi) for o in range(out)]

    def forward(self, x):
        if self.kind == "max":
            x = F.pad(x, self.pad, value=-math.inf)
            return F.max_pool2d(x, self.kernel, self.stride)
        x = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride)
        if self.divisor is not None:
            x = x * (self.area / self.divisor.to(x.dtype))
        return x


class Concat(nn.Module):
    """Inputs joined along channels, in order. Inputs that are `Pending` (optimize="infer") are
    written into their slices of the output; with `defer=True` (the output goes only into an
    enclosing concatenation) it returns its inputs as a `Pending` in eager inference."""

    def forward(self, *xs, defer=False):
        if defer and eager_inference(self, xs[0] if not isinstance(xs[0], Pending) else xs[0].leaves()[0]):
            return Pending(parts=xs)
        for x in xs:
            if isinstance(x, Pending):
                return concat_pending(xs)
        return torch.cat(xs, 1)


class Add(nn.Module):
    """`act(sum(scale_i * x_i))`: a residual sum (scales (1, s)) or a plain one; `act` is an
    activation module (in place: its input is the fresh sum) or None."""

    def __init__(self, scales, act=None):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.act = act

    def forward(self, *xs):
        y = xs[0] if self.scales[0] == 1.0 else xs[0] * self.scales[0]
        for x, s in zip(xs[1:], self.scales[1:]):
            y = y + x if s == 1.0 else torch.add(y, x, alpha=s)
        if self.act is not None:
            y = self.act(y)
        return y


class PadChannels(nn.Module):
    """Zero channels added before and after the input's (a parameter-free shortcut)."""

    def __init__(self, before, after):
        super().__init__()
        self.before, self.after = int(before), int(after)

    def forward(self, x):
        return F.pad(x, (0, 0) * (x.dim() - 2) + (self.before, self.after))  # channels are dim 1


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: channels read as `groups` rows, transposed (torchvision's
    `channel_shuffle`; written out because ONNX has no `channel_shuffle` operator)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = int(groups)

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class ColumnDraw:
    """One draw per forward pass, shared by every `Mean` with `global_path` in a network.

    `chance` is uniform in [0, 1) and `column` uniform in 0..columns-1, both 0-d tensors on the
    input's device (no host sync); None until the network's first training forward pass.
    `fixed` (set by `IncdslNet.keep_column`) replaces the draw: that column, every pass, in
    training and in eval.
    """

    def __init__(self, columns):
        self.columns = int(columns)
        self.chance = self.column = self.fixed = None

    def draw(self, device):
        if self.fixed is not None:
            # fill kernels, not host copies: safe inside a CUDA-graph capture
            self.chance = torch.zeros((), device=device)  # below every join's global_path
            self.column = torch.full((), self.fixed, dtype=torch.long, device=device)
        else:
            self.chance = torch.rand((), device=device)
            self.column = torch.randint(self.columns, (), device=device)


class Mean(nn.Module):
    """The element-wise mean of the inputs (FractalNet's join).

    With `drop_path` > 0, in training each input is dropped with that probability, for the
    whole mini-batch, keeping at least one (FractalNet's local drop-path), and the mean is
    over the kept inputs. With `global_path` > 0, when the network's draw for this forward
    pass has chance < global_path and its column is one of this join's input positions, only
    that input is kept (global drop-path: one column in every join). In eval mode it is the
    plain mean, unless the network keeps one column (`IncdslNet.keep_column`).
    """

    def __init__(self, drop_path=0.0, global_path=0.0, inputs=0):
        super().__init__()
        self.drop_path, self.global_path, self.inputs = float(drop_path), float(global_path), int(inputs)
        self.column_draw = None  # the network's ColumnDraw (IncdslNet.share_column_draw)

    def forward(self, *xs):
        draw = self.column_draw if self.global_path > 0.0 else None
        columnar = draw is not None and draw.column is not None and (self.training or draw.fixed is not None)
        if not columnar and (not self.training or self.drop_path == 0.0):
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y / len(xs)
        n, device = len(xs), xs[0].device
        positions = torch.arange(n, device=device)
        if self.training and self.drop_path > 0.0:
            keep = torch.rand(n, device=device) >= self.drop_path
            # none kept: keep one, chosen uniformly (tensor ops only: no host sync, traceable)
            forced = positions == torch.randint(n, (), device=device)
            keep = keep | (forced & ~keep.any())
        else:
            keep = torch.ones(n, dtype=torch.bool, device=device)
        if columnar:
            column = positions == draw.column  # all false off the column's path
            keep = torch.where((draw.chance < self.global_path) & column.any(), column, keep)
        w = keep.to(xs[0].dtype) / keep.sum()
        y = xs[0] * w[0]
        for i in range(1, n):
            y = y + xs[i] * w[i]
        return y


class Max(nn.Module):
    """The element-wise maximum of the inputs."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = torch.maximum(y, x)
        return y


class Multiply(nn.Module):
    """The element-wise product of the inputs (a Cx1x1 input broadcasts over the others)."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y


class Gate(nn.Module):
    """The highway layer's join: `t * h + (1 - t) * x`."""

    def forward(self, t, h, x):
        return t * h + (1 - t) * x


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al. 2016) on a residual branch.

    Training: the input is kept unscaled with probability `survive`, for the whole mini-batch,
    else zeroed; with `split`, channels [0, split) and [split, C) are kept or zeroed
    independently (PyramidNet's separated stochastic depth). Eval: the input times `survive`.
    """

    def __init__(self, survive, split=0):
        super().__init__()
        self.survive, self.split = float(survive), int(split)

    def forward(self, x):
        if not self.training:
            return x * self.survive
        # decided by the attribute alone, not the input's shape, so torch.fx traces it
        keep = (torch.rand(2 if self.split else 1, device=x.device) < self.survive).to(x.dtype)
        if not self.split:
            return x * keep
        return torch.cat([x[:, :self.split] * keep[0], x[:, self.split:] * keep[-1]], 1)


class DropPath(nn.Module):
    """Per-sample drop path (timm's `DropPath`): in training each sample is zeroed with
    probability `p` and the others scaled by 1 / (1 - p); the identity in eval mode."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


class Swapout(nn.Module):
    """One of swapout's masks (Singh et al. 2016): in training every unit is kept with
    probability `keep`, unscaled, else zeroed; in eval mode the input times `keep`."""

    def __init__(self, keep):
        super().__init__()
        self.keep = float(keep)

    def forward(self, x):
        if not self.training:
            return x * self.keep
        return x * torch.empty_like(x).bernoulli_(self.keep)


class LearnedScale(nn.Module):
    """The input times one learned scalar, `weight`, starting at `init` (Weighted Residuals)."""

    def __init__(self, init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x):
        return x * self.weight


class LayerScale(nn.Module):
    """The input times a learned value per channel, `layer_scale`, each starting at `init`
    (ConvNeXt's, CaiT's). Named and shaped [C, 1, 1] as torchvision's `CNBlock.layer_scale`,
    so its state dict loads as it is; [C] on a flat input."""

    def __init__(self, channels, init=1e-6, flat=False):
        super().__init__()
        shape = (int(channels),) if flat else (int(channels), 1, 1)
        self.layer_scale = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x):
        return x * self.layer_scale


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels at each position of an NCHW tensor: `nn.LayerNorm` on the
    channels-last view, as torchvision's `LayerNorm2d` (models/convnext.py) computes it."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class AdaptiveMaxPool(nn.AdaptiveMaxPool2d):
    """`nn.AdaptiveMaxPool2d`, which ONNX lacks: exported as the maximum over each of torch's
    windows (rows ``floor(i * h / oh)`` to ``ceil((i + 1) * h / oh)``, columns alike)."""

    def forward(self, x):
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        size = self.output_size
        oh, ow = (size, size) if isinstance(size, int) else size
        h, w = x.shape[-2:]
        x = torch.cat([x[..., (i * h) // oh:-(-((i + 1) * h) // oh), :].amax(-2, keepdim=True) for i in range(oh)], -2)
        return torch.cat([x[..., (j * w) // ow:-(-((j + 1) * w) // ow)].amax(-1, keepdim=True) for j in range(ow)], -1)


class LinearAct(nn.Linear):
    """A linear layer followed by an activation module `act`; same state-dict keys as `nn.Linear`."""

    def __init__(self, in_features, out_features, bias=True, act=None):
        super().__init__(in_features, out_features, bias)
        self.act = act

    def forward(self, x):
        y = super().forward(x)
        return self.act(y) if self.act is not None else y


def init_weights(module, seed=None):
    """Initialise every parameter and buffer of `module`, deterministically when `seed` is given.

    Convolutions: Kaiming normal (fan in, ReLU gain: keeps activations at unit scale also
    without batch norm); linear layers:
    normal with std 0.01 truncated at 2 std, as torchvision's GoogLeNet; biases 0; batch norm
    weight 1, bias 0, running mean 0, variance 1. Values are drawn on the CPU in float32, in
    `modules()` order, so the result does not depend on device or dtype. `seed=None` draws
    from torch's global generator.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def draw(param, fill):
        if param.device.type == "cpu" and param.dtype == torch.float32:
            fill(param)
        else:
            value = torch.empty(param.shape)
            fill(value)
            param.copy_(value)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                draw(m.weight, lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Linear):
                draw(m.weight, lambda w: nn.init.trunc_normal_(w, std=0.01, a=-0.02, b=0.02, generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                if m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()


class CapturedGraph:
    """One inference forward of `model` recorded as a CUDA graph for inputs like `example`
    (shape, dtype, device): calling it copies the input into the graph's own input
    tensor and replays the recorded kernels, without Python or launch overhead. The result is
    the graph's own output tensor, overwritten by the next call (clone it to keep it).

    Recorded in eval mode without autograd, under the caller's autocast if any, after `warmup`
    forwards on a side stream (cuDNN picks its algorithms there). Works for any module; a
    network's `capture` checks that it is on the example's device."""

    def __init__(self, model, example, warmup=3):
        if not isinstance(example, torch.Tensor):
            raise TypeError(f"CUDA-graph capture needs an example input tensor, got {type(example).__name__}")
        if model.training:
            raise RuntimeError("CUDA-graph capture records inference: call model.eval() first")
        if example.device.type != "cuda" or not torch.cuda.is_available():
            raise ValueError(f"CUDA-graph capture needs a CUDA device: the example input is on {example.device}")
        self.model, self.example = model, (tuple(example.shape), example.dtype, example.device)
        self.input = example.clone()
        # the caller's autocast without its cache of cast weights: cached outside the capture,
        # they would be freed when the caller's autocast ends, under the graph's feet
        amp = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), enabled=torch.is_autocast_enabled("cuda"),
                             cache_enabled=False)
        stream = torch.cuda.Stream(example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.no_grad(), amp, torch.cuda.stream(stream):
            for _ in range(warmup):
                model(self.input)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), amp, torch.cuda.graph(self.graph):
            self.output = model(self.input)

    def __call__(self, x):
        got = (tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else None
        if got != self.example:
            raise ValueError(f"this CUDA graph was captured for input {self.describe(self.example)}, got "
                             + (self.describe(got) if got else type(x).__name__) + ": capture again for it")
        if self.model.training:
            raise RuntimeError("the model is in training mode; a captured CUDA graph replays inference only")
        self.input.copy_(x)
        self.graph.replay()
        return self.output

    def __reduce_ex__(self, protocol):
        raise TypeError("a captured CUDA graph cannot be pickled or copied (it holds the device's recorded "
                        "kernels): pickle the model and call model.eval().capture(x) again where it is loaded")

    @staticmethod
    def describe(key) -> str:
        shape, dtype, device = key
        return f"{'x'.join(map(str, shape))} {str(dtype).replace('torch.', '')} on {device}"


class InputShapeError(ValueError):
    """A compiled network got something else than a batch of the images it was compiled for
    (`IncdslNet.check_input`)."""


# The texts of `IncdslNet.check_input`'s error format sizes with f-strings only: under
# torch.compile with dynamic sizes they are symbolic, and Dynamo formats those in an f-string
# but fails on str() or repr() (as of a tuple), with an error of its own in place of ours.

def shape_text(shape) -> str:
    """`3x64x64`."""
    return "x".join([f"{d}" for d in shape])


def tuple_text(values) -> str:
    """`(2, 3, 64, 64)`, as repr writes a tuple of ints (`(5,)` for one)."""
    items = [f"{v}" for v in values]
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def set_word(value) -> str:
    """A network parameter's value as `--set NAME=VALUE` reads it back (`yes`, `3x3`, `gelu`, `0.5`),
    quoted for a shell where it holds anything but letters, digits and `._+-`."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "none"}[value]
    word = "x".join([f"{v}" for v in value]) if isinstance(value, tuple) else f"{value}"
    plain = word and all(c.isalnum() or c in "._+-" for c in word)
    return word if plain else "'" + word.replace("'", "'\\''") + "'"


def listed(paths) -> str:
    """`a`, `b`, `c` and 2 more."""
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return f"{', '.join(f'`{p}`' for p in paths[:3])}{more}"


def refold_on_load(module, incompatible_keys):
    """The load-state-dict hook of optimize="infer": a named function, so the model pickles."""
    module.refold()


class IncdslNet(nn.Module):
    """What every compiled network shares: the timm-style model API.

    Subclasses set `num_classes`, `input_shape`, `aux_names`, `aux_weights`, `aux_paths` (the module that
    holds each aux head) and `classifiers`: one (module path, in_features, bias, act) per
    classifier, the main one first, then those of the aux heads that predict the same classes;
    `act` is the activation module after the linear layer (copied into each new one) or None.
    `network_name`, `spec_file`, `spec_settings`, `size_bound_weights` and `channel_bound_weights`
    are what the error of `check_input`, which the trunk's forward calls first, says.
    """

    num_classes = None
    optimize_level = "none"  # "train": sibling convs fused; "infer": also batch norm folded in eval
    input_shape = None  # (C, H, W) the network was compiled for
    aux_names = ()
    aux_weights = ()
    aux_paths = ()
    classifiers = ()
    column_draw = None  # the shared draw of global drop-path (`share_column_draw`)
    # what `check_input`'s error names: the spec's network and file, and the module paths of
    # the layers whose weights change with the input's height and width, or with its channels
    # (None: the compiler could not tell)
    network_name = None
    spec_file = None
    spec_settings = None  # the parameters given when it was built (`--set`, `load(params=)`); None: none
    size_bound_weights = None
    channel_bound_weights = None

    def optimize(self):
        """Apply the rewrites of `optimize_level` (the compiler calls it last in `__init__`)."""
        if self.optimize_level in ("train", "infer"):
            fuse_siblings(self)
        if self.optimize_level == "infer":
            self.register_load_state_dict_post_hook(refold_on_load)

    def refold(self):
        """Refresh the folded batch-norm copies (optimize="infer") in eval mode; drop them in training."""
        if self.optimize_level == "infer":
            for m in self.modules():
                if isinstance(m, ConvBnAct):
                    m.fold(not self.training)

    def train(self, mode=True):
        super().train(mode)
        self.refold()
        return self

    def check_input(self, x):
        """Refuse anything but a batch (N, C, H, W) of the images the network was compiled for
        (`input_shape`): at another size its fixed pools, padding and flattened widths would
        compute something else, silently or deep inside with a bare shape error. The trunk's
        forward calls it first. It compares static sizes only (the batch stays free), so
        exported and compiled graphs hold nothing of it. Not under `torch.jit.trace` (its sizes
        are traced tensors: comparing them warns) nor torch.fx (proxies have no sizes)."""
        if torch.jit.is_tracing() or isinstance(x, torch.fx.Proxy):
            return
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1:] == self.input_shape):
            if self.input_shape is not None:  # None: a class that does not say (hand-written)
                raise InputShapeError(self.input_problem(x))

    def input_problem(self, x) -> str:
        """What `check_input` says about `x`: the shape expected, the shape given, and how to
        get a network for it. (Built by f-strings alone, which torch.compile(fullgraph=True)
        traces: its error then quotes the text, where the shapes are static.)"""
        want = tuple(self.input_shape)
        name = f"network `{self.network_name}`" if self.network_name else f"`{type(self).__name__}`"
        return (f"{name} was compiled for {shape_text(want)} images, a tensor of shape "
                f"(N, {', '.join(map(str, want))}); got {self.what_came(x, want)}")

    def what_came(self, x, want: tuple) -> str:
        if not isinstance(x, torch.Tensor):
            return f"{type(x).__name__}: pass a tensor"
        got = tuple(x.shape)
        if got == want:
            return f"one image of shape {tuple_text(got)}: add the batch dimension (x.unsqueeze(0))"
        if len(got) != 4:
            return f"a {len(got)}-D tensor of shape {tuple_text(got)}"
        if got[1:] == (*want[1:], want[0]):
            return f"shape {tuple_text(got)}, channels last: put them second (x.permute(0, 3, 1, 2))"
        return f"shape {tuple_text(got)}: {self.other_size_hint(got[1:])}"

    def other_size_hint(self, size) -> str:
        """How to get this network for images of `size` (C, H, W), with the parameters it was built
        with (`spec_settings`), and whether its weights load there."""
        spec = self.spec_file if self.spec_file and not self.spec_file.startswith("<") else None
        settings = sorted((self.spec_settings or {}).items())
        params = ", ".join([f"{name!r}: {value!r}" for name, value in settings])
        given = f", params={{{params}}}" if settings else ""
        build = f"incdsl.to_torch(incdsl.load({repr(spec) if spec else 'SPEC'}{given}, input={tuple_text(size)}))"
        flags = "".join([f" --set {name}={set_word(value)}" for name, value in settings])
        command = f"incdsl compile {spec or 'SPEC'}{flags} --input {shape_text(size)}"
        return (f"for {shape_text(size)} images build it from its spec at that size, {build} or `{command}`; "
                f"{self.weights_hint(size)}")

    def weights_hint(self, size) -> str:
        """Whether weights trained at `input_shape` load into the network built for `size`."""
        changed = {}  # what differs -> the layers whose weights it changes
        if size[0] != self.input_shape[0]:
            changed["channels"] = self.channel_bound_weights
        if size[1:] != tuple(self.input_shape[1:]):
            changed["height and width"] = self.size_bound_weights
        trained = f"weights trained at {shape_text(self.input_shape)}"
        if any(paths is None for paths in changed.values()):
            return f"{trained} load into it if no layer's weights depend on the input size"
        paths = sorted({p for ps in changed.values() for p in ps})
        if not paths:
            return f"{trained} load into it (no layer's weights depend on the input size)"
        what = "size" if len(changed) > 1 else next(iter(changed))
        return (f"the weights of {listed(paths)} depend on the input's {what}: {trained} load into it "
                f"only where their shapes stay the same")

    def share_column_draw(self):
        """Give every `Mean` with `global_path` one `ColumnDraw` (the compiler calls it in `__init__`)."""
        joins = [m for m in self.modules() if isinstance(m, Mean) and m.global_path > 0.0]
        draw = ColumnDraw(max(m.inputs for m in joins)) if joins else None
        for m in joins:
            m.column_draw = draw
        self.column_draw = draw

    def draw_columns(self, x):
        """The draw of this forward pass for global drop-path (run before the trunk): in training,
        or in eval while `keep_column` holds a column."""
        if self.column_draw is not None and (self.training or self.column_draw.fixed is not None):
            self.column_draw.draw(x.device)

    def keep_column(self, column):
        """Run column `column` alone (0 the deepest) in every `mean(global_path = ...)` join, in
        training and in eval (FractalNet's single-column subnetworks: the deepest column's
        results, an anytime answer from a shallow one); None goes back to the full network."""
        if self.column_draw is None:
            raise ValueError("this network has no `mean(global_path = ...)` join to choose a column in")
        if column is not None and not (isinstance(column, int) and 0 <= column < self.column_draw.columns):
            raise ValueError(f"column must be None or an integer in 0..{self.column_draw.columns - 1}, got {column!r}")
        self.column_draw.fixed = column
        return self

    def capture(self, example, warmup=3):
        """A `CapturedGraph` of this network's inference on inputs like `example` (fixed shape,
        dtype and device; CUDA only, eval mode): ``run = model.eval().capture(x)``,
        then ``run(x)``. Refused on the CPU, in training mode, and for a model not on the
        example's device."""
        ref = next(self.parameters(), None)
        if isinstance(example, torch.Tensor) and ref is not None and ref.device != example.device:
            raise ValueError(f"the model is on {ref.device} but the example input on {example.device}: "
                             "move one of them (model.to(device))")
        return CapturedGraph(self, example, warmup)

    def get_classifier(self):
        return self.get_submodule(self.classifiers[0][0]) if self.classifiers else None

    def reset_classifier(self, num_classes, seed=None):
        """New classifiers (main and aux) for `num_classes` classes, initialised as `init_weights`.

        `num_classes=0` makes the main classifier an identity (aux classifiers are kept).
        """
        if not self.classifiers:
            raise ValueError("this network has no linear classifier to reset")
        ref = next(self.parameters(), None)
        for i, (path, in_features, bias, act) in enumerate(self.classifiers):
            if num_classes == 0:
                new = nn.Identity() if i == 0 else None
            elif act is None:
                new = nn.Linear(in_features, num_classes, bias)
            else:
                new = LinearAct(in_features, num_classes, bias, copy.deepcopy(act))
            if new is None:
                continue
            init_weights(new, seed)
            if ref is not None:
                new = new.to(device=ref.device, dtype=ref.dtype)
            parent_path, _, name = path.rpartition(".")
            parent = self.get_submodule(parent_path) if parent_path else self
            if name.isdigit():
                parent[int(name)] = new
            else:
                setattr(parent, name, new)
        self.num_classes = num_classes


# --- incdsl layers: end
