"""What README.md, docs/*.md and examples/ say, checked against what the tool does today.

tests/test_readme.py runs the README's code blocks; this file checks the prose around them:
figures quoted in sentences, error messages quoted as text, option lists, defaults, links and
the Code layout table. Each test reads the claim from the page, so an edit to the page or to
the code that makes them disagree fails here.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

import incdsl
from incdsl.cli import build_parser, main
from doclib import fenced

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DRAWING = (ROOT / "docs" / "drawing.md").read_text(encoding="utf-8")
TRAINING = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
PAGES = {"README.md": README, "docs/drawing.md": DRAWING, "docs/training.md": TRAINING}


def number(text: str) -> int:
    return int(text.replace(",", ""))


def prose(text: str) -> str:
    """A page's text with line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


# --- figures ------------------------------------------------------------------------------------

def test_quick_start_figures_are_inception_v4s_costs():
    m = re.search(r"Inception-v4's cost per block \(([\d,]+) parameters,\s+([\d,]+) multiply-adds", README)
    total = incdsl.count_costs(incdsl.load(str(ROOT / "specs/inception_v4.inc"))).total
    assert (number(m[1]), number(m[2])) == (total.params, total.macs)


def test_inception_v4_layer_count():
    m = re.search(r"\(Inception-v4 has ([\d,]+)\)", README)
    assert number(m[1]) == len(incdsl.load(str(ROOT / "specs/inception_v4.inc")).layers)


def test_the_cifar_zoo_count():
    m = re.search(r"the survey's (\d+) CIFAR-10 configurations", README)
    assert int(m[1]) == len(list((ROOT / "specs/zoo/cifar").glob("*.inc")))


def test_the_search_example_figures(tmp_path, capsys):
    """'630 points, 5 choices here' and '80 points here': what `incdsl check` says of the space shown."""
    block = next(b for b in fenced(README, "text") if "network v4_space" in b)
    shutil.copytree(ROOT / "specs", tmp_path / "specs")  # its includes, and the tree's .incdsl-root
    path = tmp_path / "specs" / "search" / "readme_space.inc"
    path.write_text(block)
    text = prose(README)
    points, choices = re.search(r"exact size of the space \(([\d,]+) points, (\d+) choices here\)", text).groups()
    checked = re.search(r"random points \(seed 0\): (\d+) points here", text)[1]
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"a search space of {points} points, {choices} choices" in out
    assert re.search(rf"checked\s+{checked} points", out)


def test_the_inception_space_figures():
    m = re.search(r'incdsl\.space\("specs/search/inception_space\.inc"\)\s+# ([\d.]+)e(\d+) points, (\d+) choices',
                  README)
    space = incdsl.space(str(ROOT / "specs/search/inception_space.inc"))
    assert f"{space.size:.2e}" == f"{m[1]}e+{m[2]}" and len(space.choices) == int(m[3])


def test_mini_space_holds_mini_inception_as_its_last_point():
    """examples/mini_space.inc: 'mini_inception itself is the largest point (the last option of
    every choice); the first options give a network with a third of its parameters'."""
    header = (ROOT / "examples/mini_space.inc").read_text(encoding="utf-8")
    assert "mini_inception itself is the largest point (the last option of" in header
    space = incdsl.space(str(ROOT / "examples/mini_space.inc"))
    last = space.cost([len(c.options) - 1 for c in space.choices])
    mini = incdsl.count_costs(incdsl.load(str(ROOT / "examples/mini_inception.inc"))).total
    assert (last.params, last.macs) == (mini.params, mini.macs)
    first = space.cost([0] * len(space.choices))
    assert 0.25 < first.params / mini.params < 0.4


def test_mini_inception_shape_comments():
    """The `# 64x16x16` comments on examples/mini_inception.inc's labelled lines are its shapes."""
    path = ROOT / "examples/mini_inception.inc"
    net = incdsl.load(str(path))
    commented = re.findall(r" as (\w+)\s+# (\d+)x(\d+)x(\d+)", path.read_text(encoding="utf-8"))
    assert len(commented) >= 4
    for label, c, h, w in commented:
        scope = [n for n in net.layers if n == label or n.startswith(label + "/")]
        assert net.graph.nodes[scope[-1]]["shape"] == (int(c), int(h), int(w)), label


