"""The Python API used the way a notebook uses it: wrong types get errors that say what to pass,
`params` takes what `--set` takes, objects repr on one line and survive pickling."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import incdsl

ROOT = Path(__file__).resolve().parent.parent
V4 = ROOT / "specs" / "inception_v4.inc"
SPACE = ROOT / "specs" / "search" / "inception_space.inc"
TINY = """network tiny(a = relu, w = 8, classes = 10):
    input 3x32x32
    conv 3x3 w act = a
    gap
    flatten
    linear classes
"""


# --- load: the spec, params and input arguments ----------------------------------------------

@pytest.mark.parametrize("spec", [5, None, b"specs/inception_v4.inc", ["specs/inception_v4.inc"]])
def test_load_refuses_a_spec_that_is_no_path_or_text(spec):
    """It said `no such spec file: 5` (or `None`), as if the value were a file name."""
    with pytest.raises(TypeError, match=r"a spec is a path \(str or os.PathLike\) or the spec text, got " + type(spec).__name__):
        incdsl.load(spec)


def test_load_takes_a_path_object_and_a_str_alike():
    assert incdsl.load(V4).output_shape == incdsl.load(str(V4)).output_shape == (1000,)


def test_one_line_of_spec_text_is_told_to_need_a_newline():
    with pytest.raises(incdsl.IncdslError) as err:
        incdsl.load("network x: input 3x32x32")
    assert "newline" in str(err.value)


@pytest.mark.parametrize("params", [[("classes", 10)], "classes=10", 10])
def test_params_must_be_a_mapping(params):
    """A list of pairs raised AttributeError: 'list' object has no attribute 'items'."""
    with pytest.raises(TypeError, match=r"params must be a dict of parameter name -> value"):
        incdsl.load(TINY, params=params)


def test_params_names_must_be_str():
    with pytest.raises(TypeError, match="params names must be str, got int 1"):
        incdsl.load(TINY, params={1: 10})


def test_a_str_parameter_value_is_read_as_set_reads_it():
    """`{"a": "gelu"}` failed with `expected an activation (..., gelu, ...), found gelu`: the str was
    not the language's word, which `--set a=gelu` gives."""
    net = incdsl.load(TINY, params={"a": "gelu", "w": "16", "classes": "7"})
    conv = net.graph.nodes[net.layers[0]]
    assert conv["attrs"]["act"] == "gelu" and conv["attrs"]["filters"] == 16
    assert net.output_shape == (7,)


def test_an_unknown_parameter_name_is_a_spec_error_with_a_suggestion():
    with pytest.raises(incdsl.IncdslError, match="did you mean `classes`"):
        incdsl.load(V4, params={"clases": 10})


@pytest.mark.parametrize("bad", ["3x224x224", 224, {"c": 3}])
def test_input_of_the_wrong_type_says_so(bad):
    """A str gave `found the flat vector 3xxx2x2x4...` from the first conv."""
    with pytest.raises(TypeError, match=r"input must be a \(C, H, W\) tuple"):
        incdsl.load(TINY, input=bad)


@given(st.lists(st.one_of(st.integers(-3, 64), st.floats(1, 64), st.booleans()), min_size=0, max_size=4))
@settings(max_examples=40, deadline=None)
def test_input_must_be_three_positive_integers(values):
    """A float (3, 224.0, 224) was taken, and every shape after it was a float."""
    ok = len(values) == 3 and all(type(v) is int and v > 0 for v in values)
    if ok:
        try:
            assert incdsl.load(TINY, input=tuple(values)).input_shape == tuple(values)
        except incdsl.IncdslError:  # too small for the 3x3 conv: a spec error, not a type error
            pass
    else:
        with pytest.raises(ValueError, match=r"input must be three positive integers \(C, H, W\)"):
            incdsl.load(TINY, input=tuple(values))


def test_input_as_a_list_is_a_tuple_of_ints():
    net = incdsl.load(TINY, input=[3, 40, 48])
    assert net.input_shape == (3, 40, 48) and type(net.input_shape) is tuple


def test_space_checks_its_arguments_as_load_does():
    with pytest.raises(TypeError, match=r"input must be a \(C, H, W\) tuple"):
        incdsl.space(SPACE, input="3x256x256")
    with pytest.raises(TypeError, match="params must be a dict"):
        incdsl.space(SPACE, params=[("classes", 10)])


# --- what takes a Network --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["specs/inception_v4.inc", V4, None])
def test_count_costs_refuses_a_path_and_says_to_load_it(value):
    """It raised AttributeError: 'str' object has no attribute 'graph'."""
    with pytest.raises(TypeError, match=r"count_costs\(\) takes a Network from incdsl.load") as err:
        incdsl.count_costs(value)
    if value is not None:
        assert "count_costs(incdsl.load(path))" in str(err.value)


