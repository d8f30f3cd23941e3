"""benchmarks/layout.py: both layouts timed side by side, the same outputs, a summary line.
No timing is asserted (machines here are noisy)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from benchlib import load_benchmark  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def layout():
    return load_benchmark("layout")


def test_layout_times_both_layouts_of_each_spec_and_their_outputs_agree(layout, capsys):
    specs = ["tests/data/torch_tiny.inc", "specs/zoo/cifar/nin.inc"]
    assert layout.main([*specs, "--iters", "1", "--warmup", "0", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and not line.startswith("| spec |")]
    assert [r[0].strip() for r in rows] == specs
    for spec, size, contiguous, channels_last, speedup, diff in ([c.strip() for c in r] for r in rows):
        assert size == "3x32x32"
        ms = float(contiguous.replace(",", "")), float(channels_last.replace(",", ""))
        assert all(t > 0 for t in ms)
        low, high = (ms[0] - 0.05) / (ms[1] + 0.05), (ms[0] + 0.05) / max(ms[1] - 0.05, 1e-9)  # cells round to 0.1
        assert low - 0.005 <= float(speedup.rstrip("x")) <= high + 0.005
        assert float(diff) < 1e-5  # the layout changes no value beyond rounding
    assert re.search(r"channels_last faster for \d of 2 specs \(batch 2\)", out)
    assert "level infer, 1 thread(s), 1 iterations (median)" in out


def test_layout_defaults_to_every_shipped_network(layout):
    specs = layout.shipped_specs()
    assert "specs/inception_v4.inc" in specs and "specs/zoo/resnet50.inc" in specs
    assert "specs/zoo/cifar/nin.inc" in specs
    assert not any("/search/" in s or "/lib/" in s or "/variants/" in s for s in specs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_layout_without_cuda_says_so_and_exits_0(layout, capsys):
    assert layout.main(["tests/data/torch_tiny.inc", "--device", "cuda"]) == 0
    assert "no CUDA device" in capsys.readouterr().err
