"""`require EXPR[, "message"]`: a spec refuses parameter values it cannot build.

Parsing, lowering (a requirement makes no layer), the failing requirement's error (its place,
message, the values it read, the block call chain, a `--set` origin), non-bool conditions, and
requirements in search spaces (a point failing one is an invalid point).
"""
import os

import pytest
from hypothesis import given, settings, strategies as st

import incdsl
from incdsl.lang import syntax as s
from incdsl.lang.parse import parse
from incdsl.lang.walk import iter_statements
from incdsl.search import load_space
from incdsl.search.sampling import check_space, draw_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET = """network t(width = 1.0, n = 2):
    input 3x8x8
    require width > 0
    conv 3x3 (8 * n) pad = 1
    gap -> flatten -> linear 10
"""


def cost(net) -> tuple:
    total = incdsl.count_costs(net).total
    return total.params, total.macs


# --- parse --------------------------------------------------------------------------------------

def test_parses_with_and_without_a_message():
    module = parse('network t:\n    input 3x8x8\n    require 1 > 0\n    require 2 > 1, "two beats one"\n', "r.inc")
    reqs = [st_ for st_ in iter_statements(module.definitions[0].body) if isinstance(st_, s.RequireStmt)]
    assert [r.message for r in reqs] == [None, "two beats one"]
    assert isinstance(reqs[0].cond, s.BinOp) and reqs[0].cond.op == ">"
    assert (reqs[0].span.line, reqs[0].span.col, reqs[0].span.end_col) == (3, 5, 18)  # not the line break
    assert reqs[1].span.end_col == len('    require 2 > 1, "two beats one"') + 1


def test_a_message_without_its_comma_is_a_syntax_error_naming_require(load_error):
    err = load_error('network t:\n    input 3x8x8\n    require 1 > 0 "no comma"\n')
    (diag,) = err.diagnostics
    assert "in `require`" in diag.message
    assert "require width > 0" in diag.hint


@pytest.mark.parametrize("line, message", [
    ("conv 1x1 4 -> require n > 0", "`require` cannot follow `->` in a chain"),
    ("branch: require n > 2", "`require` cannot follow `:` on the same line"),
    ("if n > 0: require n > 2, \"x\"", "`require` cannot follow `:` on the same line"),
    ("require n > 0,", "unexpected end of line in `require`"),
])
def test_a_misplaced_or_unfinished_require_says_how_it_is_written(line, message, load_error):
    (diag,) = load_error(f"network t(n = 1):\n    input 3x8x8\n    {line}\n").diagnostics
    assert diag.message == message
    assert "`require` is written `require width > 0`" in diag.hint


@pytest.mark.parametrize("where, message", [
    ("network t(require = 1):\n    input 3x8x8\n", "`require` is a reserved word and cannot name a parameter"),
    ("network t:\n    input 3x8x8\n    let require = 2\n", "`require` is a reserved word and cannot be bound"),
    ("network t:\n    input 3x8x8\n    repeat 2 as require: identity\n", "`require` is a reserved word"),
    ("block require:\n    identity\n\nnetwork t:\n    input 3x8x8\n", "`require` is a built-in name and cannot name a block"),
])
def test_require_is_a_reserved_word(where, message, load_error):
    (diag,) = load_error(where).diagnostics
    assert diag.message == message


# --- lowering: a requirement that holds makes nothing ----------------------------------------------

def test_a_requirement_that_holds_changes_nothing():
    without = incdsl.load(NET.replace("    require width > 0\n", ""))
    net = incdsl.load(NET)
    assert cost(net) == cost(without)
    assert net.format() == without.format()


def test_requirements_in_blocks_repeats_ifs_and_joins_read_their_environment():
    net = incdsl.load("""block stage(c, k):
    require c % k == 0 and in.c <= c, "bad stage"
    repeat 2 as i:
        require i < 2
        if i == 1:
            require in.c <= c
        conv 1x1 c
    concat:
        let half = c // 2
        require half * 2 == c
        branch: conv 1x1 half
        branch: conv 1x1 half

network t:
    input 3x8x8
    stage(8, 4)
    stage(16, 8)
""")
    assert net.output_shape == (16, 8, 8)


EVERY_BODY = """network t(n = 2):
    input 8x8x8
    residual:
        require in.c == 8
        conv 1x1 8
        shortcut:
            require n > 1
            identity
    aux side:
        require n < 5
        gap -> flatten -> linear 3
    with conv(act = relu):
        require n % 2 == 0
        conv 1x1 4
"""


@pytest.mark.parametrize("n, failed", [(2, None), (1, "n > 1"), (5, "n < 5"), (3, "n % 2 == 0")])
def test_requirements_in_residuals_shortcuts_aux_heads_and_withs(n, failed, load_error):
    if failed is None:
        assert incdsl.load(EVERY_BODY, params={"n": n}).output_shape == (4, 8, 8)
    else:
        (diag,) = load_error(EVERY_BODY, params={"n": n}).diagnostics
        assert diag.message == f"requirement failed: {failed}"


