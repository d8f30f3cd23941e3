"""Helpers that build, randomise and compare models, shared by the test modules (which import
no helpers from one another). Torch is imported only if installed: test modules that need it skip
themselves first."""
from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import pytest

import incdsl

try:
    import torch
except ImportError:  # the modules that call these helpers skip without torch
    torch = None

ROOT = Path(__file__).resolve().parent.parent


def randomise_norms(model, seed: int = 1):
    """Batch-norm statistics and affine values away from 0/1, so a mix-up cannot go unseen."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def randomise_batch_norm(model, seed=0):
    """Running statistics and affine parameters away from their defaults, so folding them matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.out_channels, generator=gen) * 0.1)


def pair(net, level, dtype=None):
    """The unoptimised model and one at `level`, with the same (non-default) weights."""
    plain = incdsl.to_torch(net, seed=0)
    randomise_batch_norm(plain)
    fast = incdsl.to_torch(net, seed=0, optimize=level)
    fast.load_state_dict(plain.state_dict())
    dtype = dtype or torch.float32
    return plain.to(dtype), fast.to(dtype)


def logits(out):
    return out if isinstance(out, torch.Tensor) else out[0]


def all_outputs(out):
    return [out] if isinstance(out, torch.Tensor) else [out[0], *out[1]]


def assert_eval_equal(plain, fast, x, tol=1e-5):
    plain.eval(), fast.eval()
    with torch.no_grad():
        a, b = plain(x), fast(x)
    scale = a.abs().max().item()
    assert (a - b).abs().max().item() <= tol * max(scale, 1.0)


def assert_train_equal(plain, fast, x):
    """Outputs (aux heads too), parameter gradients and updated running statistics agree."""
    plain.train(), fast.train()
    torch.manual_seed(1)
    out_a = all_outputs(plain(x))
    torch.manual_seed(1)
    out_b = all_outputs(fast(x))
    for a, b in zip(out_a, out_b, strict=True):
        assert_near(b, a, "output")
    sum(o.square().sum() for o in out_a).backward()
    sum(o.square().sum() for o in out_b).backward()
    grads_a = {k: p.grad for k, p in plain.named_parameters()}
    grads_b = unfused_grads(fast)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        assert_near(grads_b[k], grads_a[k], k)
    sa, sb = plain.state_dict(), fast.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert_near(sb[k], sa[k], k)


def assert_near(got, expect, what, tolerance=1e-9, floor=1e-12):
    """Equal up to float64 rounding, measured against the tensor's own scale (elementwise
    tolerances fail on entries that cancel to nearly zero), with an absolute floor for tensors
    that are zero but for rounding (the gradient of a conv bias that batch norm follows)."""
    got, expect = got.double(), expect.double()
    assert (got - expect).abs().max().item() <= tolerance * expect.abs().max().item() + floor, what


def unfused_grads(model) -> dict:
    """Parameter gradients under the spec's keys (a fused parameter's split by member)."""
    grads = {k: p.grad for k, p in model.named_parameters()}
    for fused, members, leaves in getattr(model, "fusion_plan", ()):
        splits = model.get_submodule(fused).splits
        for leaf in leaves:
            key = f"{fused}.{leaf}"
            if key in grads:
                g = grads.pop(key)
                for i, m in enumerate(members):
                    grads[f"{m}.{leaf}"] = None if g is None else g.split(splits)[i]
    return grads


SHIPPED = sorted(glob.glob(str(ROOT / "specs" / "*.inc")) + glob.glob(str(ROOT / "specs" / "variants" / "*.inc"))
                 + glob.glob(str(ROOT / "specs" / "zoo" / "*.inc")) + glob.glob(str(ROOT / "specs" / "zoo" / "cifar" / "*.inc")))


