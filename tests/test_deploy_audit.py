"""Deployment paths of compiled networks, as a user who ships models takes them: `torch.export`
(fixed and dynamic batch, saved and loaded), `torch.jit.trace`, ONNX (`incdsl compile --onnx`),
`torch.compile(fullgraph=True)` and the standalone source of `incdsl compile -o`.

The default run takes one representative network (tests/data/torch_tiny.inc: fused sibling
convolutions, deferred concatenations, a residual, padded pools, an aux head) through every
path (the `train` level and export with autograd slow); the slow sweep takes every shipped
spec through export and trace at level `infer`, and a few specs through every level and ONNX.
"""
import ast
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.torch.source import generate_source  # noqa: E402
from modellib import SHIPPED, randomise_batch_norm, small  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "data" / "torch_tiny.inc")
LEVELS = ("none", "train", "infer")
# what a compiled file may import: torch, and the standard library modules the layers use
SOURCE_IMPORTS = {"copy", "math", "torch", "torch.nn.functional"}


@pytest.fixture(scope="module")
def tiny():
    return incdsl.load(TINY)


def deployed(net, level):
    """The model at `level` in eval mode, batch norm away from its defaults (so folding it shows)."""
    model = incdsl.to_torch(net, seed=0, optimize=level)
    randomise_batch_norm(model)
    return model.eval()


def eager(model, x):
    with torch.no_grad():
        return model(x)


def batches(net, *sizes):
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(n, *net.input_shape, generator=gen) for n in sizes]


def assert_same(got, want):
    """Equal up to float rounding, measured against the output's scale: with its initial weights a
    deep network's logits can reach 1e8 (ResNet-152 in eval mode), and another batch size or graph
    sums in another order."""
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale)


def export_dynamic(model, x):
    return torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})


# --- torch.export ------------------------------------------------------------------------------

# `none` and `infer` (folded or not) in the default run; `train` lies between them, slow
LEVELS_SLOW_TRAIN = [pytest.param(level, marks=pytest.mark.slow) if level == "train" else level for level in LEVELS]


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("level", LEVELS_SLOW_TRAIN)
def test_export_with_a_dynamic_batch_computes_what_eager_does(tiny, level, grad):
    """Exported with autograd on or off (at "infer", off folds batch norm into the graph)."""
    model = deployed(tiny, level)
    x2, x1, x5 = batches(tiny, 2, 1, 5)
    with torch.set_grad_enabled(grad):
        program = export_dynamic(model, x2)
    for x in (x2, x1, x5):
        assert_same(program.module()(x), eager(model, x))


def test_an_exported_program_saves_and_loads(tiny):
    model = deployed(tiny, "infer")
    (x,) = batches(tiny, 3)
    with torch.no_grad():
        program = export_dynamic(model, x)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    assert_same(torch.export.load(buffer).module()(x), eager(model, x))


# --- torch.jit.trace ---------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS_SLOW_TRAIN)
def test_jit_trace_passes_its_own_check_with_autograd_on_or_off(tiny, level):
    """`torch.jit.trace` checks a trace by tracing again without autograd; at "infer" the folded
    batch norm (used without autograd) made the two graphs differ, and the trace failed."""
    model = deployed(tiny, level)
    x2, x3 = batches(tiny, 2, 3)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; it still works
            traced = torch.jit.trace(model, (x2,))  # check_trace on, as by default
        assert_same(traced(x3), eager(model, x3))  # the traced batch size is not baked in


