"""`mean(flat = yes)` and `max(flat = yes)` (ir/lower.py, `merge_flat`; ops/elementwise.py): a
branch that ends in a join of the same kind made by its own statements hands that join's
inputs to the flat join, so FractalNet's expansion rule is written once as a recursive block
(specs/zoo/cifar/fractalnet20.inc) and its joins are the paper's: one mean of every column
that ends at a level, each input dropped on its own by local drop-path.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import incdsl
from incdsl.io import Includes
from incdsl.ir.lower import Lowerer, load_program
from incdsl.search.fastcost import CostCache, cost_lowerer
from speclib import same_outputs

FRACTALNET = Path(__file__).resolve().parent.parent / "specs" / "zoo" / "cifar" / "fractalnet20.inc"

FRACTAL = """
network t(c = 3):
    input 4x8x8
    fractal(c, 4)

block fractal(c, f):
    if c == 1: conv 3x3 f pad = 1
    else:
        {head}:
            branch: fractal(c - 1, f) -> fractal(c - 1, f)
            branch: fractal(1, f)
"""


def net(body: str, input: str = "4x8x8") -> incdsl.Network:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return incdsl.load(f"network t:\n    input {input}\n{lines}\n")


def joins(network, op: str = "mean") -> list[list[str]]:
    """Each join's inputs, in edge order, joins in the order made."""
    g = network.graph
    return [sorted(g.predecessors(n), key=lambda p: g.edges[p, n]["index"]) for n in network.layers
            if g.nodes[n]["op"] == op]


def ops(network, names) -> list[str]:
    return [network.graph.nodes[n]["op"] for n in names]


def columns_ending_at(level: int, columns: int) -> int:
    """How many of a C-column fractal's columns end at `level` (column j has a conv every
    2^j levels): one more than the trailing zero bits of `level`, at most C."""
    return min(columns, 1 + (level & -level).bit_length() - 1)


# --- what it makes ------------------------------------------------------------------------

NESTED = """
mean{args}:
    branch: conv 3x3 4 S act = off
    branch:
        mean:
            branch: conv 1x1 4 act = off
            branch: identity
"""


def test_a_branch_ending_in_a_mean_gives_its_inputs():
    flat, nested = net(NESTED.format(args="(flat = yes)")), net(NESTED.format(args=""))
    assert [ops(flat, ins) for ins in joins(flat)] == [["conv", "conv", "identity"]]
    assert [ops(nested, ins) for ins in joins(nested)] == [["conv", "identity"], ["conv", "mean"]]
    assert len(flat.graph) == len(nested.graph) - 1
    # costs and shapes are the nested joins' (means are free)
    a, b = incdsl.count_costs(flat).total, incdsl.count_costs(nested).total
    assert (a.params, a.macs, flat.output_shape) == (b.params, b.macs, nested.output_shape)


def test_the_flat_mean_weights_every_input_alike():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = {}
    for args in ("(flat = yes)", ""):
        model = incdsl.to_torch(net(NESTED.format(args=args)), seed=0).eval()
        c3, c1 = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            outs[args] = (model(x), c3(x), c1(x))
    y, a, b = outs["(flat = yes)"]
    torch.testing.assert_close(y, (a + b + x) / 3)
    y, a, b = outs[""]
    torch.testing.assert_close(y, (a + (b + x) / 2) / 2)


@pytest.mark.parametrize("columns", [2, 3, 4, 5])
def test_a_recursive_fractal_joins_the_columns_that_end_at_each_level(columns):
    """The expansion rule written once: a join at every even level, of as many inputs as
    columns end there (2 at level 2, 3 at level 4 and so on), and 2^C - 1 convs."""
    network = incdsl.load(FRACTAL.format(head="mean(flat = yes)"), params=dict(c=columns))
    levels = 2 ** (columns - 1)
    assert [len(ins) for ins in joins(network)] == [columns_ending_at(L, columns) for L in range(2, levels + 1, 2)]
    assert sum(op == "conv" for op in ops(network, network.layers)) == 2 ** columns - 1
    nested = incdsl.load(FRACTAL.format(head="mean"), params=dict(c=columns))
    assert {len(ins) for ins in joins(nested)} == {2}  # without `flat`, every join has its two branches


def test_max_merges_too_and_other_kinds_stay_inputs():
    n = net("""
max(flat = yes):
    branch: conv 1x1 4
    branch:
        max:
            branch: conv 3x3 4 S
            branch: identity
    branch:
        mean:
            branch: conv 3x3 4 S
            branch: identity
""")
    assert [ops(n, ins) for ins in joins(n, "max")] == [["conv", "conv", "identity", "mean"]]
    assert len(joins(n, "mean")) == 1


