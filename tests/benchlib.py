"""benchmarks/runtime.py loaded as a module, with a network `tiny` whose reference is another
build of ours (fixtures), and a reader for its table: shared by the benchmark tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import incdsl

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| network | mode | exec | level | ours img/s | ref img/s | ours/ref | speedup | max rel diff | reference |"
QUICK = ["--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "0", "--networks", "tiny"]


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime():
    return load_benchmark("runtime")


@pytest.fixture
def tiny(runtime, monkeypatch):
    """runtime.py with a network `tiny` (tests/data/torch_tiny.inc, aux head included) whose
    reference is another build of ours: the whole table in well under a second."""
    monkeypatch.setitem(runtime.NETWORKS, "tiny", ("tests/data/torch_tiny.inc", "incdsl tiny"))
    real = runtime.reference
    monkeypatch.setattr(runtime, "reference", lambda name: incdsl.to_torch(
        incdsl.load(str(ROOT / runtime.NETWORKS[name][0])), seed=1) if name == "tiny" else real(name))
    return runtime


def table_rows(text: str) -> list[list[str]]:
    """The data rows of the markdown table in `text`, as lists of cells."""
    lines = text[text.index(HEADER):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows
