"""Search spaces (`incdsl.search`): finding choices, points, costs, concrete specs, mutation."""
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl import IncdslError
from incdsl.lang.parse import parse
from incdsl.search import load_space
from incdsl.search.sampling import Budget, check_plan, descend, draw_grid, draw_random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCEPTION_SPACE = os.path.join(ROOT, "specs", "search", "inception_space.inc")

# Every kind of choice: a network parameter, a filter count, a repeat count, a call-site
# argument, a choice shared by every instance of a block, and a choice between blocks.
TINY = """network tiny(classes = 10, width = choice(0.5, 1.0)):
    input 3x32x32
    with conv(bn = 0.001, width = width):
        conv 3x3 choice(16, 32) S as stem
        repeat choice(1, 2): mixed(n = choice(8, 16, 24))
        choice(mixed, wide) as last
    gap -> flatten -> linear classes
block mixed(n = 8):
    concat:
        branch: conv 1x1 n
        branch: conv 1x1 n -> conv 3x3 choice(8, 16) S
block wide:
    conv 1x1 64
"""

# Inception-v4's options in the space (timm layout).
V4 = {"width": 1.0, "mixed_a.repeat": 4, "mixed_b.repeat": 7, "mixed_c.repeat": 3,
      "mixed_a.b0": 96, "mixed_a.r": 64, "mixed_a.b": 96, "mixed_a.p": 96,
      "reduction_a.k": 192, "reduction_a.l": 224, "reduction_a.m": 256, "reduction_a.n": 384,
      "mixed_b.b0": 384, "mixed_b.r": 192, "mixed_b.m": 224, "mixed_b.o": 256, "mixed_b.p": 128,
      "reduce_b.r0": 192, "reduce_b.b0": 192, "reduce_b.r1": 256, "reduce_b.b1": 320,
      "mixed_c.b0": 256, "mixed_c.r": 384, "mixed_c.s": 256, "mixed_c.m": 448, "mixed_c.o": 512, "mixed_c.p": 256}


@pytest.fixture(scope="module")
def tiny():
    return load_space(TINY, file="tiny.inc")


@pytest.fixture(scope="module")
def v4space():
    return load_space(INCEPTION_SPACE)


def full_cost(text, file="point.inc"):
    total = incdsl.count_costs(incdsl.load(text, file=file)).total
    return total.params, total.macs


# --- choices

def test_choices_are_found_with_ids_names_and_options(tiny):
    def at(line, text):  # the id of the choice spelt `text` on `line`
        return f"tiny.inc:{line}:{TINY.splitlines()[line - 1].index(text) + 1}"

    got = [(c.id, c.name, c.kind, c.options) for c in tiny.choices]
    assert got == [
        (at(1, "choice(0.5"), "width", "value", ("0.5", "1.0")),
        (at(4, "choice(16"), "stem.1", "value", ("16", "32")),
        (at(5, "choice(1, 2)"), "mixed.repeat", "value", ("1", "2")),
        (at(5, "choice(8, 16, 24)"), "mixed.n", "value", ("8", "16", "24")),
        (at(6, "choice(mixed"), "last", "block", ("mixed", "wide")),
        (at(11, "choice(8, 16)"), "mixed/conv.1", "value", ("8", "16")),
    ]
    assert tiny.size == 2 * 2 * 2 * 3 * 2 * 2
    assert [c.ordinal for c in tiny.choices] == list(range(6))


def test_size_is_exact_for_the_inception_space(v4space):
    n = 1
    for c in v4space.choices:
        n *= len(c.options)
    assert v4space.size == n == 3 * 5 * 4 * 4 * 3 ** 23


def test_ranges_expand_with_the_stop_left_out():
    space = load_space("network t:\n    input 3x8x8\n"
                       "    conv 1x1 choice(range(8, 33, 8), 48) -> conv 1x1 choice(range(3))\n")
    assert [c.options for c in space.choices] == [("8", "16", "24", "32", "48"), ("0", "1", "2")]