def test_jit_script_is_not_supported(tiny):
    """`torch.jit.script` cannot compile the layers (keyword-only `defer`, optional buffers); it
    is deprecated, and docs/deploy.md sends users to torch.export or torch.jit.trace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):
            torch.jit.script(incdsl.to_torch(tiny, seed=0).eval())


@pytest.mark.parametrize("fixture", ["torch_layers.inc", "zoo_forms.inc"])
def test_every_layer_kind_exports_and_traces(fixture):
    """The fixtures that hold every layer kind and padding rule, at "infer" (which rewrites most)."""
    net = incdsl.load(str(ROOT / "tests" / "data" / fixture))
    model = deployed(net, "infer")
    x2, x3 = batches(net, 2, 3)
    with torch.no_grad():
        program = export_dynamic(model, x2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, (x2,))
    want = eager(model, x3)
    assert_same(program.module()(x3), want)
    assert_same(traced(x3), want)


# --- ONNX --------------------------------------------------------------------------------------

def test_onnx_export_leaves_the_model_and_the_random_state_alone(tiny):
    """`export_onnx` exports in eval mode but gives the model back in the mode it was in, and draws
    its example input from its own generator, so a training loop around it is undisturbed."""
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    from incdsl.torch.onnx import export_onnx
    model = incdsl.to_torch(tiny, seed=0, optimize="infer").train()
    state = torch.get_rng_state()
    data = export_onnx(model, tiny.input_shape)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), state)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)


@pytest.mark.slow  # an ONNX export in a fresh process: ~10 s
def test_cli_onnx_at_level_infer_checks_and_runs_in_onnxruntime(tiny, tmp_path, run_incdsl):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    proc = run_incdsl("compile", TINY, "--optimize", "infer", "--onnx", out, "--seed", "3", timeout=600)
    assert proc.returncode == 0, proc.stderr
    onnx.checker.check_model(str(out), full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = incdsl.to_torch(tiny, seed=3, optimize="infer").eval()
    for x in batches(tiny, 1, 4):
        (got,) = session.run(None, {"x": x.numpy()})
        assert_same(torch.from_numpy(got), eager(model, x))


# --- the standalone source ---------------------------------------------------------------------

def compiled_body(text: str) -> str:
    """The generated part of a compiled file: what follows the copied layers."""
    return text[text.index("# --- incdsl layers: end"):]


def unused_names(text: str) -> list[str]:
    """Module-level imports that nothing reads (pyflakes' first complaint), without pyflakes."""
    tree = ast.parse(text)
    bound = {(a.asname or a.name).split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             for a in node.names}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    read |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    return sorted(bound - read)


@pytest.mark.parametrize("level", LEVELS)
def test_compiled_source_is_clean_python(tiny, level):
    """No unused import or undefined name (pyflakes when installed), and only torch imported."""
    text, _, _ = generate_source(tiny, optimize=level)
    compile(text, "tiny.py", "exec")
    imports = {a.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom)}
    assert imports <= SOURCE_IMPORTS
    assert unused_names(text) == []
    try:
        from pyflakes.api import check
        from pyflakes.reporter import Reporter
    except ImportError:
        return
    out = io.StringIO()
    assert check(text, "tiny.py", Reporter(out, out)) == 0, out.getvalue()


@pytest.mark.parametrize("level", ["train", "infer"])
def test_compiled_class_attributes_read_like_hand_written_code(tiny, level):
    """Every method follows a blank line (the network class's `optimize_level` ran into its
    `__init__`), and each fusion group of a `fusions` table is a line of its own."""
    text, _, _ = generate_source(tiny, optimize=level)
    lines = compiled_body(text).splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("def ") and not lines[i - 1].lstrip().startswith(("class ", '"""')):
            assert lines[i - 1] == "", f"no blank line before {line.strip()!r}: {lines[i - 1]!r}"
    tables = [i for i, line in enumerate(lines) if line.strip().startswith("fusions = ")]
    assert tables
    for i in tables:
        assert lines[i].strip() == "fusions = (" and lines[i + 1].strip().startswith("('fused")


