"""Pickling `to_torch` models: `pickle`, `torch.save`/`torch.load`, `copy.deepcopy`, a fresh
interpreter and a 'spawn' worker all give back the same model (classes, state, buffers, mode,
outputs in eval and in training under one seed).

The generated classes pickle by their source (`incdsl.torch.build.rebuild_generated`), the
layer classes by reference to `incdsl.torch.layers`; see incdsl/torch/build.py.
"""
from __future__ import annotations

import copy
import gc
import io
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")

import incdsl  # noqa: E402
from incdsl.torch import build  # noqa: E402
from incdsl.torch.layers import CapturedGraph, ConvBnAct, Mean  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
LEVELS = ("none", "train", "infer")

# small shipped specs (and the test spec with an aux head), each at a size that builds in well under a second
CASES = {
    "tiny_aux": (ROOT / "tests" / "data" / "torch_tiny.inc", {}, None),
    "fractalnet20": (SPECS / "zoo" / "cifar" / "fractalnet20.inc", {"base": 8}, None),  # global drop-path
    "resnet110_sd": (SPECS / "zoo" / "cifar" / "resnet110_sd.inc", {"depth": 20}, None),  # stochastic depth
    "swapout": (SPECS / "zoo" / "cifar" / "swapout_v2_32_w4.inc", {"depth": 8, "k": 1}, None),
    "squeezenet1_1": (SPECS / "zoo" / "squeezenet1_1.inc", {"classes": 10}, (3, 64, 64)),  # dropout
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors gain nothing from a second thread, and on a busy machine OpenMP's threads
    wait on each other (these forwards took 60 times longer)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def network(case: str):
    path, params, size = CASES[case]
    return incdsl.load(str(path), params=params, input=size)


def model_of(case: str, optimize: str = "none", **kwargs):
    return incdsl.to_torch(network(case), seed=0, optimize=optimize, **kwargs)


def via_pickle(model, protocol=pickle.HIGHEST_PROTOCOL):
    return pickle.loads(pickle.dumps(model, protocol=protocol))


def via_torch_save(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def outputs(model, x, train: bool):
    """The forward output (logits, or logits and aux logits) in one mode, from seed 0."""
    model.train(train)
    torch.manual_seed(0)
    with torch.no_grad():
        return model(x)


def assert_same_tensors(a, b):
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b):
            assert_same_tensors(u, v)
    else:
        assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
        assert torch.equal(a, b)


def assert_same_model(original, loaded, x):
    """Same classes, modes, state, buffers (persistent or not) and outputs in eval and training."""
    assert type(loaded).__name__ == type(original).__name__ and loaded is not original
    assert [(n, type(m).__qualname__, m.training) for n, m in loaded.named_modules()] == \
           [(n, type(m).__qualname__, m.training) for n, m in original.named_modules()]
    a, b = original.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    assert_same_tensors(list(a.values()), list(b.values()))
    buffers = dict(original.named_buffers())
    assert list(dict(loaded.named_buffers())) == list(buffers)
    assert_same_tensors(list(buffers.values()), [t for _, t in loaded.named_buffers()])
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in original.parameters()]
    assert getattr(loaded, "node_paths", None) == getattr(original, "node_paths", None)  # to_torch sets it
    assert (loaded.num_classes, loaded.aux_names, loaded.aux_weights) == \
           (original.num_classes, original.aux_names, original.aux_weights)
    mode = original.training
    for train in (False, True, False):  # eval, training (random layers under one seed), eval again
        assert_same_tensors(outputs(original, x, train), outputs(loaded, x, train))
    original.train(mode), loaded.train(mode)