def test_a_join_made_before_the_branch_is_one_input():
    """`take m` in a branch reads a mean made before the join: it is an input, not merged."""
    n = net("""
mean as m:
    branch: conv 1x1 4
    branch: identity
mean(flat = yes):
    branch: conv 3x3 4 S
    branch: take m
""")
    assert [ops(n, ins) for ins in joins(n)] == [["conv", "identity"], ["conv", "mean"]]


def test_drop_path_drops_each_merged_input_on_its_own():
    """Local drop-path on the merged join: each of the three inputs 1, 10, 100 dropped with
    p = 0.5 for the whole batch, at least one kept, the output the mean of the kept ones. Nested
    joins would give other values (28 = (1 + 55) / 2 where all are kept)."""
    torch = pytest.importorskip("torch")
    n = net("""
mean(flat = yes, drop_path = 0.5):
    branch: identity
    branch:
        mean(drop_path = 0.5):
            branch: learned_scale 10
            branch: learned_scale 100
""", input="1x1x1")
    assert [len(ins) for ins in joins(n)] == [3]
    model = incdsl.to_torch(n, seed=0).train()
    torch.manual_seed(0)
    subsets = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1) if a + b + c]
    means = {s: sum(v * k for v, k in zip((1, 10, 100), s)) / sum(s) for s in subsets}
    trials, kept, seen = 2000, [0, 0, 0], set()
    x = torch.ones(1, 1, 1, 1)
    with torch.no_grad():
        for _ in range(trials):
            y = float(model(x))
            match = [s for s, m in means.items() if abs(y - m) < 1e-3]
            assert len(match) == 1, y
            seen.add(match[0])
            kept = [k + s for k, s in zip(kept, match[0])]
    p = 0.5
    rate = (1 - p) + p ** 3 / 3
    std = (rate * (1 - rate) / trials) ** 0.5
    assert seen == set(subsets)
    assert all(abs(k / trials - rate) < 4 * std for k in kept), kept
    with torch.no_grad():
        assert float(model.eval()(x)) == pytest.approx(37.0)


def read_program(path: Path):
    return load_program(path.read_text(encoding="utf-8"), str(path), Includes.for_spec(str(path), None))


def test_the_search_cost_sink_counts_what_the_graph_counts(tmp_path):
    """`search/fastcost.py` lowers with a memo of block instances and a sink without edges: the
    same totals as the graph, also when a memoised instance stands for a merged one."""
    spec = tmp_path / "f.inc"
    spec.write_text(FRACTAL.format(head="mean(drop_path = 0.1, flat = yes)"), encoding="utf-8")
    cache = CostCache()
    for c in (4, 3, 4):  # the memo outlives one lowering, as in a search
        program = read_program(spec)
        sink = cost_lowerer(program, cache).lower_network(program.network, {"c": (c, None)}, None)
        total = incdsl.count_costs(incdsl.load(spec, params=dict(c=c))).total
        assert (sink.params, sink.macs) == (total.params, total.macs)
    program = read_program(spec)
    graph = Lowerer(program).lower_network(program.network, {"c": (4, None)}, None)
    assert graph.number_of_nodes() == len(incdsl.load(spec, params=dict(c=4)).graph)


def test_draw_cost_and_compile_read_the_merged_join(tmp_path):
    from incdsl.cli import main
    spec = tmp_path / "f.inc"
    spec.write_text(FRACTAL.format(head="mean(flat = yes)"), encoding="utf-8")
    assert main(["draw", str(spec), "--block", "fractal", "-o", str(tmp_path / "f.svg")]) == 0
    assert main(["draw", str(spec), "--level", "layer", "-o", str(tmp_path / "l.dot")]) == 0
    assert (tmp_path / "l.dot").read_text().count("Mean") == 2
    assert main(["cost", str(spec)]) == 0
    torch = pytest.importorskip("torch")
    from incdsl.torch.source import generate_source
    text, cls, _ = generate_source(incdsl.load(spec))
    assert text.count("Mean(") >= 2


# --- mistakes -----------------------------------------------------------------------------