def test_the_tensor_passes_through_unchanged():
    net = incdsl.load("network t:\n    input 3x8x8\n    conv 1x1 5\n    require in.c == 3\n    require yes\n"
                      "    conv 1x1 7\n")
    assert [net.graph.nodes[n]["op"] for n in net.graph] == ["input", "conv", "conv"]


# --- a failing requirement ------------------------------------------------------------------------

def test_without_a_message_the_error_quotes_the_condition(load_error):
    (diag,) = load_error(NET, params={"width": -0.5}).diagnostics
    assert diag.message == "requirement failed: width > 0"
    assert (diag.span.line, diag.span.col, diag.span.end_col) == (3, 13, 22)  # the condition
    assert "width = -0.5" in diag.notes


def test_a_message_is_the_error(load_error):
    (diag,) = load_error(NET.replace("require width > 0", 'require width > 0, "width must be positive"'),
                         params={"width": 0}).diagnostics
    assert diag.message == "width must be positive"
    assert diag.notes[0] == "width = 0"


def test_a_condition_over_lines_is_quoted_on_one(load_error):
    (diag,) = load_error("network t(a = 1, b = 2):\n    input 3x8x8\n    require (a >\n        b)\n").diagnostics
    assert diag.message == "requirement failed: a > b"
    assert list(diag.notes) == ["a = 1, b = 2"]


def test_set_values_are_named_as_such(load_error):
    (diag,) = load_error(NET, params={"width": -1}).diagnostics
    assert "`width` is given with `--set` (or `load(params=...)`)" in diag.notes
    (diag,) = load_error(NET.replace("width = 1.0", "width = -1.0")).diagnostics  # its default: no such note
    assert not any("--set" in n for n in diag.notes)


def test_in_a_block_the_networks_set_values_are_listed(load_error):
    (diag,) = load_error(os.path.join(ROOT, "specs", "zoo", "shufflenet_v2.inc"),
                         params={"c2": 117, "classes": 10}).diagnostics
    assert diag.notes[:2] == ("c = 117", "the network's parameters given with `--set` (or `load(params=...)`): "
                                         "c2 = 117, classes = 10")
    (diag,) = load_error(os.path.join(ROOT, "specs", "zoo", "shufflenet_v2.inc"), params={"c3": 231}).diagnostics
    assert diag.notes[1].endswith(": c3 = 231")


def test_in_a_block_the_call_chain_is_noted(load_error):
    (diag,) = load_error("""block inner(g):
    require in.c % g == 0, "the depth must be a multiple of `g`"
    conv 1x1 in.c

block outer(g):
    inner(g)

network t:
    input 3x8x8
    outer(2)
""").diagnostics
    assert diag.message == "the depth must be a multiple of `g`"
    assert diag.notes[0] == "in.c = 3, g = 2"  # in the order the condition reads them
    assert list(diag.notes[1:]) == ["in block `inner` instantiated at <spec>:6:5",
                                    "in block `outer` instantiated at <spec>:10:5"]


def test_a_requirement_between_branches_of_a_join_is_checked(load_error):
    (diag,) = load_error("network t(n = 3):\n    input 3x8x8\n    concat:\n        branch: conv 1x1 4\n"
                         "        require n < 3\n        branch: conv 1x1 4\n").diagnostics
    assert diag.message == "requirement failed: n < 3"


@pytest.mark.parametrize("cond, found", [("3", "3"), ("width", "1.0"), ("relu", "relu")])
def test_a_condition_that_is_not_yes_or_no_is_an_error(cond, found, load_error):
    (diag,) = load_error(NET.replace("require width > 0", f"require {cond}")).diagnostics
    assert diag.message == f"a requirement needs yes or no, found `{found}`"
    assert diag.span.line == 3


def test_every_command_exits_1_with_the_located_error(run_incdsl, tmp_path):
    spec = tmp_path / "r.inc"
    spec.write_text(NET)
    for command in (["check"], ["cost"], ["draw", "-o", str(tmp_path / "r.svg")]):
        done = run_incdsl(*command, spec, "--set", "width=-0.5")
        assert done.returncode == 1, (command, done.stderr)
        assert "r.inc:3:13: error: requirement failed: width > 0" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "r.svg").exists()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(-50, 50), limit=st.integers(-50, 50))
def test_loads_exactly_when_the_requirement_holds(n, limit):
    text = f"network t(n = 1):\n    input 3x8x8\n    require n >= {limit}, \"n too small\"\n    conv 1x1 4\n"
    try:
        incdsl.load(text, params={"n": n})
        loaded = True
    except incdsl.IncdslError as exc:
        assert exc.diagnostics[0].message == "n too small"
        assert f"n = {n}" in exc.diagnostics[0].notes
        loaded = False
    assert loaded == (n >= limit)