def test_unreachable_blocks_add_no_choices():
    space = load_space("network t:\n    input 3x8x8\n    conv 1x1 choice(4, 8)\n"
                       "block unused:\n    conv 1x1 choice(1, 2)\n")
    assert len(space.choices) == 1


@pytest.mark.parametrize("body, message", [
    ("conv 1x1 choice()", "`choice` needs at least one option"),
    ("conv 1x1 choice(8, 16, 8)", "option `8` is listed twice"),
    ("conv 1x1 choice(8, choice(1, 2))", "choices cannot be nested"),
    ("conv 1x1 choice(range(8, 8))", "`range(8, 8)` is empty"),
    ("conv 1x1 choice(range(0, 8, 0))", "`range` step must not be zero"),
    ("conv 1x1 choice(range(n, 8))", "`range` bounds must be integer constants"),
    ("choice(a, b) /2", "a block choice lists blocks or layers"),
    ("choice(a, 3x3)", "a block choice lists blocks or layers"),
    ("choice a b -> conv 1x1 (n)", "a block choice lists its options in parentheses"),
])
def test_malformed_choices_are_spec_errors(body, message):
    with pytest.raises(IncdslError) as exc:
        load_space(f"network t(n = 2):\n    input 3x8x8\n    {body}\n"
                   "block a:\n    conv 1x1 4\nblock b:\n    conv 1x1 8\n", file="bad.inc")
    assert message in exc.value.render()
    assert exc.value.span.file == "bad.inc" and exc.value.span.line == 3


# --- points

def test_resolving_a_point_gives_its_network(tiny):
    point = tiny.point({"width": 1.0, "stem.1": 32, "mixed.repeat": 2, "mixed.n": 16, "last": "wide",
                        "mixed/conv.1": 8}, default="none")
    net = tiny.network(point)
    convs = {n: net.graph.nodes[n]["attrs"]["filters"] for n in net.layers if net.graph.nodes[n]["op"] == "conv"}
    assert convs["stem"] == 32
    assert convs["mixed.1/branch_1/conv_1"] == 8 and convs["mixed.1/branch_0/conv_0"] == 16
    assert convs["mixed.0/branch_1/conv_1"] == 8  # a choice inside a block is shared by its instances
    assert convs["last/conv_0"] == 64
    assert net.output_shape == (10,)


def test_width_choice_scales_filters(tiny):
    half = tiny.network(tiny.point({"width": 0.5, "stem.1": 32}))
    assert half.graph.nodes["stem"]["attrs"]["filters"] == 16


def test_an_overridden_parameter_drops_its_choice_from_the_concrete_spec():
    space = load_space(TINY, file="tiny.inc", params={"width": 0.5, "classes": 3})
    point = space.point({"width": 1.0, "stem.1": 32})
    text = space.to_spec(point, header=False)
    assert "network tiny(classes = 3, width = 0.5):" in text
    net = incdsl.load(text, file="p.inc")
    assert net.graph.nodes["stem"]["attrs"]["filters"] == 16 and net.output_shape == (3,)
    assert full_cost(text) == (space.cost(point).params, space.cost(point).macs)


def test_point_validation(tiny):
    with pytest.raises(ValueError, match="out of range"):
        tiny.cost([0, 0, 0, 3, 0, 0])
    with pytest.raises(ValueError, match="missing"):
        tiny.cost({})
    with pytest.raises(ValueError, match="has no option"):
        tiny.point({"mixed.n": 12})
    with pytest.raises(KeyError, match="did you mean"):
        tiny.point({"mixed.nn": 8})


def test_an_invalid_point_names_its_choices():
    space = load_space("network t:\n    input 3x8x8\n    residual:\n        conv 1x1 choice(3, 4) act = off\n",
                       file="r.inc")
    assert space.cost([0]).params > 0
    with pytest.raises(IncdslError) as exc:
        space.cost([1])
    text = exc.value.render()
    assert "residual sum with mismatched shapes" in text
    assert "at the point conv.1 = 4" in text


