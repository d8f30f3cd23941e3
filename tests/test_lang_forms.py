"""Language forms of the 2016 zoo: `let`, `if` / `elif` / `else`, comparisons and `and` / `or` /
`not`, and `repeat` of branches inside a join."""
import pytest
from hypothesis import given, settings, strategies as st

import incdsl
from incdsl import IncdslError
from incdsl.ir.graph import lint
from incdsl.lang.parse import parse
from incdsl.lang.values import evaluate


def load(text: str, **kwargs):
    net = incdsl.load(text, **kwargs)
    lint(net.graph)
    return net


def failure(text: str) -> IncdslError:
    with pytest.raises(IncdslError) as info:
        incdsl.load(text)
    return info.value


def value(expr: str, **env):
    module = parse(f"network t(x = {expr}):\n    input 3x8x8\n")
    return evaluate(module.definitions[0].params[0].default, env, None)


def widths(net) -> list[int]:
    return [net.graph.nodes[n]["shape"][0] for n in net.layers if net.graph.nodes[n]["op"] == "conv"]


# --- expressions ---------------------------------------------------------------------------

@pytest.mark.parametrize("expr, expected", [
    ("1 == 1", True), ("1 != 1", False), ("2 < 3", True), ("3 <= 2", False), ("3 > 2", True), ("2 >= 2", True),
    ("1 + 1 == 2", True), ("relu == relu", True), ("relu == gelu", False), ("1 == yes", False),
    ("1 == 1.0", True), ("yes and no", False), ("yes or no", True), ("not no", True),
    ("not 1 == 2", True), ("1 < 2 and 2 < 3", True), ("no or not yes", False),
    ("yes or no and no", True),  # `and` binds tighter than `or`
])
def test_comparisons_and_boolean_operators(expr, expected):
    assert value(expr) is expected


def test_and_or_short_circuit_as_in_python():
    assert value("0 > 0 and 1 // 0 > 0") is False
    assert value("0 == 0 or 1 // 0 > 0") is True


@given(st.integers(-50, 50), st.integers(-50, 50))
@settings(max_examples=40, deadline=None)
def test_comparisons_agree_with_python(a, b):
    for op, fn in [("<", int.__lt__), ("<=", int.__le__), (">", int.__gt__), (">=", int.__ge__),
                   ("==", int.__eq__), ("!=", int.__ne__)]:
        assert value(f"a {op} b", a=a, b=b) is fn(a, b)


@pytest.mark.parametrize("expr, message", [
    ("1 and yes", "`and` needs yes or no, found `1`"),
    ("not 3", "`not` needs yes or no, found `3`"),
    ("relu < 3", "`<` needs numbers, found `relu` and `3`"),
    ("1 + (2 > 1)", "`+` needs numbers"),
])
def test_operators_refuse_values_of_the_wrong_kind(expr, message):
    err = failure(f"network t(x = {expr}):\n    input 3x8x8\n    conv 1x1 4\n")
    assert message in str(err)


# --- let -----------------------------------------------------------------------------------

PYRAMID = """\
block unit(i, n, alpha = 48):
    let d = 16 + alpha * (i + 1) // n
    let half = d // 2
    conv 1x1 half -> conv 3x3 d S
network pyramid(n = 3):
    input 3x32x32
    repeat n as i: unit(i, n)
"""


def test_let_binds_a_derived_value_for_the_statements_after_it():
    assert widths(load(PYRAMID)) == [16, 32, 24, 48, 32, 64]


def test_let_is_local_to_its_body():
    err = failure("network t:\n    input 3x8x8\n    concat:\n        branch:\n            let w = 4\n"
                  "            conv 1x1 w\n        branch: conv 1x1 w\n")
    assert "unknown name `w`" in str(err)
    assert err.diagnostics[0].span.line == 7


def test_let_cannot_rebind_a_parameter_and_points_at_its_declaration():
    err = failure("block b(n):\n    let n = n + 1\n    conv 1x1 n\nnetwork x:\n    input 3x8x8\n    b(3)\n")
    d = err.diagnostics[0]
    assert d.message == "`n` is already bound here"
    assert (d.span.line, d.span.col) == (2, 9)
    assert [(lab.span.line, lab.span.col, lab.message) for lab in d.labels] == [(1, 9, "declared here as a parameter")]
    assert "choose another name" in d.hint


@pytest.mark.parametrize("body", ["let i = 2\nconv 1x1 4", "let w = 2\nlet w = 3\nconv 1x1 w"])
def test_let_cannot_rebind_a_loop_variable_or_an_earlier_let(body):
    text = "network t:\n    input 3x8x8\n    repeat 2 as i:\n" + "".join(f"        {ln}\n" for ln in body.splitlines())
    assert "is already bound here" in str(failure(text))


@pytest.mark.parametrize("word", ["if", "relu", "yes", "in"])
def test_let_refuses_reserved_words(word):
    assert "reserved word" in str(failure(f"network t:\n    input 3x8x8\n    let {word} = 3\n    conv 1x1 4\n"))