# --- messages quoted in the README --------------------------------------------------------------

BAD_INC = ("network bad:\n    input 384x35x35\n    inception_a\nblock inception_a:\n    concat:\n"
           "        branch: conv 1x1 96\n        branch: conv 3x3 96 /2 V\n")


def test_the_errors_example_is_what_check_prints(tmp_path, monkeypatch, capsys):
    shown = next(b for b in fenced(README, "text") if b.startswith("bad.inc:"))
    monkeypatch.chdir(tmp_path)
    Path("bad.inc").write_text(BAD_INC)
    assert main(["check", "bad.inc"]) == 1
    assert capsys.readouterr().err == shown


@pytest.mark.parametrize("body, quoted", [
    ("repeat 3 branch: conv 1x1 8", ["unexpected `branch` in `repeat`", "`repeat 3:` or `repeat n as i:`"]),
    ("residual scale=0.2:\n        conv 1x1 3", ["`residual(scale = 0.17, act = relu):`"]),
    ("conv 3x3 32 -> repeat 2: conv 1x1 8", ["`repeat` cannot follow `->` in a chain"]),
])
def test_quoted_syntax_errors(body, quoted, tmp_path, capsys):
    path = tmp_path / "s.inc"
    path.write_text(f"network n:\n    input 3x32x32\n    {body}\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    for phrase in quoted:
        assert phrase.strip("`") in err, phrase
        assert phrase in prose(README).replace("`` ", "").replace(" ``", ""), phrase


def test_the_stop_after_line(tmp_path):
    """docs/training.md quotes the line `--stop-after` ends with; the loop writes that form."""
    loop = (ROOT / "incdsl/train/loop.py").read_text(encoding="utf-8")
    line = re.search(r"\n    (mini_inception: stopped after epoch .*)\n", TRAINING)[1]
    assert re.fullmatch(r"mini_inception: stopped after epoch 1 of 15, [\d.]+ s in all; continue with: "
                        r"incdsl train --resume runs/mini", line)
    assert 'stopped after epoch {len(run.history)} of {run.recipe.epochs}, {total_seconds:.1f} s "' in loop
    assert 'f"in all{resumed_part}; continue with: {resume_command(config.out, ctx.world)}"' in loop


# --- the language examples ----------------------------------------------------------------------

def readme_block(name: str) -> str:
    """The definition of block `name` as a README text block shows it (up to its first unindented line)."""
    block = next(b for b in fenced(README, "text") if b.startswith(f"block {name}"))
    lines = block.splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line and not line[0].isspace()), len(lines))
    return "\n".join(lines[:end]) + "\n"


@pytest.mark.parametrize("name, input, call, output", [
    ("reduction_a", "384x35x35", "reduction_a(k = 192, l = 224, m = 256, n = 384)", (1024, 17, 17)),
    ("pyramid_unit", "16x32x32", "pyramid_unit(0, 3)", (237, 32, 32)),
    ("pyramid_unit", "16x32x32", "pyramid_unit(1, 3, stride = 2)", (253, 16, 16)),
    ("pyramid_unit", "16x32x32", "pyramid_unit(2, 1, alpha = 300)", (1121, 32, 32)),
    ("rir_unit", "32x16x16", "rir_unit(16)", (32, 16, 16)),
    ("fractal", "3x32x32", "fractal(3, 16)", (16, 32, 32)),
])
def test_readme_blocks_lower(name, input, call, output, tmp_path):
    path = tmp_path / "x.inc"
    path.write_text(f"network n:\n    input {input}\n    {call}\n\n" + readme_block(name))
    assert incdsl.load(str(path)).output_shape == output