def test_to_spec_keeps_comments_and_layout():
    space = load_space("""# a space
network t(n = choice(4, 8)):   # n: the last conv
    input 3x8x8
    choice(a, b(6)) as x
    conv 1x1 choice(8,
                    16) -> conv 1x1 (n + 1)
    repeat choice(1, 2): c(p = 1,
                           q = choice(2, 3))
block a:
    conv 1x1 4
block b(k):
    conv 1x1 k
block c(p, q):
    conv 1x1 (p + q)
""", file="t.inc")
    text = space.to_spec([1, 1, 1, 1, 0], header=False)
    assert text == """# a space
network t(n = 8):   # n: the last conv
    input 3x8x8
    b(6) as x
    conv 1x1 16 -> conv 1x1 (n + 1)
    repeat 2: c(p = 1,
                q = 2)
block a:
    conv 1x1 4
block b(k):
    conv 1x1 k
block c(p, q):
    conv 1x1 (p + q)
"""
    assert full_cost(text) == space.cost([1, 1, 1, 1, 0])
    header = space.to_spec([1, 1, 1, 1, 0]).split("\n\n")[0]
    assert "#   x        = b(6)  (t.inc:4:5)" in header.splitlines()


# --- Inception-v4 is a point of the space

def test_inception_v4_point_has_timm_cost(v4space):
    point = v4space.point(V4, default="none")
    assert (v4space.cost(point).params, v4space.cost(point).macs) == (42_679_816, 12_253_974_624)
    assert v4space.check(point) == v4space.cost(point)
    assert full_cost(v4space.to_spec(point)) == (42_679_816, 12_253_974_624)


def test_inception_v4_point_matches_the_v4_spec_layer_for_layer(v4space):
    path = os.path.join(ROOT, "specs", "inception_v4.inc")
    if not os.path.exists(path):
        pytest.skip("specs/inception_v4.inc is not written yet")
    ours = incdsl.count_costs(v4space.network(v4space.point(V4, default="none")))
    theirs = incdsl.count_costs(incdsl.load(path))
    assert sorted((c.op, c.shape, c.params, c.macs) for c in ours.nodes) == \
        sorted((c.op, c.shape, c.params, c.macs) for c in theirs.nodes)


# Residuals reading `in.c`, a width multiplier, an aux head tapping a label inside a block,
# repeat indices as arguments, and points that fail (a concat of 17x17 and 16x16 maps).
RICH = """network rich(classes = 10):
    input 3x35x35
    with conv(bn = 0.001, width = choice(0.5, 1.0, 1.5)), avgpool(count_pad = no):
        conv 3x3 choice(16, 24) S
        repeat choice(1, 2) as i: res(scale = 0.1 * (i + 1), n = choice(8, 12))
        tower as t
        aux side(weight = 0.3) from mid: gap -> flatten -> linear classes
        reduce(k = choice(3, 4))
    gap -> flatten -> linear classes
block res(scale, n):
    residual(scale = scale):
        concat:
            branch: conv 1x1 n
            branch: conv 1x1 n -> conv 3x3 choice(n, 2 * n) S
        conv 1x1 in.c bn = off act = off
block tower:
    conv 1x1 16 as mid -> conv 3x3 16 S
block reduce(k):
    concat:
        branch: conv 3x3 32 /2
        branch: maxpool k /2
"""


def test_fast_cost_equals_the_full_count_on_every_point_of_a_rich_space():
    space = load_space(RICH, file="rich.inc")
    valid = 0
    for point in space.grid():
        try:
            full = space.check(point)
        except IncdslError as exc:
            with pytest.raises(IncdslError) as fast:
                space.cost(point)
            assert fast.value.diagnostics[0].message == exc.diagnostics[0].message
            continue
        assert space.cost(point) == full
        valid += 1
    assert 0 < valid < space.size  # reduce(k = 4) gives 17x17 beside 16x16


