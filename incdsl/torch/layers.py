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
import math

import torch
import torch.nn.functional as F
from torch import nn


def make_act(name, inplace=False):
    """An activation module by its incdsl name (`relu`, `gelu`, ...)."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "relu6":
        return nn.ReLU6(inplace=inplace)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU(inplace=inplace)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "elu":
        return nn.ELU(inplace=inplace)
    if name == "leaky_relu":
        return nn.LeakyReLU(inplace=inplace)
    raise ValueError(f"unknown activation {name!r}")


class Scope(nn.Module):
    """A named group of layers (a branch, a repeat member); holds modules, computes nothing."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


class ConvBnAct(nn.Module):
    """Convolution, optional batch norm, optional activation (children `conv`, `bn`, `act`).

    `padding` is symmetric (rows, columns) and handled by the convolution; `pad`, when given,
    is an explicit (left, right, top, bottom) zero padding applied first (TF SAME at stride 2).
    """

    def __init__(self, in_channels, filters, kernel, stride=1, padding=0, pad=None, dilation=1, groups=1,
                 bias=False, bn_eps=None, act=None):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(in_channels, filters, kernel, stride, padding, dilation, groups, bias)
        self.bn = nn.BatchNorm2d(filters, eps=bn_eps) if bn_eps is not None else None
        # in place is safe: the activation's input is the fresh output of conv or bn
        self.act = make_act(act, inplace=True) if act is not None else None

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


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
    """Inputs joined along channels, in order."""

    def forward(self, *xs):
        return torch.cat(xs, 1)


class Add(nn.Module):
    """`act(sum(scale_i * x_i))`: a residual sum (scales (1, s)) or a plain one."""

    def __init__(self, scales, act=None):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        # in place is safe: the activation's input is the fresh sum
        self.act = make_act(act, inplace=True) if act is not None else None

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


class Mean(nn.Module):
    """The element-wise mean of the inputs (FractalNet's join).

    With `drop_path` > 0, in training each input is dropped with that probability, for the
    whole mini-batch, keeping at least one (FractalNet's local drop-path), and the mean is
    over the kept inputs; in eval mode it is the plain mean.
    """

    def __init__(self, drop_path=0.0):
        super().__init__()
        self.drop_path = float(drop_path)

    def forward(self, *xs):
        if not self.training or self.drop_path == 0.0:
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y / len(xs)
        n, device = len(xs), xs[0].device
        keep = torch.rand(n, device=device) >= self.drop_path
        # none kept: keep one, chosen uniformly (tensor ops only: no host sync, traceable)
        forced = torch.arange(n, device=device) == torch.randint(n, (), device=device)
        keep = keep | (forced & ~keep.any())
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
        groups = 2 if 0 < self.split < x.shape[1] else 1
        keep = (torch.rand(groups, device=x.device) < self.survive).to(x.dtype)
        if groups == 1:
            return x * keep
        return torch.cat([x[:, :self.split] * keep[0], x[:, self.split:] * keep[1]], 1)


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


class LinearAct(nn.Linear):
    """A linear layer followed by an activation; same state-dict keys as `nn.Linear`."""

    def __init__(self, in_features, out_features, bias=True, act=None):
        super().__init__(in_features, out_features, bias)
        self.act = make_act(act, inplace=True)

    def forward(self, x):
        return self.act(super().forward(x))


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


class IncdslNet(nn.Module):
    """What every compiled network shares: the timm-style model API.

    Subclasses set `num_classes`, `input_shape`, `aux_names`, `aux_weights`, `aux_paths` (the module that
    holds each aux head) and `classifiers`: one (module path, in_features, bias, act) per
    classifier, the main one first, then those of the aux heads that predict the same classes.
    """

    num_classes = None
    input_shape = None  # (C, H, W) the network was compiled for
    aux_names = ()
    aux_weights = ()
    aux_paths = ()
    classifiers = ()

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
                new = LinearAct(in_features, num_classes, bias, act)
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