def test_fractal_claims(tmp_path):
    """`fractal(3, f)` ends in one mean of three columns; `fractal(60, 64)` is refused before lowering."""
    path = tmp_path / "x.inc"
    path.write_text("network n:\n    input 3x32x32\n    fractal(3, 16)\n\n" + readme_block("fractal"))
    net = incdsl.load(str(path))
    last = net.layers[-1]
    assert net.graph.nodes[last]["op"] == "mean" and net.graph.in_degree(last) == 3
    assert "`fractal(60, 64)` (2^60 layers) is refused before anything is lowered" in prose(README)
    path.write_text("network n:\n    input 3x32x32\n    fractal(60, 64)\n\n" + readme_block("fractal"))
    with pytest.raises(incdsl.IncdslError, match="the limit is 100,000"):
        incdsl.load(str(path))


# --- documented defaults and limits -------------------------------------------------------------

def test_documented_limits_are_the_codes():
    from incdsl.ir.limits import MAX_CALL_DEPTH, MAX_LAYERS, MAX_NESTING
    from incdsl.render.graphviz import DOT_TIMEOUT
    from incdsl.render.style import DrawOptions
    text = prose(README)
    assert f"at most {MAX_LAYERS:,} layers" in text
    assert f"stops at {MAX_CALL_DEPTH} calls (or {MAX_NESTING} nested bodies)" in text
    assert f"more than {DrawOptions.max_nodes:,} boxes" in prose(README)
    assert f"default {DrawOptions.max_nodes:,}" in DRAWING
    assert f"`dot` is stopped after {DOT_TIMEOUT} s" in text
    assert f"`dot` itself is stopped after {DOT_TIMEOUT} s" in DRAWING
    assert f"(default {DrawOptions.dpi}, for print; 10 to 2400)" in DRAWING


def test_documented_reading_limits_are_the_codes():
    from incdsl.diagnostics import WINDOW
    from incdsl.io.reading import ENV_INCLUDE_PATH, MAX_FILE_BYTES, MAX_TOTAL_BYTES, ROOT_MARKER
    text = prose(README)
    from incdsl.lang.parse import MAX_TOKENS
    mib = (f"{MAX_FILE_BYTES >> 20} MiB ({MAX_TOTAL_BYTES >> 20} MiB for all the files one spec includes, "
           f"which hold at most {MAX_TOKENS:,} tokens together)")
    assert f"a regular file of at most {mib}" in text
    assert f"at most {MAX_TOKENS:,} tokens in all the files of a spec (counted before parsing" in text
    assert f"listed in `{ENV_INCLUDE_PATH}`" in text and f"a file named `{ROOT_MARKER}`" in text
    assert f"a long line as the {WINDOW} columns around the caret" in text


def test_documented_search_limits_are_the_codes():
    from incdsl.ir.limits import NAME_CHARS_PER_LAYER, VALUES_PER_LAYER
    from incdsl.search.choices import MAX_CHOICES, MAX_OPTIONS, MAX_TOTAL_OPTIONS
    from incdsl.search.sampling import CHECK_ALL_LIMIT, CHECK_RANDOM, CHECK_WORK
    text = prose(README)
    assert f"checks every point of a space of up to {CHECK_ALL_LIMIT} points" in text
    assert f"and {CHECK_RANDOM} random points (seed 0)" in text
    assert f"at most about {CHECK_WORK:,} layers in all" in text
    assert (f"at most {MAX_CHOICES:,} choices and {MAX_TOTAL_OPTIONS:,} options in all "
            f"(a `range` at most {MAX_OPTIONS:,})") in text
    assert f"({NAME_CHARS_PER_LAYER} characters a layer)" in text and f"({VALUES_PER_LAYER} a layer)" in text


def test_dpi_range_is_the_codes(capsys):
    for dpi, ok in (("9", False), ("10", True), ("2400", True), ("2401", False)):
        args = ["draw", str(ROOT / "specs/googlenet.inc"), "--dpi", dpi, "--format", "dot", "-o", "-"]
        if ok:
            assert main(args) == 0
        else:
            with pytest.raises(SystemExit) as exc:
                main(args)
            assert exc.value.code == 2
    capsys.readouterr()


