"""The cost pass: closed-form parameters and MACs per layer, totals, receptive fields."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.passes.cost import count_costs

SMALL = """
network small(classes = 10):
    input 3x32x32
    conv 3x3 16 /2 S bn = 0.001 as stem
    concat:
        branch: conv 1x1 8
        branch: conv 1x1 4 -> conv 3x3 8 pad = 1 groups = 2
        branch: maxpool 3x3 S -> conv 1x1 8 bias = no
    residual(scale = 0.5):
        conv 1x1 8 -> conv 1x1 in.c act = off
    aux head(weight = 0.3) from stem: gap -> flatten -> linear classes
    bn
    gap -> flatten -> dropout 0.5 -> linear classes
"""


def test_closed_forms_of_a_small_network():
    net = incdsl.load(SMALL)
    c = count_costs(net).by_name()
    # conv 3x3, 3 -> 16, no bias (BN), BN gamma+beta: 3*3*3*16 + 2*16; output 16x16
    assert c["stem"].params == 3 * 3 * 3 * 16 + 32
    assert c["stem"].macs == 16 * 16 * 16 * 3 * 9
    # grouped conv 3x3, 4 -> 8 in 2 groups, bias (no BN)
    assert c["branch_1/conv_1"].params == 3 * 3 * 2 * 8 + 8
    assert c["branch_1/conv_1"].macs == 16 * 16 * 8 * 2 * 9
    assert c["branch_2/conv_0"].params == 16 * 8  # bias = no
    assert c["bn_0"].params == 2 * 24
    assert c["linear_0"].params == 24 * 10 + 10 and c["linear_0"].macs == 240
    assert c["add_0"].macs == 0 and c["branch_2/maxpool_0"].params == 0


def test_aux_heads_stay_out_of_the_total():
    net = incdsl.load(SMALL)
    costs = count_costs(net)
    aux = [n for n in costs.nodes if n.aux == "head"]
    assert [n.op for n in aux] == ["gap", "flatten", "linear"]
    assert costs.total_with_aux.params - costs.total.params == 16 * 10 + 10
    assert costs.total.params == sum(n.params for n in costs.nodes if n.aux is None)


def test_receptive_field_grows_by_kernel_times_jump():
    net = incdsl.load("network rf:\n    input 1x64x64\n    conv 3x3 4 /2 -> conv 3x3 4 -> maxpool 2x2 /2 -> conv 1x7 4 S\n")
    rf = [c.rf for c in count_costs(net).nodes[1:]]
    # jumps 1 -> 2 -> 2 -> 4; rf 3, 3+2*2=7, 7+1*2=9, then (9, 9+6*4=33)
    assert rf == [(3, 3), (7, 7), (9, 9), (9, 33)]


@st.composite
def conv_stacks(draw):
    size = draw(st.integers(8, 64))
    layers, lines = [], []
    c = c_in = draw(st.integers(1, 8))
    for _ in range(draw(st.integers(1, 6))):
        k = draw(st.sampled_from([1, 3, 5]))
        kw = draw(st.sampled_from([1, k]))
        f = draw(st.integers(1, 32))
        s = draw(st.sampled_from([1, 2]))
        bn = draw(st.booleans())
        groups = draw(st.sampled_from([g for g in (1, 2, 4) if c % g == 0 and f % g == 0]))
        lines.append(f"    conv {k}x{kw} {f} /{s} S groups = {groups} bn = {'0.001' if bn else 'off'}")
        layers.append((k, kw, f, s, bn, groups))
        c = f
    units = draw(st.integers(1, 50))
    text = f"network gen:\n    input {c_in}x{size}x{size}\n" + "\n".join(lines) + \
        f"\n    gap -> flatten -> linear {units}\n"
    return text, layers, units


@settings(max_examples=60, deadline=None)
@given(conv_stacks())
def test_totals_are_sums_and_layers_obey_closed_forms(case):
    text, layers, units = case
    net = incdsl.load(text)
    costs = count_costs(net)
    convs = [n for n in costs.nodes if n.op == "conv"]
    c_in = net.input_shape[0]
    h = net.input_shape[1]
    for node, (k, kw, f, s, bn, g) in zip(convs, layers):
        h = math.ceil(h / s)  # padding S
        assert node.shape == (f, h, h)
        assert node.params == k * kw * (c_in // g) * f + (2 * f if bn else f)
        assert node.macs == h * h * f * (c_in // g) * k * kw
        c_in = f
    linear = costs.nodes[-1]
    assert linear.params == c_in * units + units and linear.macs == c_in * units
    assert costs.total.params == sum(n.params for n in costs.nodes)
    assert costs.total.macs == sum(n.macs for n in costs.nodes)
    assert costs.total.flops == 2 * costs.total.macs
