"""FractalNet's global drop-path: `mean(global_path = G)`.

While training, one draw per forward pass of the network picks a column j and, with probability
G, every such join keeps only its input j: the network computes column j alone, in every block
at once (Larsson et al. 2016, section 3.1). Checked against the hand-written FractalNet of
test_zoo_cifar_b, whose `column` attribute runs one column's convs and no join.
"""
import math
from pathlib import Path

import pytest

import incdsl
from incdsl.cli import main
from speclib import FRACTAL_BLOCK, failure, load

FRACTALNET = Path(__file__).resolve().parent.parent / "specs" / "zoo" / "cifar" / "fractalnet20.inc"

# two fractal blocks at 4x4 input, so the reference's pools end at 1x1 (as its five do at 32x32)
SPEC = """\
network small_fractal(columns = 3, drop_path = 0, global_path = 1):
    input 3x4x4
    with conv(bn = 1e-5, act = relu, bias = no, pad = 1), mean(drop_path = drop_path, global_path = global_path):
        fractal(columns, 4) -> maxpool 2x2 /2
        fractal(columns, 8) -> maxpool 2x2 /2
    flatten -> linear 10
""" + FRACTAL_BLOCK


def binomial_bounds(n: int, p: float, sigmas: float = 4.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def pair(columns: int, **params):
    """Our network and the hand-written reference with the same weights, both in training mode."""
    torch = pytest.importorskip("torch")
    from modellib import randomise_norms
    from modellib import fractalnet_reference

    torch.manual_seed(0)
    reference = randomise_norms(fractalnet_reference((4, 8), columns=columns))
    ours = incdsl.to_torch(load(SPEC, params=dict(columns=columns, **params)), seed=1)
    assert len(incdsl.load_weights(ours, reference)) == len(reference.state_dict())
    return ours.train(), reference.train()


def outputs_per_column(reference, x, columns: int):
    """What the reference computes in training mode for each column alone, and for all (None)."""
    import torch
    want = {}
    with torch.no_grad():
        for column in [*range(columns), None]:
            reference.column = column
            want[column] = reference(x)
    reference.column = None
    return want


def which(out, want) -> list:
    """The keys of `want` whose output `out` equals."""
    import torch
    return [k for k, w in want.items() if torch.allclose(out, w, rtol=1e-5, atol=1e-6)]


def test_global_path_is_a_mean_argument_that_changes_no_count():
    plain, drawn = load(SPEC, params=dict(global_path=0)), load(SPEC, params=dict(global_path=0.5))
    totals = [incdsl.count_costs(net).total for net in (plain, drawn)]
    assert [(t.params, t.macs) for t in totals] == [(totals[0].params, totals[0].macs)] * 2
    means = [drawn.graph.nodes[n]["attrs"] for n in drawn.layers if drawn.graph.nodes[n]["op"] == "mean"]
    assert means and all(a["global_path"] == 0.5 for a in means)


def test_the_diagram_names_global_drop_path(tmp_path):
    spec = tmp_path / "f.inc"
    spec.write_text(SPEC.replace("global_path = 1)", "global_path = 0.5)"))
    out = tmp_path / "f.dot"
    assert main(["draw", str(spec), "--block", "fractal", "--format", "dot", "-o", str(out)]) == 0
    assert "global 0.5" in out.read_text()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "yes"])
def test_a_global_path_outside_0_to_1_is_refused_with_a_hint(value):
    error = failure(SPEC.replace("global_path = 1):", f"global_path = {value}):"))
    assert "probability in [0, 1]" in str(error)


def test_max_has_no_global_path():
    error = failure("network n:\n    input 3x8x8\n    max(global_path = 0.5):\n"
                    "        branch: conv 3x3 4 S\n        branch: conv 1x1 4\n")
    assert "global_path" in str(error)


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_with_global_path_1_every_training_pass_is_one_column_drawn_uniformly(columns):
    """Each pass equals the reference's column j alone: all joins of both blocks kept the same
    input (joins drawing on their own would match no column). Each column comes up about 1/C of
    the time (4-sigma binomial bounds)."""
    torch = pytest.importorskip("torch")
    ours, reference = pair(columns)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, columns)
    passes, seen = 40 * columns, []
    torch.manual_seed(3)
    with torch.no_grad():
        for _ in range(passes):
            match = which(ours(x), want)
            assert len(match) == 1 and match[0] is not None, match
            seen.append(match[0])
    low, high = binomial_bounds(passes, 1 / columns)
    assert all(low <= seen.count(j) <= high for j in range(columns)), [seen.count(j) for j in range(columns)]


def test_global_path_one_half_trains_one_column_in_about_half_the_passes():
    """With no local drop-path, a pass is either one column alone or the mean of all columns."""
    torch = pytest.importorskip("torch")
    ours, reference = pair(3, global_path=0.5)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, 3)
    passes, single = 200, 0
    torch.manual_seed(4)
    with torch.no_grad():
        for _ in range(passes):
            match = which(ours(x), want)
            assert len(match) == 1, match
            single += match[0] is not None
    low, high = binomial_bounds(passes, 0.5)
    assert low <= single <= high, single


