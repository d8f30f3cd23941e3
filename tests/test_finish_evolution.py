"""examples/evolution.py: a small evolutionary search that trains every candidate."""
from __future__ import annotations

import importlib.util
import math
import os
import re

import pytest

pytest.importorskip("torch")

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "evolution.py")
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+([\d.]+)%\s+([\d,]+)\s+([\d,]+)\s+(.+)$")


def _example():
    spec = importlib.util.spec_from_file_location("evolution_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_trains_each_candidate_and_ranks_them(capsys, tmp_path):
    best = tmp_path / "best.inc"
    assert _example().main(["--population", "3", "--cycles", "3", "--images", "32", "--batch-size", "16",
                            "--threads", "1", "--seed", "1", "-o", str(best)]) == 0
    out = capsys.readouterr().out
    trained = re.findall(r"candidate +(\d+): val loss ([^,]+),", out)
    [count] = re.findall(r"^(\d+) candidates trained", out, re.MULTILINE)
    rows = [ROW.match(line).groups() for line in out.split("best first:\n")[1].split("\n\nbest:")[0].splitlines()[1:]]
    assert 3 <= len(trained) == int(count) == len(rows) <= 6  # repeats of a point are not trained again
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    losses = [float(r[1]) for r in rows]
    assert all(math.isfinite(x) and x > 0 for x in losses) and losses == sorted(losses)
    assert sorted(losses) == sorted(float(x) for _, x in trained)  # every candidate trained is ranked
    assert all(int(r[3].replace(",", "")) > 0 for r in rows)
    import incdsl
    net = incdsl.load(str(best))  # the best candidate, a concrete spec that checks
    assert f"{incdsl.count_costs(net).total.params:,}" == rows[0][3]


def test_evolution_trains_a_point_once_and_retires_the_oldest():
    example = _example()
    import random

    import incdsl
    space = incdsl.space(os.path.join(os.path.dirname(EXAMPLE), "mini_space.inc"))
    calls = []

    def fitness(point):
        calls.append(tuple(point.values()))
        return sum(point.values())  # the first options are best
    results = example.evolve(space, fitness, population=4, cycles=40, tournament=2, rng=random.Random(0))
    assert len(calls) == len(set(calls)) == len(results)
    assert min(results.values()) < min(list(results.values())[:4])  # mutation found better points