# --- if / elif / else ----------------------------------------------------------------------

VARIANT = """\
block down(stride, c):
    if stride == 2 and c > 0:
        conv 3x3 c /2 S
    elif c > 100:
        conv 1x1 c
    else: conv 3x3 c S
network t(stride = 1, c = 8):
    input 3x32x32
    down(stride, c)
"""


@pytest.mark.parametrize("params, expected", [
    ({}, [(8, 32, 32)]), ({"stride": 2}, [(8, 16, 16)]), ({"c": 128}, [(128, 32, 32)]),
    ({"stride": 2, "c": 128}, [(128, 16, 16)]),
])
def test_if_chooses_the_first_clause_whose_condition_holds(params, expected):
    net = load(VARIANT, params=params)
    assert [net.graph.nodes[n]["shape"] for n in net.layers if net.graph.nodes[n]["op"] == "conv"] == expected
    kernels = {n: net.graph.nodes[n]["attrs"]["kernel"] for n in net.layers if net.graph.nodes[n]["op"] == "conv"}
    assert list(kernels.values()) == [(1, 1) if params.get("c", 8) > 100 and params.get("stride") != 2 else (3, 3)]


def test_if_without_else_may_choose_nothing():
    net = load("network t(extra = no):\n    input 3x8x8\n    conv 1x1 4\n    if extra: conv 1x1 8\n")
    assert widths(net) == [4]
    assert widths(load("network t(extra = yes):\n    input 3x8x8\n    conv 1x1 4\n    if extra: conv 1x1 8\n")) == [4, 8]


def test_if_condition_must_be_yes_or_no():
    err = failure("network t(n = 3):\n    input 3x8x8\n    if n: conv 1x1 4\n")
    d = err.diagnostics[0]
    assert d.message == "a condition needs yes or no, found `3`" and (d.span.line, d.span.col) == (3, 8)
    assert "`n > 0`" in d.hint


def test_the_clause_not_taken_is_not_checked():
    # PyramidNet's down-sampling variant: the branch for the other stride may name layers it never makes
    net = load("network t(s = 1):\n    input 3x8x8\n    if s == 2: nosuchlayer 3\n    else: conv 1x1 4\n")
    assert widths(net) == [4]


def test_let_inside_a_clause_stays_in_the_clause():
    err = failure("network t:\n    input 3x8x8\n    if yes:\n        let w = 4\n        conv 1x1 w\n    conv 1x1 w\n")
    assert "unknown name `w`" in str(err) and err.diagnostics[0].span.line == 6


# --- repeat of branches inside joins -------------------------------------------------------

def test_repeat_writes_identical_branches_once():
    literal = load("network t:\n    input 3x8x8\n    concat:\n"
                   + "".join(f"        branch: conv 1x1 {4 + k}\n" for k in range(10)) + "        branch: maxpool 3x3 S\n")
    repeated = load("network t:\n    input 3x8x8\n    concat:\n        repeat 10 as k:\n"
                    "            branch: conv 1x1 (4 + k)\n        branch: maxpool 3x3 S\n")
    assert list(repeated.layers) == list(literal.layers)
    assert [repeated.graph.nodes[n]["shape"] for n in repeated.layers] == [literal.graph.nodes[n]["shape"] for n in literal.layers]
    assert repeated.output_shape == (3 + sum(range(4, 14)), 8, 8)


@pytest.mark.parametrize("join", ["add", "concat"])
def test_repeat_if_and_let_among_branches_of_any_join(join):
    net = load(f"network t(n = 3):\n    input 3x8x8\n    {join}:\n        let w = 8\n        repeat n as i:\n"
               "            if i != 1:\n                branch: conv 3x3 w S\n        branch: conv 1x1 w\n")
    lint(net.graph)
    out = net.graph.graph["output"]
    assert net.graph.nodes[out]["op"] == join
    assert net.graph.in_degree(out) == 3  # branches for i = 0 and 2, and the last one


def test_a_repeated_labelled_branch_is_a_duplicate_name():
    err = failure("network t:\n    input 3x8x8\n    concat:\n        repeat 2:\n            branch as b: conv 1x1 4\n")
    assert "name `b` is already used here" in str(err)


def test_repeated_branches_are_bounded_before_they_are_made():
    err = failure("network t:\n    input 3x8x8\n    concat:\n        repeat 1000000000:\n            branch: conv 1x1 4\n")
    assert "the limit is 100,000" in str(err)


def test_branches_that_make_nothing_still_count_toward_the_limit():
    text = ("network t:\n    input 3x8x8\n    concat:\n        repeat 1000:\n            repeat 1000:\n"
            "                branch:\n                    let x = 1\n        branch: conv 1x1 4\n")
    assert "the limit is" in str(failure(text))


def test_other_statements_in_a_join_are_still_refused():
    err = failure("network t:\n    input 3x8x8\n    concat:\n        repeat 2:\n            conv 1x1 4\n")
    assert "only `branch:` statements may appear directly in `concat`" in str(err)