def test_global_passes_train_only_the_chosen_column():
    """The gradient reaches the convs of the drawn column and no other."""
    torch = pytest.importorskip("torch")
    ours, reference = pair(3)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    ours(x).square().sum().backward()
    column = int(ours.column_draw.column)
    trained = sum(1 for m in ours.modules() if isinstance(m, torch.nn.Conv2d)
                  and m.weight.grad is not None and m.weight.grad.abs().sum() > 0)
    # column j of a 3-column block has 2^(2-j) convs; two blocks
    assert trained == 2 * 2 ** (2 - column), (column, trained)


def test_at_inference_it_is_the_plain_mean_whatever_the_draw():
    torch = pytest.importorskip("torch")
    ours, reference = pair(3, drop_path=0.15, global_path=0.5)
    ours.eval(), reference.eval()
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(x)
        for seed in range(5):
            torch.manual_seed(seed)
            torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-6)


def test_a_mean_used_alone_falls_back_to_local_drop_path():
    """Outside a network there is no shared draw: the join does local drop-path only."""
    torch = pytest.importorskip("torch")
    from incdsl.torch.layers import Mean
    join = Mean(0.0, global_path=1.0, inputs=2).train()
    a, b = torch.ones(3), 3 * torch.ones(3)
    torch.testing.assert_close(join(a, b), 2 * torch.ones(3))


def test_the_compiled_file_draws_once_per_pass_before_the_trunk(tmp_path):
    torch = pytest.importorskip("torch")
    spec = tmp_path / "f.inc"
    spec.write_text(SPEC)
    out = tmp_path / "f.py"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    source = out.read_text()
    assert source.count("self.share_column_draw()") == 1 and source.count("self.draw_columns(x)") == 1
    namespace = {}
    exec(compile(source, str(out), "exec"), namespace)
    model = namespace["SmallFractal"](seed=0).train()
    ours, reference = pair(3)
    model.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, 3)
    torch.manual_seed(6)
    with torch.no_grad():
        assert all(len(which(model(x), want)) == 1 and which(model(x), want)[0] is not None for _ in range(10))


def test_a_network_without_global_path_compiles_no_draw(tmp_path):
    spec = tmp_path / "f.inc"
    spec.write_text(SPEC.replace("global_path = 1)", "global_path = 0)"))
    out = tmp_path / "f.py"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    assert "draw_columns(x)" not in out.read_text() and "share_column_draw()" not in out.read_text()


def test_a_deep_copy_shares_one_draw_of_its_own():
    copy = pytest.importorskip("copy")
    ours, _ = pair(3)
    twin = copy.deepcopy(ours)
    draws = {id(m.column_draw) for m in twin.modules() if getattr(m, "column_draw", None) is not None}
    assert draws == {id(twin.column_draw)} and twin.column_draw is not ours.column_draw


def test_fractalnet20_uses_the_papers_mix_of_local_and_global_drop_path():
    net = incdsl.load(FRACTALNET)
    means = [net.graph.nodes[n]["attrs"] for n in net.layers if net.graph.nodes[n]["op"] == "mean"]
    assert len(means) == 10 and all(a == {"drop_path": 0.15, "global_path": 0.5} for a in means)


def test_global_drop_path_traces_whole_under_torch_compile():
    torch = pytest.importorskip("torch")
    ours, reference = pair(3)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, 3)
    compiled = torch.compile(ours, backend="eager", fullgraph=True)
    torch.manual_seed(7)
    with torch.no_grad():
        seen = set()
        for _ in range(12):
            match = which(compiled(x), want)
            assert len(match) == 1 and match[0] is not None
            seen.add(match[0])
    assert len(seen) > 1  # the draw is redone on every call, not frozen into the graph


@pytest.mark.parametrize("level", ["train", "infer"])
def test_fused_levels_draw_the_same_columns_as_level_none(level):
    """The optimised models draw as level `none` does: seed for seed, training outputs equal."""
    torch = pytest.importorskip("torch")
    net = load(SPEC, params=dict(drop_path=0.15, global_path=0.5))
    plain = incdsl.to_torch(net, seed=1).train()
    fast = incdsl.to_torch(net, seed=1, optimize=level).train()
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for seed in range(8):
            torch.manual_seed(seed)
            want = plain(x)
            torch.manual_seed(seed)
            torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("column", [0, 1, 2])
def test_keep_column_evaluates_one_column_alone(column):
    """FractalNet's single-column subnetworks (the paper's deepest-column results): in eval, with
    running statistics, the network computes the reference's column alone; None restores the mean."""
    torch = pytest.importorskip("torch")
    ours, reference = pair(3, drop_path=0.15, global_path=0.5)
    ours.eval(), reference.eval()
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours.keep_column(column)(x), want[column], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.keep_column(None)(x), want[None], rtol=1e-5, atol=1e-6)


def test_keep_column_trains_that_column_every_pass():
    torch = pytest.importorskip("torch")
    ours, reference = pair(3, drop_path=0.15, global_path=0.5)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = outputs_per_column(reference, x, 3)
    ours.keep_column(1)
    torch.manual_seed(8)
    with torch.no_grad():
        assert all(which(ours(x), want) == [1] for _ in range(10))


@pytest.mark.parametrize("column", [3, -1, 1.0, "0"])
def test_keep_column_refuses_a_column_the_network_lacks(column):
    ours, _ = pair(3)
    with pytest.raises(ValueError, match="0..2"):
        ours.keep_column(column)


def test_keep_column_needs_global_drop_path():
    net = load(SPEC, params=dict(global_path=0))
    with pytest.raises(ValueError, match="global_path"):
        incdsl.to_torch(net).keep_column(0)
