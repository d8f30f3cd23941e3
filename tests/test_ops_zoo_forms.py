"""The forms the 2016 zoo needs (issue 12): channel zero-padding, mean/max/weighted joins,
multiply and gate joins, adaptive pooling, stochastic residuals and learned scales.

`tests/test_ops.py` already checks, costs, draws and compiles every op's example; these tests
check what each form computes, against plain PyTorch written here, and its diagnostics.
"""
from __future__ import annotations

import pytest

import incdsl

torch = pytest.importorskip("torch")


def net(body: str, input: str = "4x8x8"):
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return incdsl.load(f"network t:\n    input {input}\n{lines}\n")


def model_of(network, seed: int = 0):
    return incdsl.to_torch(network, seed=seed)


def shapes(network) -> list:
    return [network.graph.nodes[n]["shape"] for n in network.layers]


# --- 1. pad_channels ---------------------------------------------------------------------

def test_pad_channels_appends_zeros_after():
    n = net("pad_channels 7")
    assert n.output_shape == (7, 8, 8)
    assert incdsl.count_costs(n).total.params == 0
    x = torch.randn(2, 4, 8, 8)
    y = model_of(n).eval()(x)
    assert torch.equal(y[:, :4], x) and not y[:, 4:].any()


def test_pad_channels_both_puts_the_odd_channel_after():
    x = torch.randn(2, 4, 8, 8)
    y = model_of(net("pad_channels 9 place = both")).eval()(x)
    assert not y[:, :2].any() and torch.equal(y[:, 2:6], x) and not y[:, 6:].any()


def test_option_a_shortcut_matches_the_cifar_reference():
    """ResNet option A as the common CIFAR code writes it: x[:, :, ::2, ::2] padded by
    planes // 4 channels on both sides."""
    n = net("""
residual(act = off):
    conv 3x3 8 /2 pad = 1 bias = no act = off
    shortcut: maxpool 1x1 /2 -> pad_channels 8 place = both
""")
    assert not n.warnings  # a 1x1 window at stride 2 skips rows by design
    model = model_of(n).eval()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 4, 8, 8)
    want = conv(x) + torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
    assert torch.allclose(model(x), want, atol=1e-6)
    assert incdsl.count_costs(n).total.params == conv.weight.numel()


def test_pad_channels_cannot_shrink(load_error):
    err = load_error("network t:\n    input 4x8x8\n    pad_channels 3\n").render()
    assert "cannot shrink the 4x8x8 input to 3 channels" in err and "at least 4" in err


def test_pad_channels_place_is_checked(load_error):
    assert "expected `after` or `both`" in load_error("network t:\n    input 4x8x8\n    pad_channels 6 place = S\n").render()