# --- cost model, concrete specs, mutation (hypothesis)

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_fast_cost_equals_the_full_count_and_to_spec_round_trips(tiny, seed):
    point = tiny.sample(random.Random(seed))
    cost = tiny.cost(point)
    assert tiny.check(point) == cost
    text = tiny.to_spec(point)
    assert load_space(text, file="point.inc").choices == ()
    assert full_cost(text) == (cost.params, cost.macs)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_inception_space_points_round_trip(v4space, seed):
    point = v4space.sample(random.Random(seed))
    cost = v4space.cost(point)
    assert v4space.check(point) == cost
    text = v4space.to_spec(point, header=False)
    assert parse(text, "point.inc").includes == () and load_space(text, file="point.inc").choices == ()
    assert full_cost(text) == (cost.params, cost.macs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutation_changes_exactly_one_choice(v4space, seed):
    rng = random.Random(seed)
    point = v4space.sample(rng)
    child = v4space.mutate(point, rng)
    changed = [k for k in point if point[k] != child[k]]
    assert len(changed) == 1
    assert 0 <= child[changed[0]] < len(v4space.choice(changed[0]).options)


def test_same_seed_same_samples(v4space):
    a = [v4space.sample(random.Random(7)) for _ in range(3)]
    b = [v4space.sample(random.Random(7)) for _ in range(3)]
    assert a == b and a[0] != v4space.sample(random.Random(8))


def test_mutation_needs_an_open_choice():
    space = load_space("network t:\n    input 3x8x8\n    conv 1x1 choice(4)\n")
    with pytest.raises(ValueError, match="nothing to mutate"):
        space.mutate(space.first(), random.Random(0))


# --- strategies

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), limit=st.integers(2_000, 40_000))
def test_random_draws_are_distinct_valid_and_within_budget(tiny, seed, n, limit):
    budget = Budget(max_params=limit)
    draw = draw_random(tiny, n, random.Random(seed), budget)
    points = [c.indices for c in draw.samples]
    assert len(set(points)) == len(points) <= n
    for cand in draw.samples:
        assert budget.admits(cand.cost) and cand.cost.params <= limit
        assert full_cost(tiny.to_spec(cand.indices)) == (cand.cost.params, cand.cost.macs)
    # A short draw happened only because the budget or the space ran out.
    within = sum(1 for p in tiny.grid() if tiny.cost(p).params <= limit)
    assert len(points) == min(n, within)


def test_grid_enumerates_every_point_in_order(tiny):
    draw = draw_grid(tiny, None)
    assert [c.indices for c in draw.samples] == [tuple(p.values()) for p in tiny.grid()]
    assert len(draw.samples) == tiny.size == draw.tried
    with pytest.raises(ValueError, match="grid enumerates at most"):
        draw_grid(tiny, None, limit=10)


def test_check_plan_sweeps_each_option_then_samples(v4space, tiny):
    plan = check_plan(v4space)
    assert not plan.exhaustive and plan.sweep == 1 + sum(len(c.options) - 1 for c in v4space.choices)
    for k, c in enumerate(v4space.choices):
        assert {p[k] for p in plan.points[:plan.sweep]} == set(range(len(c.options)))
    assert len(set(plan.points)) == len(plan.points) == plan.sweep + plan.random
    small = check_plan(tiny)
    assert small.exhaustive and len(small.points) == tiny.size


def test_descend_finds_a_cheaper_point(v4space):
    start = draw_random(v4space, 1, random.Random(3)).samples[0]
    low = descend(v4space, start)
    assert low.cost.macs <= start.cost.macs
    assert low.cost == v4space.cost(low.indices)
    # every choice alone is at a local minimum
    for k, c in enumerate(v4space.choices):
        for i in range(len(c.options)):
            assert v4space.cost(low.indices[:k] + (i,) + low.indices[k + 1:]).macs >= low.cost.macs
