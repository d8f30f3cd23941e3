"""Recursive blocks cannot make lowering hang, grow without bound or overflow the stack: the
size estimate counts a recursive block for its arguments (FractalNet's rule doubles per level),
with bounded work, and lowering checks each recursive call against it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import incdsl
from incdsl import IncdslError
from incdsl.ir.estimate import STEP_BUDGET, SizeEstimate
from incdsl.ir.program import load_program
from speclib import ADD_FRACTAL_BLOCK

REPO = Path(__file__).resolve().parent.parent

FRACTAL = ADD_FRACTAL_BLOCK


def failure(text: str) -> IncdslError:
    with pytest.raises(IncdslError) as info:
        incdsl.load(text)
    return info.value


def estimate_of(text: str) -> SizeEstimate:
    program = load_program(text, "<spec>")
    return SizeEstimate(program.blocks, 100_000)


def test_fractal_sixty_deep_is_refused_by_the_estimate_in_a_child_process(tmp_path):
    (tmp_path / "f.inc").write_text(FRACTAL + "network t:\n    input 3x8x8\n    fractal(60, 8)\n")
    proc = subprocess.run([sys.executable, "-m", "incdsl", "check", "f.inc"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("f.inc:9:5: error: this network would have at least ")
    assert "block `fractal` makes at least" in proc.stderr


def test_the_estimate_is_exact_for_small_fractals():
    est = estimate_of(FRACTAL)
    assert est.min_size("fractal") >= 1
    for c in range(1, 12):
        assert est.min_instance("fractal", {"c": c, "f": 8}) == (2 ** c - 1) + (2 ** (c - 1) - 1)


@pytest.mark.parametrize("call", ["fractal(60, 8)", "fractal(c, 8)"])
def test_a_call_whose_size_is_known_only_while_lowering_is_checked_when_made(call):
    # `i` is unknown to the estimate; the call is checked with its arguments when lowered
    text = FRACTAL + f"network t(c = 60):\n    input 3x8x8\n    repeat 2 as i:\n        conv 1x1 8\n        {call}\n"
    err = failure(text)
    assert "the limit is 100,000" in err.diagnostics[0].message


def test_calls_with_ever_new_arguments_cost_bounded_work():
    # 2**40 distinct calls: past the step budget the estimate keeps only the values that steer
    text = ("block b(x, d):\n    if d == 0: conv 1x1 4\n    else: b(x + 1, d - 1) -> b(x * 2 + 3, d - 1)\n"
            "network t:\n    input 3x8x8\n    b(0, 40)\n")
    est = estimate_of(text)
    assert est.min_size("b") >= 1
    assert est.min_instance("b", {"x": 0, "d": 40}) >= 2 ** 20
    assert est.steps <= 2 * STEP_BUDGET + 1000
    assert "would have at least" in failure(text).diagnostics[0].message


def test_unbounded_recursion_with_an_if_is_bounded():
    text = ("block b(x):\n    if x < 0: conv 1x1 4\n    else: b(x + 1) -> b(x + 2)\n"
            "network t:\n    input 3x8x8\n    b(0)\n")
    err = failure(text)
    assert "recurses too deeply" in err.diagnostics[0].message or "would have" in err.diagnostics[0].message


def test_mutual_recursion_is_found():
    est = estimate_of("block a(n):\n    if n > 0: b(n - 1)\nblock b(n):\n    if n > 0: a(n - 1)\nblock c: conv 1x1 4\n")
    est.min_size("a")
    assert est.recursive == {"a", "b"} and est.endless == frozenset()


def recursive_spec(depth: int, calls: int, joined: bool, guard: str, extra: bool) -> str:
    """A recursive block of varied shape: `calls` self-calls per level, perhaps inside a join,
    ended by an `if` on its depth; perhaps an `if` with no `else` beside it."""
    again = " -> ".join(["r(c - 1, w)"] * calls)
    step = (f"        add:\n            branch: conv 1x1 v\n            branch: {again}\n" if joined
            else f"        conv 1x1 v -> {again}\n")
    more = "    if w > 100: conv 1x1 w\n" if extra else ""
    return (f"block r(c, w):\n    let v = w + 0 * c\n    if {guard}: conv 1x1 w\n    else:\n{step}{more}"
            f"network t(c = {depth}):\n    input 4x8x8\n    r(c, 4)\n")


@given(st.integers(0, 6), st.integers(1, 2), st.booleans(), st.sampled_from(["c <= 0", "c < 1", "not c > 0"]),
       st.booleans())
@settings(max_examples=30, deadline=None)
def test_the_estimate_never_exceeds_what_lowering_makes(depth, calls, joined, guard, extra):
    text = recursive_spec(depth, calls, joined, guard, extra)
    net = incdsl.load(text)
    program = load_program(text, "<spec>")
    est = SizeEstimate(program.blocks, 100_000)
    body = program.network.body[1:]
    estimate = sum(est.network_sizes(body, {"c": depth}))
    assert 1 <= estimate <= len(net.graph) - 1  # every layer but the input
    if not extra:  # every condition is known: the bound is exact
        assert estimate == len(net.graph) - 1
