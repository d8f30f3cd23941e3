"""`incdsl compile`: standalone source that builds the same module as `to_torch`, and ONNX export.

The generated file must import nothing but torch, define one class per block configuration,
and give the same state-dict keys, shapes, values and outputs as `incdsl.to_torch` for the same
seed. `tests/data/torch_tiny.expected.py` is the golden source of `torch_tiny.inc`; after an
intended change to the generator, rewrite it with
`python -m incdsl compile tests/data/torch_tiny.inc -o tests/data/torch_tiny.expected.py`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import incdsl
from incdsl.torch.source import generate_source
from modellib import import_file

DATA = Path(__file__).resolve().parent / "data"
SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILES = sorted(p.relative_to(SPECS).as_posix() for p in [*SPECS.glob("*.inc"), *SPECS.glob("variants/*.inc")])


def imports(text: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0])
    return found


def test_golden_source_of_the_tiny_spec():
    text, cls, _ = generate_source(incdsl.load(str(DATA / "torch_tiny.inc")))
    assert cls == "Tiny"
    assert text == (DATA / "torch_tiny.expected.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SPEC_FILES)
def test_source_is_standalone_python(name):
    text, cls, paths = generate_source(incdsl.load(str(SPECS / name)))
    tree = ast.parse(text)  # valid Python
    assert imports(text) <= {"copy", "math", "torch"}  # torch and the standard library only
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert cls in classes and len(classes) == len(set(classes))
    assert "incdsl" not in imports(text)


def test_blocks_share_a_class_with_constructor_parameters():
    text, _, _ = generate_source(incdsl.load(str(SPECS / "googlenet.inc")))
    tree = ast.parse(text)
    inits = {n.name: [a.arg for a in f.args.args[1:]] for n in tree.body if isinstance(n, ast.ClassDef)
             for f in n.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"}
    # the nine Inception modules of GoogLeNet are one class, their filter counts its arguments
    assert inits["Inception"] == ["in_channels", "n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj"]
    assert text.count("= Inception(") == 9


def test_cli_writes_source_that_builds_the_same_module(tmp_path, run_incdsl):
    torch = pytest.importorskip("torch")
    out = tmp_path / "tiny_model.py"
    proc = run_incdsl("compile", DATA / "torch_layers.inc", "-o", out, "--class-name", "LayersNet")
    assert proc.returncode == 0, proc.stderr
    module = import_file(out, "tiny_model_generated")
    ours = module.LayersNet(seed=3).eval()
    ref = incdsl.to_torch(incdsl.load(str(DATA / "torch_layers.inc")), seed=3).eval()
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 33, 33)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    ours.train(), ref.train()
    torch.manual_seed(0)
    la, aux_a = ours(x)
    torch.manual_seed(0)
    lb, aux_b = ref(x)
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    assert len(aux_a) == len(aux_b) == 2
    assert "incdsl" not in vars(module) and "incdsl" not in imports(out.read_text())


@pytest.mark.parametrize("name", SPEC_FILES)
def test_generated_class_matches_to_torch_keys_and_shapes(name, tmp_path):
    torch = pytest.importorskip("torch")
    net = incdsl.load(str(SPECS / name))
    text, cls, _ = generate_source(net)
    path = tmp_path / "model.py"
    path.write_text(text)
    module = import_file(path, f"gen_{abs(hash(name))}")
    with torch.device("meta"):
        a = getattr(module, cls)().state_dict()
        b = incdsl.to_torch(net).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


def test_generated_inception_v4_computes_what_to_torch_computes(tmp_path):
    torch = pytest.importorskip("torch")
    net = incdsl.load(str(SPECS / "inception_v4.inc"), input=(3, 75, 75))
    text, cls, _ = generate_source(net)
    (tmp_path / "v4.py").write_text(text)
    ours = getattr(import_file(tmp_path / "v4.py", "gen_v4"), cls)(seed=7).eval()
    ref = incdsl.to_torch(net, seed=7).eval()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_writing_source_does_not_import_torch(tmp_path):
    import subprocess
    import sys
    probe = ("import sys\nfrom incdsl.cli import main\ncode = main(sys.argv[1:])\n"
             "print('TORCH', 'torch' in sys.modules)\nsys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", probe, "compile", str(DATA / "torch_tiny.inc"), "-o",
                           str(tmp_path / "m.py")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout and (tmp_path / "m.py").exists()


def test_cli_output_to_stdout_and_errors(tmp_path, run_incdsl):
    proc = run_incdsl("compile", DATA / "torch_tiny.inc")
    assert proc.returncode == 0 and "class Tiny(IncdslNet):" in proc.stdout
    bad = run_incdsl("compile", DATA / "torch_tiny.inc", "--class-name", "not valid", "-o", tmp_path / "x.py")
    assert bad.returncode == 2 and "--class-name" in bad.stderr and not (tmp_path / "x.py").exists()
    spec = tmp_path / "broken.inc"
    spec.write_text("network t:\n    input 3x8x8\n    conv 3x3 8 /2 V -> conv 9x9 4\n")
    proc = run_incdsl("compile", spec, "-o", tmp_path / "y.py")
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "y.py").exists()


def test_cli_set_and_input_reach_the_source(tmp_path, run_incdsl):
    out = tmp_path / "m.py"
    proc = run_incdsl("compile", DATA / "torch_tiny.inc", "--set", "classes=3", "--input", "3x64x64", "-o", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Input 3x64x64, output 3" in text and "nn.Linear(36, 3)" in text


def test_onnx_export_runs_in_onnxruntime():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from incdsl.torch.onnx import export_onnx
    net = incdsl.load(str(DATA / "torch_tiny.inc"))
    model = incdsl.to_torch(net, seed=5).eval()
    session = ort.InferenceSession(export_onnx(model, net.input_shape))
    for batch in (1, 3):  # the batch size is dynamic
        x = torch.randn(batch, 3, 32, 32)
        (y,) = session.run(None, {"x": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), model(x).detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cli_onnx_with_weights(tmp_path, run_incdsl):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net = incdsl.load(str(DATA / "torch_tiny.inc"))
    source = incdsl.to_torch(net, seed=11)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "tiny.onnx"
    proc = run_incdsl("compile", DATA / "torch_tiny.inc", "--onnx", out, "--weights", tmp_path / "w.pt", timeout=600)
    assert proc.returncode == 0, proc.stderr
    x = torch.randn(2, 3, 32, 32)
    (y,) = ort.InferenceSession(str(out)).run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), source.eval()(x).detach(), rtol=1e-4, atol=1e-5)
    other = tmp_path / "other.pt"
    torch.save(incdsl.to_torch(incdsl.load(str(DATA / "torch_layers.inc"))).state_dict(), other)
    bad = run_incdsl("compile", DATA / "torch_tiny.inc", "--onnx", tmp_path / "bad.onnx", "--weights", other)
    assert bad.returncode == 1 and "do not fit" in bad.stderr and not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v4.inc", "variants/googlenet_torchvision.inc"])
def test_onnx_export_of_shipped_specs(name, tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from incdsl.torch.onnx import export_onnx
    net = incdsl.load(str(SPECS / name))
    model = incdsl.to_torch(net, seed=0).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(export_onnx(model, net.input_shape))
    x = torch.randn(1, *net.input_shape)
    (y,) = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), model(x).detach(), rtol=1e-4, atol=1e-4)
