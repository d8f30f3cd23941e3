"""benchmarks/runtime.py (the speed table against timm/torchvision) and benchmarks/gpu.sh (the
one-command GPU check): they run, print what they promise and keep in step with each other.

No timings are asserted: only that the table has its columns and sane numbers.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import incdsl  # noqa: E402
from benchlib import HEADER, QUICK, load_benchmark, runtime, table_rows, tiny  # noqa: E402,F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
GPU_SH = ROOT / "benchmarks" / "gpu.sh"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def fake_optimize(monkeypatch, seen: list):
    """Give incdsl.to_torch an `optimize=` argument (ignored: every level builds the plain model)."""
    real = incdsl.to_torch

    def to_torch(network, *, optimize="none", **kwargs):
        seen.append(optimize)
        return real(network, **kwargs)
    monkeypatch.setattr(incdsl, "to_torch", to_torch)


# --- runtime.py ---------------------------------------------------------------------------

def test_runtime_prints_a_table_and_writes_json(tiny, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "accepts_optimize", lambda: False)  # a version without optimize=
    out = tmp_path / "rt.json"
    assert tiny.main([*QUICK, "--levels", "none,train,infer", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "level train: not available in this version" in text
    assert "level infer: not available in this version" in text
    rows = table_rows(text)
    assert [r[:4] for r in rows] == [["tiny", "infer", "eager", "none"], ["tiny", "train", "eager", "none"]]
    for network, mode, how, level, ours, ref, ratio, speedup, diff, reference in rows:
        assert float(ours.replace(",", "")) > 0 and float(ref.replace(",", "")) > 0
        assert float(ratio) > 0 and speedup.endswith("x")
        assert float(diff) == 0 and reference == "incdsl tiny"  # the reference's weights, loaded
    data = json.loads(out.read_text())
    assert data["levels"] == ["none"] and data["unavailable_levels"] == ["train", "infer"] and data["complete"]
    for r in data["rows"]:
        assert r["speedup"] == pytest.approx(1 / r["ratio"]) and r["ours_img_s"] == pytest.approx(2 / r["ours_s"])


@pytest.mark.slow
def test_runtime_googlenet_on_cpu(runtime, capsys):
    argv = ["--device", "cpu", "--batch", "1", "--iters", "1", "--warmup", "0", "--networks", "googlenet"]
    assert runtime.main(argv) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [r[1] for r in rows] == ["infer", "train"]
    assert all(float(r[6]) > 0 and float(r[8]) <= 1e-4 and r[9] == "torchvision googlenet" for r in rows)


def test_runtime_times_every_level_when_to_torch_takes_optimize(tiny, capsys, monkeypatch):
    seen = []
    fake_optimize(monkeypatch, seen)
    assert tiny.accepts_optimize()
    assert tiny.main([*QUICK, "--levels", "none,infer,train"]) == 0
    text = capsys.readouterr().out
    assert "not available" not in text
    rows = table_rows(text)
    assert [(r[1], r[3]) for r in rows] == [("infer", "none"), ("infer", "infer"), ("infer", "train"),
                                            ("train", "none"), ("train", "infer"), ("train", "train")]
    timed = [r for r in rows if r[1:4:2] != ["train", "infer"]]
    assert all(float(r[6]) > 0 for r in timed)
    [skipped] = [r for r in rows if r[1:4:2] == ["train", "infer"]]  # batch-norm folding holds in eval only
    assert skipped[6] == "-" and "inference-only level: not timed in training" in skipped[9]
    assert seen.count("infer") == 1 and seen.count("train") == 1  # level none builds as before, without the argument


def test_runtime_reports_a_level_that_fails_and_times_the_rest(tiny, capsys, monkeypatch):
    real = incdsl.to_torch

    def to_torch(network, *, optimize="none", **kwargs):
        if optimize == "train":
            raise NotImplementedError("no horizontal fusion yet")
        return real(network, **kwargs)
    monkeypatch.setattr(incdsl, "to_torch", to_torch)
    assert tiny.main([*QUICK, "--modes", "infer", "--levels", "none,train"]) == 0
    none, train = table_rows(capsys.readouterr().out)
    assert float(none[6]) > 0
    assert train[6] == "-" and "error: NotImplementedError: no horizontal fusion yet" in train[9]


def test_runtime_compiled_and_eager_in_one_run(tiny, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)  # no compiler needed
    assert tiny.main([*QUICK, "--modes", "infer", "--exec", "eager", "compile", "--fullgraph"]) == 0
    assert [r[2] for r in table_rows(capsys.readouterr().out)] == ["eager", "compile"]
    assert calls == [{"mode": None, "fullgraph": True}] * 2  # the reference and ours


def test_accepts_optimize_reads_the_signature(runtime, monkeypatch):
    monkeypatch.setattr(incdsl, "to_torch", lambda network, *, seed=None, optimize="none": None)
    assert runtime.accepts_optimize()
    monkeypatch.setattr(incdsl, "to_torch", lambda network, *, seed=None: None)
    assert not runtime.accepts_optimize()


def test_levels_argument(runtime):
    assert runtime.parse_levels("none, infer,none") == ["none", "infer"]
    for bad in ("", "fast", "none,fast"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated list of none, train, infer"):
            runtime.parse_levels(bad)
    with pytest.raises(SystemExit) as info:
        runtime.parser().parse_args(["--levels", "fast"])
    assert info.value.code == 2


def test_table_marks_missing_numbers(runtime):
    row = {"network": "googlenet", "mode": "train", "exec": "compile", "level": "infer", "ours_img_s": None,
           "ref_img_s": None, "ratio": None, "speedup": None, "max_rel_diff": None,
           "reference": "torchvision googlenet", "note": "error: RuntimeError: boom"}
    lines = runtime.table([row]).splitlines()
    assert lines[0] == HEADER and len(lines) == 3
    assert lines[2] == ("| googlenet | train | compile | infer | - | - | - | - | - | "
                        "torchvision googlenet (error: RuntimeError: boom) |")


def test_merge_joins_json_files(runtime, capsys, tmp_path):
    row = {"network": "inception_v4", "mode": "infer", "exec": "eager", "level": "none", "ours_img_s": 3990.0,
           "ref_img_s": 3990.0, "ratio": 1.0, "speedup": 1.0, "max_rel_diff": 0.0, "reference": "timm inception_v4"}
    for i, how in enumerate(("eager", "compile")):
        (tmp_path / f"{i}.json").write_text(json.dumps({"setup": f"setup {how}", "rows": [{**row, "exec": how}]}))
    assert runtime.main(["--merge", str(tmp_path / "0.json"), str(tmp_path / "1.json")]) == 0
    text = capsys.readouterr().out
    assert "- setup eager" in text and "- setup compile" in text
    assert [r[2] for r in table_rows(text)] == ["eager", "compile"]
    assert table_rows(text)[0][4] == "3,990.0"
    assert runtime.main(["--merge", str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


# --- gpu.sh --------------------------------------------------------------------------------

def gpu_sh(*args, env=None):
    return subprocess.run(["bash", str(GPU_SH), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


@needs_bash
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_sh_without_gpu_says_so_and_exits_0():
    done = gpu_sh()
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU here" in done.stdout and "nothing to run" in done.stdout


@needs_bash
def test_gpu_sh_prepare_dry_run_prints_the_download_and_the_device_call():
    done = gpu_sh("--prepare", "--dry-run")
    assert done.returncode == 0, done.stderr
    pip = shlex.split(done.stdout.splitlines()[0])
    assert pip[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(pip)
    assert pip[pip.index("--python-version") + 1] == "3.12"  # the GPU machine's Python
    pins = dict(a.split("==") for a in pip if "==" in a)
    assert {"lark", "networkx", "graphviz", "pytest", "hypothesis", "pluggy", "sortedcontainers"} <= set(pins)
    assert 'carry=[".whl"]' in done.stdout and "bash benchmarks/gpu.sh" in done.stdout
    assert not (ROOT / ".whl.tmp").exists()


@needs_bash
def test_gpu_sh_wheels_cover_the_pure_python_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in wanted}
    pip = shlex.split(gpu_sh("--prepare", "--dry-run").stdout.splitlines()[0])
    pinned = {a.split("==")[0].lower() for a in pip if "==" in a}
    assert names - {"numpy"} <= pinned  # numpy (binary) and torch are on the GPU machine


@needs_bash
def test_gpu_sh_plan_runs_every_part_with_arguments_runtime_accepts(runtime):
    done = gpu_sh("--dry-run")
    assert done.returncode == 0, done.stderr
    plan = {line[1:line.index("]")]: line.split(": ", 1)[1] for line in done.stdout.splitlines()
            if line.startswith("[")}
    assert list(plan) == ["install", "cuda tests", "runtime eager", "runtime cuda-graph", "incdsl train",
                          "runtime compile infer", "runtime compile train", "kernels train"]
    kernels = shlex.split(plan["kernels train"])
    profile = kernels_module().parser().parse_args(kernels[kernels.index("benchmarks/kernels.py") + 1:])
    assert (profile.device, profile.batch, profile.amp, profile.channels_last) == ("cuda", 256, "bf16", True)
    assert (profile.mode, profile.level, profile.network) == ("train", "train", "inception_v4")
    assert "-m cuda" in plan["cuda tests"] and "tests/test_torch_cuda.py" in plan["cuda tests"]
    assert "tests/test_cuda_graph.py" in plan["cuda tests"]
    train = shlex.split(plan["incdsl train"])
    assert train[train.index("--data") + 1] == "synthetic" and "--channels-last" in train
    assert train[train.index("--amp") + 1] == "bf16"
    expect = {  # (levels, exec, modes); under torch.compile level none times like the reference,
        # and compiled training times the levels exact in training
        "runtime eager": (["none", "train", "infer"], ["eager"], ["infer", "train"]),
        "runtime cuda-graph": (["none", "train", "infer"], ["cuda-graph"], ["infer"]),
        "runtime compile infer": (["train", "infer"], ["compile"], ["infer"]),
        "runtime compile train": (["train"], ["compile"], ["train"]),
    }
    for name, (levels, how, modes) in expect.items():
        argv = shlex.split(plan[name])
        args = runtime.parser().parse_args(argv[argv.index("benchmarks/runtime.py") + 1:])
        assert (args.device, args.batch, args.amp, args.channels_last) == ("cuda", 256, "bf16", True)
        assert (args.levels, args.exec, args.modes) == (levels, how, modes) and args.json
    assert sum(int(line.split("cap ")[1].split("s:")[0]) for line in done.stdout.splitlines()
               if line.startswith("[runtime compile")) == 300  # the compile budget, split by mode
    assert train[train.index("--optimize") + 1] == "train"
    skipping = gpu_sh("--dry-run", env={**os.environ, "GPU_SH_SKIP": "tests train"}).stdout
    assert "[cuda tests]" not in skipping and "[incdsl train]" not in skipping and "[runtime eager]" in skipping


@needs_bash
@pytest.mark.parametrize("args, env, message", [
    (["--fast"], {}, "unknown argument '--fast'"),
    ([], {"GPU_SH_BUDGET": "lots"}, "must be whole numbers"),
])
def test_gpu_sh_usage_errors(args, env, message):
    import os
    done = gpu_sh(*args, env={**os.environ, **env})
    assert done.returncode == 2 and done.stderr.startswith("gpu.sh: error: ") and message in done.stderr


# --- benchmarks/kernels.py: kernel time by category, ours against the reference ----------------

def kernels_module():
    return load_benchmark("kernels")


@pytest.mark.parametrize("name, expected", [
    ("cudnn::bn_fw_tr_1C11_singleread_spec_kernel", "batch norm"),
    ("aten::native_batch_norm_backward", "batch norm"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32", "convolution / GEMM"),
    ("aten::mkldnn_convolution", "convolution / GEMM"),
    ("void at::native::(anonymous namespace)::max_pool_forward_nhwc", "pooling"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy", "concatenation / copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::threshold_kernel_impl>", "elementwise"),
    ("Optimizer.step#SGD.step", "optimizer"),
    ("aten::nll_loss_forward", "reduction"),
    ("ncclDevKernel_Broadcast", "other"),
])
def test_kernels_are_put_in_categories_by_name(name, expected):
    assert kernels_module().category(name) == expected


def test_kernels_profiles_both_models_side_by_side(capsys):
    """On the CPU, GoogLeNet at batch 1: one table whose rows add up to its total, and both
    models' largest operators."""
    pytest.importorskip("torchvision")
    kernels = kernels_module()
    assert kernels.main(["--device", "cpu", "--batch", "1", "--network", "googlenet", "--mode", "infer",
                         "--level", "infer", "--warmup", "0", "--steps", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "ms/step" not in line]
    table = [r for r in rows if len(r) == 4 and not r[0].strip().startswith("**")]
    total = next(r for r in rows if len(r) == 4 and r[0].strip() == "**total**")
    ours = sum(float(r[1]) for r in table)
    assert ours == pytest.approx(float(total[1].strip("* ")), abs=0.02 * len(table))
    assert any(r[0].strip() == "convolution / GEMM" and float(r[1]) > 0 and float(r[2]) > 0 for r in table)
    assert "largest, ours:" in out and "largest, reference:" in out


def test_kernels_refuses_an_inference_level_in_training(capsys):
    assert kernels_module().main(["--device", "cpu", "--mode", "train", "--level", "infer"]) == 2
    assert "inference only" in capsys.readouterr().err