def test_checkpoint_table_lists_every_field():
    checkpoint = pytest.importorskip("incdsl.train.checkpoint")
    section = TRAINING.split("## Checkpoint format", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert sorted(documented) == sorted({"format", *checkpoint.FIELDS, *checkpoint.OPTIONAL})


def metrics_fields(text: str) -> set:
    return set(re.findall(r"`?(\w+)`?", text))


def test_metrics_fields_are_a_records(tmp_path):
    """README's and training.md's lists of what a `metrics.jsonl` record holds."""
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    import json
    from incdsl.train.loop import TrainConfig, train
    path = tmp_path / "tiny.inc"
    path.write_text("network tiny(classes = 3):\n    input 1x8x8\n    conv 3x3 4 S -> gap -> flatten -> linear classes\n")
    out = tmp_path / "run"
    config = TrainConfig(data="synthetic", out=str(out), device="cpu", synthetic_size=16, threads=1,
                         overrides={"epochs": 1, "batch_size": 8})
    with open(tmp_path / "progress", "w") as quiet:
        train(incdsl.load(str(path)), config, log=lambda *a, **k: None, stream=quiet)
    record = set(json.loads((out / "metrics.jsonl").read_text().splitlines()[-1]))
    readme = re.search(r"`metrics\.jsonl` \(([^)]*)\)", prose(README))[1]
    training = re.search(r"\| `metrics\.jsonl` \| after every epoch \| one JSON object per epoch: ([^|]*)\|", TRAINING)[1]
    assert metrics_fields(readme) == record
    summary = set(json.loads((out / "summary.json").read_text()))
    documented = re.search(r"\| `summary\.json` \|[^|]*\| ([^|]*)\|", TRAINING)[1]
    assert set(re.findall(r"`(\w+)`", documented)) <= summary
    assert metrics_fields(training) - {"training", "and", "evaluation", "image", "folders", "fp16", "only"} == \
        record | {"skipped_images", "skipped_steps"}


# --- options ------------------------------------------------------------------------------------

def commands() -> dict:
    parser = build_parser()
    return parser.command_parsers


SPEC_OPTIONS = ("--set", "--input", "--include-path", "--max-layers")  # every spec-reading command's
PAGE_OF = {"draw": "docs/drawing.md", "train": "docs/training.md", "eval": "docs/training.md"}


def mentioned(option_strings, page: str) -> bool:
    return any(re.search(re.escape(o) + r"(?![\w-])", page) for o in option_strings)


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_is_documented_on_its_commands_page(name):
    """Each option of `incdsl NAME --help` appears (long or short form) on the page that
    documents the command; the options every spec-reading command takes, in the README."""
    page = PAGE_OF.get(name, "README.md")
    missing = []
    for action in commands()[name]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        where = README if action.option_strings[-1] in SPEC_OPTIONS else PAGES[page]
        if not mentioned(action.option_strings, where):
            missing.append(action.option_strings[-1])
    assert not missing, f"`incdsl {name}` options not in {page}: {missing}"


def test_documented_options_exist():
    """Every `--option` a page shows in an `incdsl COMMAND ...` line is one COMMAND takes."""
    known = {name: {o for a in p._actions for o in a.option_strings} for name, p in commands().items()}
    for page, text in PAGES.items():
        for cmd, rest in re.findall(r"^\s*(?:incdsl|torchrun .*-m incdsl) (\w+) (.*)$", text, re.M):
            if cmd not in known:
                continue
            for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest.split("#")[0]):
                assert option in known[cmd], f"{page}: `incdsl {cmd}` has no option {option}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_has_help(name):
    quiet = [a.option_strings[-1] for a in commands()[name]._actions
             if a.option_strings and not (a.help or "").strip()]
    assert not quiet, f"`incdsl {name}` options without help text: {quiet}"


# --- links and the code layout ------------------------------------------------------------------

@pytest.mark.parametrize("page", sorted(PAGES))
def test_links_and_paths_exist(page):
    text, here = PAGES[page], (ROOT / page).parent
    for link in re.findall(r"\]\(([^)#\s]+)", text):
        if not link.startswith(("http://", "https://")):
            assert (here / link).exists(), f"{page}: link to {link}"
    for path in re.findall(r"`((?:specs|docs|incdsl|tests|benchmarks|examples)/[\w./*<>-]+)`", text):
        if "<" in path:
            continue
        assert list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists(), f"{page}: {path}"