# the deepest CIFAR specs, shallower: the same units, a fraction of the tracing time
# (WResNet-d's 1192 layers took 78 s to trace alone)
SHALLOWER = {"wresnet_d.inc": dict(depth=56), "densenet100_k24.inc": dict(depth=40),
             "pyramidsepdrop182_a150.inc": dict(depth=56)}


def small(path):
    """The spec at 64x64 where its layers allow it (ResNets, DenseNet, VGG), else as written;
    CIFAR specs at their 32x32, the deepest with fewer units."""
    params = SHALLOWER.get(os.path.basename(path), {}) if os.sep + "cifar" + os.sep in path else {}
    net = incdsl.load(path, params=params)
    if net.input_shape[1] <= 32:
        return net
    try:
        return incdsl.load(path, params=params, input=(net.input_shape[0], 64, 64))
    except incdsl.IncdslError:
        return net


def import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fractalnet_reference(channels=(64, 128, 256, 512, 512), columns: int = 3, classes: int = 10):
    """FractalNet for CIFAR (Larsson et al. 2016, section 2 and 4.1) in eval mode, built level by
    level as the expansion rule unrolls: column j (0 = deepest) has a conv at every level that is
    a multiple of 2^j; the convs ending at one level are joined by their mean, and every column
    that took part continues from that mean. Conv -> BN -> ReLU; a 2x2 max pool after each block.
    Setting `column = j` on the returned model runs column j alone in every block (global
    drop-path's subnetwork: its convs, in order, and no join)."""
    import torch
    import torch.nn as nn

    def conv(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.levels = nn.ModuleList()
            for level in range(1, 2 ** (columns - 1) + 1):
                ends = [j for j in range(columns) if level % 2 ** j == 0]
                self.levels.append(nn.ModuleList(conv(cin if level == 2 ** j else cout, cout) for j in ends))

        def forward(self, x):
            if network.column is not None:
                for level in self.levels:
                    if len(level) > network.column:
                        x = level[network.column](x)
                return x
            inputs = [x] * columns
            for level in self.levels:
                joined = torch.stack([c(inputs[j]) for j, c in enumerate(level)]).mean(0)
                inputs[:len(level)] = [joined] * len(level)
            return inputs[0]

    layers, cin = [], 3
    for cout in channels:
        layers += [Block(cin, cout), nn.MaxPool2d(2)]
        cin = cout
    network = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin, classes))
    network.column = None
    return network


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (import it into the module to apply it): small tensors
    gain nothing from a second thread, and on a busy machine OpenMP's threads wait on each other
    (two SGD steps of ResNet-50 took ten times longer). Skips the module without torch."""
    pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same_weights(build_reference, net, randomise=randomise_norms, by_data_flow: bool = False):
    """(ours, reference) with the same weights: the reference model built by `build_reference()`
    under seed 0 and passed through `randomise` (batch-norm statistics by default, so a mix-up
    shows), `net` compiled with seed 0 and given every tensor of the reference's state dict, none
    skipped; paired in registration order, or by data flow (`load_weights` given the module)."""
    torch.manual_seed(0)
    ref = randomise(build_reference())
    ours = incdsl.to_torch(net, seed=0)
    report = incdsl.load_weights(ours, ref if by_data_flow else ref.state_dict())
    assert len(report) == len(ref.state_dict()) and not report.skipped
    return ours, ref


def assert_close_to_scale(got, expected):
    """`got` equals `expected` within 1e-5 of the latter's largest magnitude (and 1e-4 relative);
    `expected` must not be all (nearly) zero, or nothing was tested."""
    assert expected.abs().max() > 1e-3
    assert torch.allclose(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4), \
        (got - expected).abs().max()


def assert_same_logits(ours, reference, size: int, classes: int = 1000):
    """Eval-mode logits of `ours` equal the reference model's on one seeded batch of two images,
    within 1e-5 of their scale (`assert_close_to_scale`)."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, expected = ours.eval()(x), reference.eval()(x)
    assert got.shape == expected.shape == (2, classes)
    assert_close_to_scale(got, expected)
