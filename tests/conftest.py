"""Fixtures shared by the test modules: writing specs to disk, failing loads, running the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import incdsl

REPO = Path(__file__).resolve().parent.parent
# Speed is measured in benchmarks/, never in unit tests: no Hypothesis deadline or slowness
# check, which fail on a loaded machine (several workers, a shared CI host), not on a bug.
settings.register_profile("incdsl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("incdsl")

MAX_WORKERS = 4  # each worker imports torch and collects every file: more cost memory, not time


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: pytest without it runs the tests in one process
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most MAX_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def _share_the_cores():
    """Under pytest-xdist, each worker's torch takes its share of the cores (two workers with two
    threads each on two cores spend their time descheduled). Set before torch is imported."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_the_cores()


@pytest.fixture(autouse=True)
def lint_every_load(monkeypatch):
    """Every network a test loads has its IR checked (`ir.lint`), as `--debug` does."""
    from incdsl.ir import network

    original = network.load

    def load(*args, **kwargs):
        kwargs.setdefault("debug", True)
        return original(*args, **kwargs)

    monkeypatch.setattr(network, "load", load)
    monkeypatch.setattr(incdsl, "load", load)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A test that sets torch's thread count (an in-process `train --threads 1`) leaves it as it was:
    float32 sums depend on the thread count, so later tests' numerics would depend on test order.
    Torch is not imported here for tests that never use it."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture
def write_spec(tmp_path):
    """`write_spec(relative_name, text) -> Path`: a spec file under this test's temp dir."""
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def load_error():
    """`load_error(spec, **load_kwargs) -> IncdslError`: the error a spec must fail with."""
    def fail(spec, **kwargs) -> incdsl.IncdslError:
        with pytest.raises(incdsl.IncdslError) as info:
            incdsl.load(spec, **kwargs)
        err = info.value
        assert err.diagnostics and err.render()  # always renders, never raises
        return err
    return fail


@pytest.fixture
def run_incdsl():
    """`run_incdsl(*args, cwd=None) -> CompletedProcess`: `python -m incdsl ARGS` in a new process."""
    def run(*args, cwd=None, timeout=120):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.run([sys.executable, "-m", "incdsl", *map(str, args)], cwd=cwd or REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return run
