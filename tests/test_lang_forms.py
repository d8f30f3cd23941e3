"""Language forms of the 2016 zoo: `let`, `if` / `elif` / `else`, comparisons and `and` / `or` /
`not`, and `repeat` of branches inside a join."""
import pytest
from hypothesis import given, settings, strategies as st

from incdsl.ir.graph import lint
from incdsl.lang.parse import parse
from incdsl.lang.values import evaluate

from speclib import ADD_FRACTAL_BLOCK, failure, load




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


# --- recursive blocks ----------------------------------------------------------------------

FRACTAL = ADD_FRACTAL_BLOCK + """\
network fractalnet(c = 3):
    input 3x16x16
    conv 3x3 8 pad = 1
    fractal(c, 8)
"""


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5])
def test_fractal_rule_written_once_expands_as_the_paper_draws_it(c):
    net = load(FRACTAL, params={"c": c})
    convs = [n for n in net.layers if net.graph.nodes[n]["op"] == "conv"]
    adds = [n for n in net.layers if net.graph.nodes[n]["op"] == "add"]
    assert len(convs) == 1 + 2 ** c - 1  # the stem, and f_C = 2^C - 1 convolutions on the longest path's tree
    assert len(adds) == 2 ** (c - 1) - 1
    assert net.output_shape == (8, 16, 16)


def test_recursive_instances_are_scoped_by_depth():
    net = load(FRACTAL, params={"c": 2})
    assert "fractal/branch_1/fractal/conv_0" in net.layers and "fractal/branch_1/fractal_1/conv_0" in net.layers


def test_mutual_recursion_with_an_end():
    text = ("block even(n):\n    if n == 0: conv 1x1 4\n    else: conv 1x1 (n + 4) -> odd(n - 1)\n"
            "block odd(n):\n    if n == 0: conv 1x1 5\n    else: conv 1x1 (n + 4) -> even(n - 1)\n"
            "network t:\n    input 3x8x8\n    even(3)\n")
    assert widths(load(text)) == [7, 6, 5, 5]


def test_recursion_without_an_if_is_refused_at_once():
    err = failure("network t:\n    input 3x8x8\n    b(1)\nblock b(n): conv 1x1 4 -> b(n + 1)\n")
    d = err.diagnostics[0]
    assert d.message == "block `b` instantiates itself" and (d.span.line, d.span.col) == (4, 27)
    assert "`if`" in d.hint


def test_recursion_that_never_ends_stops_at_the_depth_guard():
    err = failure("network t:\n    input 3x8x8\n    b(1)\nblock b(n):\n    if n == 0: conv 1x1 4\n"
                  "    else: conv 1x1 4 -> b(n + 1)\n")
    d = err.diagnostics[0]
    assert d.message.startswith("block `b` recurses too deeply (64 calls")
    assert (d.span.line, d.span.col) == (6, 25)
    assert [(lab.span.line, lab.message) for lab in d.labels] == [(3, "the recursion starts here")]
    assert "`if n == 1: ...`" in d.hint


def test_recursion_through_deep_bodies_stops_before_the_python_stack_does():
    text = ("block r(c):\n    if c == 0: conv 1x1 4\n    else:\n        add:\n            branch: conv 1x1 4\n"
            "            branch:\n                concat:\n                    branch:\n                        residual:\n"
            "                            r(c - 1)\n                            conv 1x1 in.c\n"
            "network t(c = 60):\n    input 3x8x8\n    conv 1x1 4\n    r(c)\n")
    assert "recurses too deeply" in failure(text).diagnostics[0].message
    assert load(text, params={"c": 10}).output_shape == (4, 8, 8)


# --- parse errors that name the statement and show its form --------------------------------

@pytest.mark.parametrize("line, message, hint", [
    ("concat:\n        repeat 3 branch: conv 1x1 4", "unexpected `branch` in `repeat`", "`repeat 3:` or `repeat n as i:`"),
    ("residual scale=0.2:\n        conv 1x1 3", "unexpected `scale` in `residual`", "`residual(scale = 0.17, act = relu):`"),
    ("if n > 1\n        conv 1x1 4", "unexpected end of line in `if`", "`if n > 1:`"),
    ("concat x:\n        branch: conv 1x1 4", "unexpected `x` in `concat`", "`concat:` or `concat as name:`"),
    ("add(act = relu)\n", "unexpected end of line in `add`", "`add:` or `add(act = relu):`"),
    ("let d 3", "unexpected `3` in `let`", "`let d = 16 + alpha * (i + 1) // n`"),
    ("conv 1x1 4\n    else: conv 1x1 8", "`else` without an `if` before it", "right after an `if` or `elif`"),
    ("conv 1x1 4\n    elif n > 1: conv 1x1 8", "`elif` without an `if` before it", "right after an `if` clause"),
])
def test_parse_errors_name_the_statement_and_show_its_form(line, message, hint):
    err = failure(f"network t(n = 2):\n    input 3x8x8\n    {line}\n")
    d = err.diagnostics[0]
    assert d.message == message
    assert hint in d.hint


def test_else_after_an_if_is_fine_and_a_stray_one_points_at_its_word():
    assert widths(load("network t(n = 2):\n    input 3x8x8\n    if n > 1: conv 1x1 4\n    else: conv 1x1 8\n")) == [4]
    d = failure("network t:\n    input 3x8x8\n    conv 1x1 4\n    else: conv 1x1 8\n").diagnostics[0]
    assert (d.span.line, d.span.col, d.span.end_col) == (4, 5, 9) and not d.notes


def test_errors_past_a_statement_header_keep_the_generic_message():
    d = failure("network t:\n    input 3x8x8\n    repeat 2: conv 1x1 4 ->\n").diagnostics[0]
    assert d.message == "unexpected end of line"


def test_if_in_a_residual_may_choose_its_shortcut():
    text = ("block basic(c, stride = 1):\n    residual:\n        conv 3x3 c /stride S -> conv 3x3 c S act = off\n"
            "        if stride == 2 or c != in.c:\n            shortcut: conv 1x1 c /stride act = off\n"
            "network t:\n    input 16x16x16\n    basic(16) -> basic(32, 2)\n")
    net = load(text)
    assert net.output_shape == (32, 8, 8)
    assert "basic_1/shortcut/conv_0" in net.layers
    assert not any(n.startswith("basic/shortcut") for n in net.layers)  # the first keeps the identity