def sample(net, batch: int = 2):
    return torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("optimize", LEVELS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_through_pickle_and_torch_save(case, optimize):
    net = network(case)
    model = incdsl.to_torch(net, seed=0, optimize=optimize)
    x = sample(net)
    model.eval()
    for how in (via_pickle, via_torch_save):
        loaded = how(model)  # now: comparing runs training passes, which move batch-norm statistics
        assert type(loaded) is type(model)  # the cached class: the source ran once in this process
        assert loaded.training is False
        assert_same_model(model, loaded, x)


@settings(max_examples=12, deadline=None)
@given(classes=st.integers(1, 12), num_classes=st.none() | st.integers(0, 12), optimize=st.sampled_from(LEVELS),
       channels_last=st.booleans(), training=st.booleans(), protocol=st.integers(2, pickle.HIGHEST_PROTOCOL),
       batch=st.integers(2, 3))
def test_round_trip_whatever_the_build_options(classes, num_classes, optimize, channels_last, training, protocol,
                                               batch):
    net = incdsl.load(str(CASES["tiny_aux"][0]), params={"classes": classes})
    model = incdsl.to_torch(net, num_classes=num_classes, seed=classes, optimize=optimize).train(training)
    x = sample(net, batch)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    loaded = via_pickle(model, protocol)
    assert loaded.training is training
    assert_same_model(model, loaded, x)


def test_the_reported_case_resnet18_saves_and_loads():
    model = incdsl.to_torch(incdsl.load(str(SPECS / "zoo" / "resnet18.inc"), params={"classes": 10},
                                        input=(3, 32, 32)), seed=0)
    loaded = via_torch_save(model)
    assert loaded.training is True  # to_torch builds in training mode, and the copy keeps it
    assert_same_model(model, loaded, torch.randn(2, 3, 32, 32))


def test_cloudpickle_as_ray_uses_it_round_trips():
    cloudpickle = pytest.importorskip("cloudpickle")
    model = model_of("fractalnet20", "infer")
    data = cloudpickle.dumps(model)
    assert b"rebuild_generated" in data  # by source, not cloudpickle's by-value copy of the classes
    assert_same_model(model, pickle.loads(data), sample(network("fractalnet20")))


def test_the_layer_classes_pickle_by_reference_and_the_network_by_source():
    model = model_of("tiny_aux", "infer")
    data = pickle.dumps(model)
    assert b"incdsl.torch.layers" in data and b"ConvBnAct" in data
    assert b"rebuild_generated" in data
    assert all(isinstance(m, ConvBnAct) for m in model.modules() if type(m).__name__ == "ConvBnAct")
    # the source travels once however many generated instances the model holds
    text = type(model)._incdsl_generated[1].encode()
    assert data.count(text[:200]) == 1


def test_global_drop_path_keeps_one_shared_draw():
    model = model_of("fractalnet20", "train")
    model.keep_column(1)
    loaded = via_pickle(model)
    joins = [m for m in loaded.modules() if isinstance(m, Mean) and m.global_path > 0]
    assert joins and all(m.column_draw is loaded.column_draw for m in joins)
    assert loaded.column_draw.fixed == 1 and loaded.column_draw is not model.column_draw
    assert_same_model(model, loaded, sample(network("fractalnet20")))
    loaded.keep_column(None)
    assert model.column_draw.fixed == 1  # the copies are independent


def test_channels_last_and_double_models_keep_their_layout():
    model = model_of("squeezenet1_1", "infer").to(dtype=torch.float64, memory_format=torch.channels_last)
    loaded = via_torch_save(model.eval())
    conv = next(m.conv for m in loaded.modules() if isinstance(m, ConvBnAct))
    assert conv.weight.dtype == torch.float64 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = sample(network("squeezenet1_1")).to(dtype=torch.float64, memory_format=torch.channels_last)
    assert_same_model(model, loaded, x)


def test_loaded_weights_and_their_report_round_trip():
    source = model_of("tiny_aux")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    for optimize in LEVELS:
        model = incdsl.to_torch(network("tiny_aux"), seed=3, optimize=optimize, weights=source.state_dict())
        loaded = via_pickle(model)
        assert str(loaded.weights_report) == str(model.weights_report)
        assert_same_tensors(list(loaded.state_dict().values()), list(source.state_dict().values()))
        assert_same_model(model, loaded, sample(network("tiny_aux")))


def test_a_loaded_model_trains_and_loads_state_dicts_like_the_original():
    """The hooks of optimize='train'/'infer' (unfused keys, refold on load) survive pickling."""
    model = model_of("tiny_aux", "infer")
    loaded = via_pickle(model)
    other = model_of("tiny_aux")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    for m in (model, loaded):
        m.load_state_dict(other.state_dict())
    x = sample(network("tiny_aux"))
    assert_same_tensors(outputs(model, x, False), outputs(loaded, x, False))
    torch.testing.assert_close(outputs(loaded, x, False), outputs(other, x, False))  # folded: not bit-exact


def test_deepcopy_still_gives_an_independent_model():
    model = model_of("tiny_aux", "train")
    twin = copy.deepcopy(model)
    assert type(twin) is type(model)
    with torch.no_grad():
        next(twin.parameters()).add_(1)
    assert not torch.equal(next(twin.parameters()), next(model.parameters()))


def test_the_source_runs_once_per_process_and_is_not_kept_once_unused(monkeypatch):
    data = pickle.dumps(model_of("swapout", "infer"))
    gc.collect()  # the model above is gone: so is its module
    runs = []
    real = build.load_source
    monkeypatch.setattr(build, "load_source", lambda text, name: runs.append(name) or real(text, name))
    copies = [pickle.loads(data) for _ in range(3)]
    assert len(runs) == 1 and len({type(c) for c in copies}) == 1
    name = type(copies[0]).__module__
    assert name not in sys.modules  # kept out on purpose (see build.py)
    module_count = len(build._modules)
    del copies
    gc.collect()
    assert len(build._modules) < module_count


def test_another_network_of_the_same_name_is_not_confused_with_it():
    small = via_pickle(model_of("swapout"))
    wide = via_pickle(incdsl.to_torch(incdsl.load(str(CASES["swapout"][0]), params={"depth": 8, "k": 2}), seed=0))
    assert type(small).__module__ == type(wide).__module__  # same module name, other sources
    assert type(small) is not type(wide)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in small.parameters())