# --- shipped specs --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, setting, message", [
    ("mobilenet_v2.inc", {"width": -0.5}, "width must be positive"),
    ("mobilenet_v3_small.inc", {"width": 0}, "width must be positive"),
    ("efficientnet.inc", {"depth": 0}, "depth must be positive"),
    ("shufflenet_v2.inc", {"c2": 117}, "a stage's width must be even: its two branches take half each"),
    ("regnet_y_400mf.inc", {"g": 7}, "a stage's width must be a multiple of the group width `g`"),
])
def test_zoo_specs_refuse_values_they_cannot_build(spec, setting, message, load_error):
    (diag,) = load_error(os.path.join(ROOT, "specs", "zoo", spec), params=setting).diagnostics
    assert diag.message == message


# --- search spaces --------------------------------------------------------------------------------

SPACE = """block b(n):
    require n % 2 == 0, "n must be even"
    conv 1x1 n

network t(n = choice(2, 3, 4, 6, 7), k = choice(1, 2)):
    input 3x8x8
    require k < 2 or n > 3
    conv 3x3 8
    b(n)
"""
VALID = {(2, 1), (4, 1), (4, 2), (6, 1), (6, 2)}


def test_points_failing_a_requirement_are_invalid_points():
    space = load_space(SPACE, file="space.inc")
    for point in space.grid():
        values = space.values(point)
        key = (int(values["n"]), int(values["k"]))
        if key in VALID:
            assert space.cost(point).params > 0
        else:
            with pytest.raises(incdsl.IncdslError) as exc:
                space.cost(point)
            assert "at the point" in exc.value.render()


def test_check_and_sample_count_them_invalid():
    space = load_space(SPACE, file="space.inc")
    checked = check_space(space)
    assert (checked.checked, checked.invalid) == (10, 5)
    drawn = draw_grid(space, None)
    assert drawn.invalid == 5
    found = {tuple(space.values(space.as_point(c.indices)).values()) for c in drawn.samples}
    assert {(int(n), int(k)) for n, k in found} == VALID


def test_a_requirement_may_read_a_choice_directly():
    space = load_space("network t:\n    input 3x8x8\n    require choice(yes, no)\n    conv 1x1 4\n", file="c.inc")
    assert space.size == 2
    assert space.cost([0]).params > 0
    with pytest.raises(incdsl.IncdslError, match="requirement failed"):
        space.cost([1])


def test_a_sampled_point_keeps_its_requirement_and_loads():
    space = load_space(SPACE, file="space.inc")
    point = space.point({"n": 4, "k": 2})
    text = space.to_spec(point, header=False)
    assert "require n % 2 == 0" in text
    assert cost(incdsl.load(text)) == (space.cost(point).params, space.cost(point).macs)


def test_the_sample_command_skips_invalid_points(run_incdsl, tmp_path):
    spec = tmp_path / "space.inc"
    spec.write_text(SPACE)
    done = run_incdsl("sample", spec, "--strategy", "grid", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "5 invalid" in done.stdout
    assert len(list((tmp_path / "out").glob("sample_*.inc"))) == 5
    checked = run_incdsl("check", spec)
    assert "5 invalid" in checked.stdout
    assert "requirement failed: k < 2 or n > 3" in checked.stderr


# --- the README ------------------------------------------------------------------------------------

def test_the_readme_example_is_what_check_prints(capsys, monkeypatch):
    from doclib import fenced
    from incdsl.cli import main
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    shown = next(b for b in fenced(readme, "text") if b.startswith("$ incdsl check specs/zoo/mobilenet_v2.inc"))
    command, _, output = shown.partition("\n")
    monkeypatch.chdir(ROOT)
    assert main(command.split()[2:]) == 1
    assert capsys.readouterr().err == output


def test_without_its_requirement_regnet_fails_deep_as_the_readme_says(tmp_path, load_error):
    (tmp_path / "lib").mkdir()
    lib = open(os.path.join(ROOT, "specs", "zoo", "lib", "regnet.inc"), encoding="utf-8").read()
    required = '    require w % g == 0, "a stage\'s width must be a multiple of the group width `g`"\n'
    assert required in lib
    (tmp_path / "lib" / "regnet.inc").write_text(lib.replace(required, ""))
    spec = tmp_path / "regnet_y_400mf.inc"
    spec.write_text(open(os.path.join(ROOT, "specs", "zoo", "regnet_y_400mf.inc"), encoding="utf-8").read())
    (diag,) = load_error(spec, params={"g": 7}).diagnostics
    assert diag.message.startswith("`groups = 14` must divide both the input depth 104")
    assert sum(n.startswith("in block") for n in diag.notes) == 3
