"""The PyTorch backend's layers against direct, loop-by-loop definitions of the spec's semantics.

Padding is where compiled networks usually go wrong, so every conv/pool is checked on random
sizes, kernels, strides and padding rules against a NumPy computation written from the
language's definitions: V = none; S = TensorFlow SAME (total max((out - 1) s + k_eff - in, 0),
floor half before); explicit (top, bottom, left, right); max pools ignore padding; average
pools divide by the real cells (`count_pad = no`) or by the cells inside the padded input.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

import incdsl  # noqa: E402


def same_pads(size, k_eff, s):
    out = -(-size // s)
    total = max((out - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


def axis_pads(pad, size, k_eff, s, axis):
    if pad == "V":
        return 0, 0
    if pad == "S":
        return same_pads(size, k_eff, s)
    return pad[2 * axis], pad[2 * axis + 1]


def pad_text(pad):
    return pad if isinstance(pad, str) else f"pad = ({', '.join(map(str, pad))})"


def reference(op, x, attrs, out_hw, weight=None):
    """One layer computed window by window. x: (c, h, w) array."""
    c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["stride"], attrs.get("dilation", (1, 1))
    top, bottom = axis_pads(attrs["pad"], h, dh * (kh - 1) + 1, sh, 0)
    left, right = axis_pads(attrs["pad"], w, dw * (kw - 1) + 1, sw, 1)
    oh, ow = out_hw
    out = np.zeros((weight.shape[0] if op == "conv" else c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = [i * sh - top + a * dh for a in range(kh)]
            cols = [j * sw - left + b * dw for b in range(kw)]
            real = [(a, b, r, q) for a, r in enumerate(rows) for b, q in enumerate(cols) if 0 <= r < h and 0 <= q < w]
            if op == "conv":
                out[:, i, j] = sum(weight[:, :, a, b] @ x[:, r, q] for a, b, r, q in real) if real else 0
            elif op == "maxpool":
                out[:, i, j] = np.max([x[:, r, q] for _, _, r, q in real], axis=0)
            else:
                if attrs["count_pad"]:
                    inside = [(r, q) for r in rows for q in cols if -top <= r < h + bottom and -left <= q < w + right]
                    divisor = len(inside)
                else:
                    divisor = len(real)
                out[:, i, j] = sum(x[:, r, q] for _, _, r, q in real) / divisor
    return out


def layer_specs():
    kernel = st.tuples(st.integers(1, 4), st.integers(1, 4))
    stride = st.tuples(st.integers(1, 3), st.integers(1, 3))
    size = st.tuples(st.integers(3, 11), st.integers(3, 11))
    explicit = st.tuples(*[st.integers(0, 2)] * 4)
    pad = st.one_of(st.sampled_from(["V", "S"]), explicit)
    return st.fixed_dictionaries({
        "op": st.sampled_from(["conv", "maxpool", "avgpool"]), "kernel": kernel, "stride": stride, "size": size,
        "pad": pad, "ceil": st.booleans(), "count_pad": st.booleans(), "dilation": st.sampled_from([(1, 1), (2, 1)]),
    })


def build(case):
    (kh, kw), (sh, sw), (h, w) = case["kernel"], case["stride"], case["size"]
    op = case["op"]
    if op == "conv":
        dh, dw = case["dilation"]
        layer = f"conv {kh}x{kw} 3 /{sh}x{sw} {pad_text(case['pad'])} dilation = {dh}x{dw} bn = off act = off bias = no"
    else:
        layer = f"{op} {kh}x{kw} /{sh}x{sw} {pad_text(case['pad'])} ceil = {'yes' if case['ceil'] else 'no'}"
        if op == "avgpool":
            layer += f" count_pad = {'yes' if case['count_pad'] else 'no'}"
    text = f"network t:\n    input 2x{h}x{w}\n    {layer} as layer\n"
    try:
        return incdsl.load(text)
    except incdsl.IncdslError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(layer_specs())
def test_conv_and_pool_match_their_definition(case):
    net = build(case)
    assume(net is not None)
    node = net.graph.nodes["layer"]
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(1, *net.input_shape, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        y = model(x)[0].numpy()
    assert y.shape == node["shape"]
    weight = model.layer.conv.weight.detach().numpy() if case["op"] == "conv" else None
    expect = reference(case["op"], x[0].numpy(), node["attrs"], node["shape"][1:], weight)
    np.testing.assert_allclose(y, expect, rtol=1e-9, atol=1e-9)


def test_max_pool_padding_never_wins():
    # all-negative input: zero padding would show up as 0 at the borders
    net = incdsl.load("network t:\n    input 1x4x4\n    maxpool 3x3 /2 S as layer\n")
    model = incdsl.to_torch(net).eval()
    x = -1 - torch.rand(1, 1, 4, 4)
    y = model(x)
    assert y.shape == (1, 1, 2, 2) and (y < -1).all()


def test_same_padding_at_stride_two_is_asymmetric():
    # 3x3 /2 SAME on 8 pads 0 before and 1 after (TF), not 1 and 1 (PyTorch padding=1)
    net = incdsl.load("network t:\n    input 1x8x8\n    conv 3x3 1 /2 S bn = off act = off as layer\n")
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(1, 1, 8, 8)
    w = model.layer.conv.weight
    expect = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), w, stride=2)
    torch.testing.assert_close(model(x), expect)
    assert model.layer.conv.padding == (0, 0) and model.layer.pad == (0, 1, 0, 1)


def test_add_scales_and_activation():
    spec = ("network t:\n    input 2x4x4\n    residual(scale = 0.25, act = relu):\n"
            "        conv 1x1 2 bn = off act = off bias = no as body\n")
    net = incdsl.load(spec)
    model = incdsl.to_torch(net, seed=0).eval()
    x = torch.randn(3, 2, 4, 4)
    body = torch.nn.functional.conv2d(x, model.body.conv.weight)
    torch.testing.assert_close(model(x), torch.relu(x + 0.25 * body))


def test_lrn_is_torch_local_response_norm():
    net = incdsl.load("network t:\n    input 8x5x5\n    lrn 3 alpha = 0.01 beta = 0.5 k = 2 as norm\n")
    model = incdsl.to_torch(net).eval()
    x = torch.rand(2, 8, 5, 5)
    expect = torch.nn.functional.local_response_norm(x, 3, alpha=0.01, beta=0.5, k=2.0)
    torch.testing.assert_close(model(x), expect)


@pytest.mark.parametrize("fn", ["relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "elu", "leaky_relu"])
def test_activations(fn):
    net = incdsl.load(f"network t:\n    input 2x3x3\n    act {fn}\n")
    model = incdsl.to_torch(net).eval()
    x = torch.randn(2, 2, 3, 3) * 4
    torch_fn = {"relu6": torch.nn.functional.relu6, "leaky_relu": torch.nn.functional.leaky_relu,
                "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
                "elu": torch.nn.functional.elu}.get(fn) or getattr(torch, fn)
    torch.testing.assert_close(model(x), torch_fn(x))


def test_ceil_mode_drops_window_starting_in_padding():
    # 4 + 1 + 1 padded, 2x2 /3 ceil: a third window would start in the trailing padding (PyTorch's rule)
    net = incdsl.load("network t:\n    input 1x4x4\n    maxpool 2x2 /3 pad = 1 ceil = yes as p\n")
    assert net.graph.nodes["p"]["shape"] == (1, 2, 2)
    model = incdsl.to_torch(net).eval()
    assert model(torch.randn(1, 1, 4, 4)).shape == (1, 1, 2, 2)
