"""Every code block of README.md runs as written.

```bash blocks run in a temporary copy of `specs/` and `examples/` with `incdsl` and `python3`
bound to this checkout; ```python blocks run there too. ```text blocks that hold a whole spec
(a `network`) must load; a block after `<!-- excerpt: PATH -->` must also appear, line by line
(comments aside), in PATH. Markers in HTML comments just before a block:

    <!-- skip-test: REASON -->   not run here (needs what CI lacks: a download, GPUs, ImageNet)
    <!-- test: slow -->          run only with -m slow
    <!-- needs: dot, torch -->   skipped where a program or module is missing
    <!-- check-in: DIR -->       load a text spec as if it were a file in DIR (for its includes)
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import incdsl
from doclib import Block, readme_blocks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"





BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _missing(needs: str) -> list[str]:
    missing = []
    for need in (n.strip() for n in needs.split(",") if n.strip()):
        if need == "dot":
            if shutil.which("dot") is None:
                missing.append("Graphviz `dot`")
        elif importlib.util.find_spec(need) is None:
            missing.append(need)
    return missing


def _params(lang: str):
    out = []
    for b in BLOCKS:
        if b.lang != lang:
            continue
        marks = [pytest.mark.slow] if b.markers.get("test") == "slow" else []
        if "skip-test" in b.markers:
            marks.append(pytest.mark.skip(reason="README says: " + b.markers["skip-test"]))
        out.append(pytest.param(b, id=b.id, marks=marks))
    return out


@pytest.fixture
def workdir(tmp_path):
    """specs/ and examples/ copied; `incdsl` and `python3` on PATH run this checkout."""
    for name in ("specs", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    for name, args in (("incdsl", "-m incdsl"), ("python3", "")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args} "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    return tmp_path, env


def _run(block: Block, workdir, argv: list[str]):
    missing = _missing(block.markers.get("needs", ""))
    if missing:
        pytest.skip("needs " + ", ".join(missing))
    cwd, env = workdir
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (f"README.md:{block.line}: block failed (exit {proc.returncode})\n"
                                  f"{block.text}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.parametrize("block", _params("bash"))
def test_bash_block_runs(block, workdir):
    script = workdir[0] / "block.sh"
    script.write_text("set -euo pipefail\n" + block.text)
    _run(block, workdir, ["bash", str(script)])


@pytest.mark.parametrize("block", _params("python"))
def test_python_block_runs(block, workdir):
    script = workdir[0] / "block.py"
    script.write_text(block.text)
    _run(block, workdir, [sys.executable, str(script)])


def _code_lines(text: str) -> list[str]:
    """Lines without comments and trailing blanks; blank lines dropped."""
    out = []
    for line in text.splitlines():
        code = re.sub(r"\s*#.*$", "", line).rstrip()
        if code:
            out.append(code)
    return out


TEXT_SPECS = [pytest.param(b, id=b.id) for b in BLOCKS if b.lang == "text" and re.search(r"^network ", b.text, re.M)]
EXCERPTS = [pytest.param(b, id=b.id) for b in BLOCKS if "excerpt" in b.markers]


def test_blocks_are_found():
    langs = [b.lang for b in BLOCKS]
    assert langs.count("bash") >= 5 and langs.count("python") >= 3 and TEXT_SPECS and EXCERPTS
    assert all(b.lang in ("bash", "python", "text") for b in BLOCKS), "a block without a known language"


@pytest.mark.parametrize("block", TEXT_SPECS)
def test_text_spec_loads(block, tmp_path):
    where = block.markers.get("check-in") or os.path.dirname(block.markers.get("excerpt", "specs/x"))
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    path = tmp_path / where / "readme_example.inc"
    path.write_text(block.text)
    if "choice(" in block.text:
        incdsl.space(str(path))
    else:
        incdsl.load(str(path))


@pytest.mark.parametrize("block", EXCERPTS)
def test_excerpt_matches_its_file(block):
    source = _code_lines((ROOT / block.markers["excerpt"]).read_text(encoding="utf-8"))
    shown = _code_lines(block.text)
    start = next((i for i in range(len(source)) if source[i:i + len(shown)] == shown), None)
    assert start is not None, f"README.md:{block.line}: the block differs from {block.markers['excerpt']}"


def test_conventions_table_is_current():
    """The README's table of what each counter prints equals `count_convention` for every shipped spec."""
    from incdsl.report.conventions import CONVENTIONS, count_convention
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- conventions-table -->", 1)[1].strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["spec", *CONVENTIONS]
    rows = {}
    for line in table[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = [int(c.replace(",", "")) for c in cells[1:]]
    shipped = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.inc"), *ROOT.glob("specs/variants/*.inc")])
    assert sorted(rows) == shipped
    for spec, numbers in rows.items():
        net = incdsl.load(str(ROOT / spec))
        costs = incdsl.count_costs(net)
        assert numbers == [count_convention(net, costs, name) for name in CONVENTIONS], spec