def test_a_bad_rebuild_call_is_a_clear_unpickling_error():
    model = model_of("tiny_aux")
    name, source = type(model)._incdsl_generated
    with pytest.raises(pickle.UnpicklingError, match="no class 'Nothing'"):
        build.rebuild_generated(name, source, "Nothing")
    with pytest.raises(pickle.UnpicklingError, match="no class 'ConvBnAct'"):  # imported, not generated
        build.rebuild_generated(name, source, "ConvBnAct")
    with pytest.raises(pickle.UnpicklingError, match="as text"):
        build.rebuild_generated(name, source.encode(), type(model).__name__)


def test_a_captured_cuda_graph_refuses_to_pickle_with_a_way_out():
    graph = CapturedGraph.__new__(CapturedGraph)  # capturing needs CUDA; the refusal does not
    for copier in (pickle.dumps, copy.deepcopy, lambda g: torch.save(g, io.BytesIO())):
        with pytest.raises(TypeError, match=r"cannot be pickled.*capture\(x\) again"):
            copier(graph)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_models_round_trip_and_their_captured_graph_refuses():
    model = model_of("tiny_aux", "infer").cuda().eval()
    x = sample(network("tiny_aux")).cuda()
    loaded = via_torch_save(model)
    assert next(loaded.parameters()).is_cuda
    assert_same_tensors(outputs(model, x, False), outputs(loaded, x, False))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(loaded.eval().capture(x))


FRESH = textwrap.dedent("""\
    import pickle, sys
    import torch
    from incdsl.torch import build
    runs = []
    real = build.load_source
    build.load_source = lambda text, name: runs.append(name) or real(text, name)
    data = open(sys.argv[1], "rb").read()
    models = pickle.loads(data)
    again = torch.load(sys.argv[2], weights_only=False)
    x = torch.load(sys.argv[3])
    out = {}
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    for name, model in models.items():
        assert type(again[name]) is type(model), name
        out[name] = (model.training, list(model.state_dict()), model.eval()(x[name]), again[name].eval()(x[name]))
    assert len(runs) == len(models), runs  # one run of each source for two copies of each model
    assert not any(m.startswith("incdsl_") for m in sys.modules)  # kept out of sys.modules here too
    torch.save(out, sys.argv[4])
    """)


def test_a_fresh_interpreter_that_never_built_the_models_loads_them(tmp_path):
    models = {level: model_of("tiny_aux", level) for level in LEVELS}
    models["fractalnet20"] = model_of("fractalnet20", "train").eval()
    x = {name: sample(network("fractalnet20" if name == "fractalnet20" else "tiny_aux")) for name in models}
    (tmp_path / "models.pkl").write_bytes(pickle.dumps(models))
    torch.save(models, tmp_path / "models.pt")
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", FRESH, *(str(tmp_path / f) for f in
                                                         ("models.pkl", "models.pt", "x.pt", "out.pt"))],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = torch.load(tmp_path / "out.pt")
    for name, model in models.items():
        training, keys, out, out_again = got[name]
        assert training == model.training and keys == list(model.state_dict())
        with torch.no_grad():
            expected = model.eval()(x[name])
        assert torch.equal(out, expected) and torch.equal(out_again, expected)


def run_in_worker(model, x):
    """What the spawn worker does with the model it is handed (this module is importable there)."""
    with torch.no_grad():
        return type(model).__name__, model.training, model.state_dict(), model(x)


@pytest.mark.slow
def test_a_spawn_worker_runs_a_model_it_was_handed():
    model = model_of("tiny_aux", "infer").eval()
    x = sample(network("tiny_aux"))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        name, training, state, out = pool.apply(run_in_worker, (model, x))  # the model is pickled to the worker
    assert (name, training) == ("Tiny", False)
    assert list(state) == list(model.state_dict())
    assert_same_tensors(list(state.values()), list(model.state_dict().values()))
    with torch.no_grad():
        assert torch.equal(out, model(x))


def test_a_compiled_file_stays_standalone_and_pickles_by_reference(tmp_path, monkeypatch):
    out = tmp_path / "tiny_net.py"
    from incdsl.cli import main
    assert main(["compile", str(CASES["tiny_aux"][0]), "-o", str(out), "--optimize", "infer"]) == 0
    text = out.read_text()
    assert "incdsl" not in "".join(l for l in text.splitlines() if l.startswith(("import", "from")))
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_net
    model = tiny_net.Tiny(seed=0)
    data = pickle.dumps(model)
    assert b"rebuild_generated" not in data and b"tiny_net" in data
    assert_same_model(model, pickle.loads(data), sample(network("tiny_aux")))
    sys.modules.pop("tiny_net", None)