def test_costs_repr_is_one_line_with_the_totals():
    """The dataclass repr listed every node: tens of kilobytes in a notebook cell."""
    costs = incdsl.count_costs(incdsl.load(V4))
    assert repr(costs) == f"<Costs: {len(costs.nodes)} nodes, 42,679,816 params, 12,253,974,624 MACs>"


def test_network_pickles_and_copies_with_the_same_costs():
    """Ray Tune and multiprocessing send networks between processes."""
    net = incdsl.load(V4, params={"classes": 10})
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net), copy.copy(net)):
        assert repr(other) == repr(net)
        assert incdsl.count_costs(other).total == incdsl.count_costs(net).total
        assert other.params == net.params and other.layers == net.layers


def test_network_repr_and_properties():
    net = incdsl.load(V4)
    assert repr(net) == "<Network inception_v4: 196 layers, 3x299x299 -> 1000>"
    assert net.input_shape == (3, 299, 299) and net.params == {"classes": 1000, "dropout": 0.2}
    for name in ("name", "input", "output", "input_shape", "output_shape", "aux_heads", "params", "layers"):
        assert getattr(incdsl.Network, name).__doc__, name


# --- torch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["specs/inception_v4.inc", V4])
def test_to_torch_refuses_a_path(value):
    pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"to_torch\(\) takes a Network from incdsl.load, got .*to_torch\(incdsl.load\(path\)\)"):
        incdsl.to_torch(value)


@pytest.mark.parametrize("classes", ["10", -1, 2.5, True])
def test_to_torch_num_classes_must_be_a_count(classes):
    """"10" raised `'>' not supported between str and int`; -1 a RuntimeError from torch."""
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 0"):
        incdsl.to_torch(incdsl.load(TINY), num_classes=classes)


def test_to_torch_of_a_pickled_network_is_the_same_model():
    torch = pytest.importorskip("torch")
    net = incdsl.load(TINY)
    a = incdsl.to_torch(net, seed=0).state_dict()
    b = incdsl.to_torch(pickle.loads(pickle.dumps(net)), seed=0).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_weights_refuses_a_network_for_the_module():
    pytest.importorskip("torch")
    net = incdsl.load(TINY)
    with pytest.raises(TypeError, match=r"loads into an nn.Module, got Network: build it with incdsl.to_torch"):
        incdsl.load_weights(net, {})


@pytest.mark.parametrize("weights", ["weights.pt", Path("weights.pt"), None, [1, 2]])
def test_load_weights_refuses_what_is_no_state_dict(weights):
    """A path raised AttributeError: 'str' object has no attribute 'items'."""
    pytest.importorskip("torch")
    model = incdsl.to_torch(incdsl.load(TINY), seed=0)
    with pytest.raises(TypeError, match="takes a state dict or the reference nn.Module") as err:
        incdsl.load_weights(model, weights)
    assert ("torch.load(path" in str(err.value)) == isinstance(weights, (str, Path))


INCLUDING = 'include "lib/inception_v4.inc"\nnetwork x:\n    input 3x299x299\n    stem\n'


@pytest.mark.parametrize("include_path", [str(ROOT / "specs"), ROOT / "specs", [ROOT / "specs"], [str(ROOT / "specs")]])
def test_include_path_takes_one_directory_or_a_list(include_path):
    """One str was read as a list of one-letter directories, a Path raised 'not iterable'."""
    assert incdsl.load(INCLUDING, include_path=include_path).output_shape == (384, 35, 35)


def test_include_path_of_another_type_says_so():
    with pytest.raises(TypeError, match="include_path must be a list of directories, got int"):
        incdsl.load(INCLUDING, include_path=5)


def test_a_spec_error_pickles_with_its_diagnostics():
    """Unpickling raised AttributeError ('str' object has no attribute 'message'), so a worker's
    spec error broke a multiprocessing pool's result handler instead of reaching the caller."""
    with pytest.raises(incdsl.IncdslError) as err:
        incdsl.load(V4, input=(3, 32, 32))
    err.value.extra = "kept"
    back = pickle.loads(pickle.dumps(err.value))
    assert type(back) is incdsl.IncdslError and str(back) == str(err.value)
    assert back.diagnostics == err.value.diagnostics and back.span.line == 44 and back.extra == "kept"


@pytest.mark.parametrize("limit", ["10", 0, -5, 2.5, True])
def test_load_refuses_a_layer_limit_that_is_no_positive_integer(limit):
    with pytest.raises(ValueError, match="max_layers must be a positive integer"):
        incdsl.load("network n:\n    input 3x8x8\n    conv 1x1 4\n", max_layers=limit)


def test_to_torch_checks_aux_without_weights():
    pytest.importorskip("torch")
    net = incdsl.load("network n:\n    input 3x8x8\n    conv 1x1 4\n")
    with pytest.raises(ValueError, match="aux must be 'strict' or 'skip', got 'bogus'"):
        incdsl.to_torch(net, aux="bogus")