def test_compiled_file_needs_only_torch(tiny, tmp_path):
    """The file runs in an isolated interpreter where incdsl cannot be imported, and computes
    what `to_torch` computes."""
    path = tmp_path / "tiny_model.py"
    path.write_text(generate_source(tiny, optimize="infer")[0], encoding="utf-8")
    (x,) = batches(tiny, 2)
    torch.save(x, tmp_path / "x.pt")
    script = ("import sys; sys.modules['incdsl'] = None\n"  # as where incdsl is not installed
              "import runpy, torch\n"
              f"g = runpy.run_path({str(path)!r})\n"
              "with torch.no_grad():\n"
              "    torch.save(g['Tiny'](seed=0).eval()(torch.load(sys.argv[1])), sys.argv[2])\n")
    proc = subprocess.run([sys.executable, "-I", "-c", script, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    want = eager(incdsl.to_torch(tiny, seed=0, optimize="infer").eval(), x)
    assert torch.equal(torch.load(tmp_path / "y.pt"), want)


def test_compiled_file_is_the_same_under_any_hash_seed(tmp_path):
    """Byte-identical across runs and PYTHONHASHSEED values (set and dict orders never leak)."""
    outs = []
    for seed in ("0", "4242"):
        out = tmp_path / f"m{seed}.py"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "incdsl", "compile", TINY, "--optimize", "infer", "-o", str(out)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


# --- every shipped spec (slow) -----------------------------------------------------------------

def sweep_paths(net, level):
    """`torch.export` without autograd (where `infer` folds batch norm) and `jit.trace` of `net`
    at `level` in eval mode, each compared with eager; both with autograd are the default run's
    (tests above, on the fixtures of every layer kind)."""
    model = deployed(net, level)
    x2, x1, x3 = batches(net, 2, 1, 3)
    with torch.no_grad():
        program = export_dynamic(model, x2)
    for x in (x2, x1, x3):
        assert_same(program.module()(x), eager(model, x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x2,))
    assert_same(traced(x3), eager(model, x3))


# Every spec at level `infer`, the level with every rewrite; `none` and `train`, and ONNX
# (about 10 s an export), for a few specs of different families: the whole product took over
# an hour here. `torch.compile(fullgraph=True)` of every spec is tests/test_optimize.py's.
FEW = {"specs/googlenet.inc", "specs/zoo/cifar/fractalnet20.inc", "specs/zoo/mobilenet_v3_small.inc"}
SWEEP = [(path, level) for path in SHIPPED for level in LEVELS
         if level == "infer" or Path(path).relative_to(ROOT).as_posix() in FEW]


@pytest.mark.slow
@pytest.mark.parametrize("path, level", SWEEP, ids=lambda v: os.path.relpath(v, ROOT) if os.sep in str(v) else v)
def test_every_shipped_spec_deploys(path, level):
    """torch.export (dynamic batch) and torch.jit.trace; for a few specs, ONNX checked and run
    in onnxruntime where installed."""
    net = small(path)
    sweep_paths(net, level)
    if Path(path).relative_to(ROOT).as_posix() not in FEW:
        return
    try:
        import onnx
        import onnxruntime as ort
        import onnxscript  # noqa: F401
    except ImportError:
        return
    from incdsl.torch.onnx import export_onnx
    model = deployed(net, level)
    data = export_onnx(model, net.input_shape)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for x in batches(net, 1, 3):
        assert_same(torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), eager(model, x))


# --- docs/deploy.md ----------------------------------------------------------------------------

@pytest.mark.slow  # a compile in a fresh process and an export: ~12 s
def test_deploy_page_commands_run_as_written(tmp_path, monkeypatch):
    """The page's Python block and its `compile -o` command, in a folder that links to specs/."""
    from doclib import readme_blocks
    blocks = readme_blocks((ROOT / "docs" / "deploy.md").read_text(encoding="utf-8"))
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    (source,) = [b for b in blocks if b.lang == "bash" and " -o " in b.text]
    args = source.text.split()[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "incdsl", *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "class Nin(IncdslNet)" in (tmp_path / "nin.py").read_text(encoding="utf-8")
    (code,) = [b for b in blocks if b.lang == "python"]
    exec(compile(code.text, "docs/deploy.md", "exec"), {})
    assert (tmp_path / "nin.pt2").is_file()
