"""`Network.__eq__`: equal when two networks compute the same thing, wherever they were written.

Equality used to be the dataclass default over an `nx.DiGraph`, which compares by identity, so
one spec loaded twice compared unequal and a search could not tell repeated points apart.
"""
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import incdsl
from incdsl import IncdslError

sys.path.insert(0, os.path.dirname(__file__))
from specgen import HypothesisPick, network  # noqa: E402

HERE = os.path.dirname(__file__)
SPECS = os.path.join(HERE, "..", "specs")

SMALL = """network small(width = 8, classes = 10):
    input 3x16x16
    conv 3x3 width S /2
    concat:
        branch: conv 1x1 width
        branch: maxpool 3x3 /1 S
    gap -> flatten -> linear classes
"""


def test_one_spec_loaded_twice_is_equal():
    path = os.path.join(SPECS, "googlenet.inc")
    assert incdsl.load(path) == incdsl.load(path)


def test_the_same_text_under_another_file_name_is_equal():
    """Spans and file names are provenance: they differ here in every node, yet the networks are the same."""
    a = incdsl.load(SMALL, file="a.inc")
    b = incdsl.load("# a comment that moves every line down\n\n" + SMALL, file="elsewhere/b.inc")
    assert a.graph.nodes["input"]["span"] != b.graph.nodes["input"]["span"]
    assert a == b and not (a != b)


@pytest.mark.parametrize("change", [
    {"params": {"width": 16}},              # another filter count
    {"params": {"classes": 5}},             # another classifier
    {"input": (3, 32, 32)},                 # other shapes everywhere
])
def test_a_different_network_is_unequal(change):
    assert incdsl.load(SMALL) != incdsl.load(SMALL, **change)


def test_an_attribute_change_alone_is_unequal():
    """Same layer names, edges and shapes; only one conv's activation differs."""
    a = incdsl.load(SMALL)
    b = incdsl.load(SMALL.replace("conv 1x1 width", "conv 1x1 width act = gelu"))
    assert a.layers == b.layers and [a.graph.nodes[n]["shape"] for n in a.layers] == [b.graph.nodes[n]["shape"] for n in b.layers]
    assert a != b


def test_networks_are_unhashable_and_differ_from_other_types():
    net = incdsl.load(SMALL)
    with pytest.raises(TypeError):
        hash(net)
    assert net != net.graph and net != "small"


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_generated_specs_equal_themselves_and_not_a_widened_copy(data):
    text = network(HypothesisPick(data), max_statements=4)
    try:
        a = incdsl.load(text, file="gen.inc")
    except IncdslError:
        return
    b = incdsl.load("\n# moved\n" + text, file="other.inc")
    assert a == b
    try:  # some generated networks are tied to their input depth (a residual around the input)
        wider = incdsl.load(text, file="gen.inc", input=(a.input_shape[0] + 1,) + tuple(a.input_shape[1:]))
    except IncdslError:
        return
    assert a != wider  # the input, at least, has another shape