def test_a_merged_join_with_other_arguments_is_an_error(load_error):
    err = load_error("network t:\n    input 4x8x8\n" + "\n".join("    " + line for line in """
mean(flat = yes, drop_path = 0.2):
    branch: conv 3x3 4 S
    branch:
        mean(drop_path = 0.1):
            branch: conv 1x1 4
            branch: identity""".strip("\n").splitlines()) + "\n").render()
    assert "ends in a `mean` with other arguments than this flat `mean`" in err
    assert "drop_path 0.1 there, 0.2 here" in err and "the `mean` made here" in err
    assert "without `flat = yes`" in err and ":6:" in err  # at the branch


def test_a_merged_join_read_by_an_auxiliary_head_is_an_error(load_error):
    err = load_error("""network t:
    input 4x8x8
    mean(flat = yes):
        branch: conv 3x3 4 S
        branch:
            mean:
                branch: conv 1x1 4
                branch: identity
            aux side: gap -> flatten -> linear 3
    gap -> flatten -> linear 3
""").render()
    assert "ends in a `mean` that is also read elsewhere" in err and "auxiliary head `side`" in err


def test_tapping_a_merged_join_by_its_label_is_an_error(load_error):
    err = load_error("""network t:
    input 4x8x8
    mean(flat = yes):
        branch: conv 3x3 4 S
        branch:
            mean as inner:
                branch: conv 1x1 4
                branch: identity
    aux side from inner: gap -> flatten -> linear 3
    gap -> flatten -> linear 3
""").render()
    assert "`inner` labels a `mean` whose inputs were merged into a flat `mean`" in err and "merged here" in err


@pytest.mark.parametrize("head, message", [
    ("mean(flat = 2)", "`mean` flat: expected yes or no"),
    ("concat(flat = yes)", "`concat` has no argument `flat`"),
    ("add(flat = yes)", "`add` has no argument `flat`"),
])
def test_flat_is_checked(load_error, head, message):
    body = f"{head}:\n    branch: conv 1x1 4\n    branch: identity"
    err = load_error("network t:\n    input 4x8x8\n" + "\n".join("    " + x for x in body.splitlines()) + "\n")
    assert message in err.render()


# --- FractalNet ---------------------------------------------------------------------------

def fractalnet_count(columns: int, base: int = 64, classes: int = 10) -> tuple[int, int]:
    """Parameters and MACs of FractalNet for CIFAR counted by hand: in each of the five blocks
    2^C - 1 convs 3x3 (no bias) with BN, of which C (one a column) read the block's input;
    BN's scale and shift are 2 parameters a channel and no MACs; a linear classifier."""
    params = macs = 0
    cin, size = 3, 32
    for cout in (base, 2 * base, 4 * base, 8 * base, 8 * base):
        for reads, convs in ((cin, columns), (cout, 2 ** columns - 1 - columns)):
            params += convs * (9 * reads * cout + 2 * cout)
            macs += convs * 9 * reads * cout * size * size
        cin, size = cout, size // 2
    return params + cin * classes + classes, macs + cin * classes


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_fractalnet_has_the_hand_count_for_each_number_of_columns(columns):
    network = incdsl.load(FRACTALNET, params=dict(columns=columns))
    costs = incdsl.count_costs(network).total
    assert (costs.params, costs.macs) == fractalnet_count(columns)
    convs = [n for n in network.layers if network.graph.nodes[n]["op"] == "conv"]
    assert len(convs) == 5 * (2 ** columns - 1)
    levels = 2 ** (columns - 1)  # the deepest column's convs in a block
    assert [len(ins) for ins in joins(network)] == 5 * [columns_ending_at(L, columns) for L in range(2, levels + 1, 2)]


def test_fractalnet_at_three_columns_is_the_papers_20_layers():
    assert fractalnet_count(3) == (33_724_618, 845_222_912)


def test_fractalnet_with_four_columns_equals_the_hand_written_reference():
    """`--set columns=4` (40 layers deep) against the reference of test_zoo_cifar_b built level by
    level for four columns (eval mode; weights paired by data flow)."""
    torch = pytest.importorskip("torch")
    from modellib import fractalnet_reference

    network = incdsl.load(FRACTALNET, params=dict(columns=4, base=4))
    torch.manual_seed(0)
    same_outputs(network, fractalnet_reference((4, 8, 16, 32, 32), columns=4), by_flow=True, rtol=1e-5, atol=1e-6)


def test_fractalnet_is_one_recursive_block():
    """The spec writes the expansion rule once: one block, which calls itself."""
    assert list(read_program(FRACTALNET).blocks) == ["fractal"]
    text = FRACTALNET.read_text(encoding="utf-8")
    assert "mean(flat = yes):" in text and "unrolled" not in text