def layout_rows() -> dict:
    section = README.split("## Code layout", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for first, rest in re.findall(r"^\| (`incdsl/[^|]*) \| (.*) \|$", section, re.M):
        for package in re.findall(r"`incdsl/([\w.]+)/?`", first):
            rows[package] = rest
    return rows


def test_code_layout_names_every_package_and_real_files():
    rows = layout_rows()
    packages = {p.name for p in (ROOT / "incdsl").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(rows), f"packages without a row: {sorted(packages - set(rows))}"
    for package, text in rows.items():
        folder = ROOT / "incdsl" / package
        for name in re.findall(r"`(\w+\.(?:py|lark))`", text):
            assert (folder / name).exists(), f"Code layout: incdsl/{package}/{name}"


@pytest.mark.parametrize("package", ["lang", "ir"])
def test_code_layout_lists_every_module_of_the_packages_it_enumerates(package):
    listed = set(re.findall(r"`(\w+\.(?:py|lark))`", layout_rows()[package]))
    present = {p.name for p in (ROOT / "incdsl" / package).iterdir()
               if p.suffix in (".py", ".lark") and p.name != "__init__.py"}
    assert listed == present


def test_only_torch_and_train_import_torch_at_module_level():
    """README: `incdsl/torch/`, with `incdsl/train/`, is the only package that imports torch."""
    import ast
    assert "with `incdsl/train/`, the only package that imports torch" in README
    for path in (ROOT / "incdsl").rglob("*.py"):
        package = path.relative_to(ROOT / "incdsl").parts[0]
        for stmt in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else \
                [stmt.module or ""] if isinstance(stmt, ast.ImportFrom) and not stmt.level else []
            if any(n == "torch" or n.startswith("torch.") for n in names):
                assert package in ("torch", "train"), f"{path.relative_to(ROOT)} imports torch at import time"


# --- the language reference ---------------------------------------------------------------------

def readme_section(title: str) -> str:
    return README.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_every_layer_kind_has_a_row_in_the_layers_table():
    from incdsl.ops.table import LAYER_OPS
    table = readme_section("Layers")
    missing = sorted(name for name in LAYER_OPS if not re.search(rf"`{name}[` ]", table))
    assert not missing, f"layer kinds missing from README's Layers table: {missing}"


def test_every_join_is_shown_in_composition():
    from incdsl.ops.table import OPS
    shown = readme_section("Composition")
    joins = sorted(name for name, op in OPS.items() if op.arity != 1 and name != "input")
    assert [j for j in joins if not re.search(rf"^\s*{j}[(:]|`{j}[(:]", shown, re.M)] == []


def test_the_activations_listed_are_the_tables():
    from incdsl.ops.activation import ACTIVATIONS
    listed = re.search(r"^Activations: `([^`]*)`", README, re.M)[1].split()
    assert listed == list(ACTIVATIONS)


def test_eval_lists_confusions_above_the_documented_class_count():
    from incdsl.commands.eval import MAX_MATRIX_CLASSES
    assert f"Above {MAX_MATRIX_CLASSES} classes the text lists the most frequent confusions" in prose(TRAINING)


def test_every_extra_is_in_the_install_table():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    table = README.split("| you want | install |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r'pip install -e "\.\[(\w+)\]"', table))
    assert listed == set(extras) - {"test"}


# --- the code blocks of docs/drawing.md ---------------------------------------------------------

def test_drawing_python_block_runs(monkeypatch):
    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz `dot`")
    (block,) = fenced(DRAWING, "python")
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "docs/drawing.md", "exec"), scope)
    assert scope["text"].startswith("digraph") and scope["pdf"].startswith(b"%PDF")


@pytest.mark.slow
def test_drawing_sh_blocks_run(tmp_path):
    """Every command of docs/drawing.md, in a copy of specs/ (the last block writes into docs/)."""
    import subprocess
    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz `dot`")
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    (tmp_path / "docs").mkdir()
    script = f'incdsl() {{ "{sys.executable}" -m incdsl "$@"; }}\nset -e\n' + "\n".join(fenced(DRAWING, "sh"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("v4.svg", "a.pdf", "v3.png", "g.svg", "v4.dot", "docs/inception_v4_network.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
