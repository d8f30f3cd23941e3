"""Generated PyTorch source is safe for specs from strangers (issue 15, items 1, 6, 7, 11).

* Text from a spec or a user (file name, network, block, label, parameter and aux names,
  `--class-name`) never ends a string or runs on import, and comes back intact.
* Source is valid for every spec `check` accepts: non-finite numbers, names that are Python
  keywords, builtins, prelude or generated names, deep nesting.
* Memory is estimated before anything is allocated; weight files that are not state dicts are
  errors (exit 1), not crashes.
"""
from __future__ import annotations

import copy
import math
import os
import re
import sys

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.torch.memory import export_bytes
from incdsl.torch.source import generate_source
from incdsl.cli import main
from incdsl.ir.names import Namespace, identifier, literal
from incdsl.ir.lower import RESERVED as DSL_RESERVED

torch = pytest.importorskip("torch")

from incdsl.torch.build import load_source  # noqa: E402

MARKER = "incdsl_pwned"
# text that would run code or break the source if pasted between quotes unescaped
PAYLOADS = [
    f'a"""+str(__import__("sys").__setattr__("{MARKER}", 1))+"""b',
    f"a'''+str(__import__('sys').__setattr__('{MARKER}', 1))+'''b",
    f"x'+str(__import__('sys').__setattr__('{MARKER}', 1))+'",
    f'\n"""\nimport sys; sys.{MARKER} = 1\n"""',
    "\\N", "\\u12", "\\", '"', '""', "'", "\x00", "\r", "\x0c\x0b\x1c\x85\u2028", "{params}", "\ud800", "\udcff",
]
HOSTILE_TEXT = st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=30),
                         st.lists(st.sampled_from(PAYLOADS + ["a", " ", "\n"]), max_size=5).map("".join))

TINY = """\
network tiny:
    input 3x8x8
    conv 3x3 4 S as stem
    blk(n = 4)
    blk(n = 6) as second
    repeat 2 as rep:
        conv 1x1 6
    gap -> flatten -> linear 3
    aux side(weight = 0.5) from second: gap -> flatten -> linear 3
block blk(n):
    concat:
        branch: conv 1x1 n as left
        branch: conv 1x1 2 -> conv 3x3 (n - 2) S
"""


@pytest.fixture(autouse=True)
def no_marker():
    yield
    ran = hasattr(sys, MARKER)
    if ran:
        delattr(sys, MARKER)
    assert not ran, "generated source ran injected code"


def shown(text: str) -> str:
    """How a docstring shows text: lone surrogates (undecodable file-name bytes) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def exec_source(text: str):
    """Compile and run generated source as a module; fails the test if it ran injected code."""
    module = load_source(text, "hostile")
    assert not hasattr(sys, MARKER)
    return module


def build_and_run(net, **kwargs):
    model = incdsl.to_torch(net, seed=0, **kwargs).eval()
    with torch.no_grad():
        y = model(torch.randn(1, *net.input_shape))
    assert y.shape == (1, *net.output_shape)
    for path in model.node_paths.values():
        model.get_submodule(path)
    return model


# --- item 1: one escaping function ---------------------------------------------------------

@pytest.mark.parametrize("name", [PAYLOADS[0], 'a"""+str(__import__("os").system("true"))+"""b', "a\\Nb", "x\\u12",
                                  "q'uote", 'end"', "tab\there", "new\nline"])
def test_a_spec_file_name_is_text_in_the_source(tmp_path, name):
    path = tmp_path / (name + ".inc")
    path.write_text(TINY)
    net = incdsl.load(path)
    text, cls, _ = generate_source(net)
    module = exec_source(text)
    assert name + ".inc" in module.__doc__ and name + ".inc" in getattr(module, cls).__doc__
    build_and_run(net)


def test_compile_command_writes_a_file_name_as_text(tmp_path, capsys):
    path = tmp_path / (PAYLOADS[0] + ".inc")
    path.write_text(TINY)
    out = tmp_path / "model.py"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    module = exec_source(out.read_text(encoding="utf-8"))
    assert PAYLOADS[0] in module.__doc__


FILE_NAME = st.text(st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                              st.sampled_from("\udc80\udcff")), min_size=1, max_size=40)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(FILE_NAME, st.sampled_from(PAYLOADS[:4] + ["\\N", "\\u12", "\\x"])))
def test_any_file_name_compiles_and_comes_back_intact(tmp_path, name):
    assume(len(os.fsencode(name + ".inc")) < 250)
    path = tmp_path / (name + ".inc")
    path.write_text(TINY, encoding="utf-8")
    try:
        net = incdsl.load(path)
    finally:
        path.unlink()
    text, cls, _ = generate_source(net)
    compile(text, "generated", "exec")
    module = exec_source(text)
    assert shown(name + ".inc") in module.__doc__


@settings(deadline=None, max_examples=40)
@given(name=HOSTILE_TEXT)
def test_any_text_as_the_spec_file_name_compiles_and_comes_back_intact(name):
    net = incdsl.load(TINY, file="some/dir/" + name.replace("/", "") + ".inc")
    text, cls, _ = generate_source(net)
    module = exec_source(text)
    spec = shown(os.path.basename(net.file))
    assert spec in module.__doc__ and spec in getattr(module, cls).__doc__


def rename(net, text):
    """A copy of `net` with every name a spec controls replaced by hostile text: network,
    file, aux heads, blocks, block parameters and every scope component (kept distinct)."""
    net = copy.deepcopy(net)
    g = net.graph
    comps = {}

    def comp(c: str) -> str:
        base, dot, index = c.partition(".")
        if base not in comps:  # distinct bases stay distinct; no "/" or "." (path separators)
            comps[base] = text(base).replace("/", "|").replace(".", ",") + f"~{len(comps)}"
        return comps[base] + (dot + index)

    def path(p: str) -> str:
        return "/".join(comp(c) for c in p.split("/")) if p else p

    heads = {h["name"]: text(h["name"]) + "!" + h["name"] for h in g.graph["aux"]}
    for h in g.graph["aux"]:
        h["name"], h["output"], h["tap"] = heads[h["name"]], path(h["output"]), path(h["tap"])
    g.graph["name"] = text("network")
    net.file = "dir/" + text("file").replace("/", "|") + ".inc"
    g.graph["input"], g.graph["output"] = path(g.graph["input"]), path(g.graph["output"])
    instances = {}
    for scope, inst in g.graph.get("instances", {}).items():
        inst = dict(inst, block=text(inst["block"]) + "/" + inst["block"],
                    args={text(k) + k: v for k, v in inst["args"].items()})
        instances[path(scope)] = inst
    g.graph["instances"] = instances
    for _, data in g.nodes(data=True):
        data["scope"] = path(data["scope"])
        data["aux"] = heads.get(data["aux"], data["aux"])
        if data.get("block") is not None:
            data["block"] = text(data["block"]) + "/" + data["block"]
    net.graph = nx.relabel_nodes(g, {n: path(n) for n in g.nodes})
    return net


@settings(deadline=None, max_examples=12)
@given(st.data())
def test_hostile_text_in_every_name_slot(data):
    base = incdsl.load(TINY, file="tiny.inc")
    texts = {}

    def text(key):
        if key not in texts:
            texts[key] = data.draw(HOSTILE_TEXT, label=key)
        return texts[key]

    net = rename(base, text)
    source, cls, paths = generate_source(net)
    compile(source, "generated", "exec")
    module = exec_source(source)
    assert shown(net.name) in module.__doc__ and shown(os.path.basename(net.file)) in module.__doc__
    model = build_and_run(net)
    assert model.aux_names == [h["name"] for h in net.aux_heads]
    docs = [c.__doc__ for c in vars(module).values() if isinstance(c, type)]
    for inst in net.graph.graph["instances"].values():
        assert shown(f"Block `{inst['block']}`.") in docs
    assert set(paths) == set(net.graph.nodes) - {net.input}


@given(st.one_of(st.text(), st.sampled_from(PAYLOADS)))
def test_literal_evaluates_back_to_the_text(text):
    for kwargs in ({}, {"quote": '"'}, {"doc": True}):
        source = literal(text, **kwargs)
        assert eval(compile(source, "lit", "eval")) == text
        assert "\n" not in source or kwargs.get("doc")


@given(st.one_of(st.floats(), st.integers(), st.booleans(), st.none(),
                 st.lists(st.floats(allow_nan=False), max_size=3).map(tuple)))
def test_literal_writes_every_number(value):
    back = eval(literal(value))
    assert back == value or (isinstance(value, float) and math.isnan(value) and math.isnan(back))
    assert type(back) is type(value)


# --- item 6: valid source for every accepted spec ------------------------------------------

def test_non_finite_numbers_give_valid_source():
    net = copy.deepcopy(incdsl.load(TINY, file="tiny.inc"))
    conv = next(n for n in net.graph.nodes if net.graph.nodes[n]["op"] == "conv")
    net.graph.nodes[conv]["attrs"] = dict(net.graph.nodes[conv]["attrs"], bn=math.inf)
    text, _, _ = generate_source(net)
    assert "float('inf')" in text
    exec_source(text)
    build_and_run(net)


def test_a_scale_of_1e400_builds(write_spec):
    spec = write_spec("big_scale.inc", "network s(k = 0.5):\n    input 3x8x8\n    conv 1x1 3\n"
                      "    residual(scale = k):\n        conv 1x1 3\n    gap -> flatten -> linear 2\n")
    try:
        net = incdsl.load(str(spec), params={"k": float("inf")})
    except incdsl.IncdslError:
        pytest.skip("the language rejects non-finite numbers")
    text, _, _ = generate_source(net)
    exec_source(text)
    build_and_run(net)


NAME_TRAPS = ["none", "true", "false", "none_", "f", "conv_bn_act", "padded_pool", "scope", "int", "super",
              "value_error", "incdsl_net", "copy", "init_weights", "torch", "nn", "math", "self", "x",
              "module_list"]


@pytest.mark.parametrize("name", NAME_TRAPS)
def test_network_and_block_names_never_shadow_python(write_spec, name):
    # the strided SAME conv pads with F.pad; the strided SAME maxpool is a PaddedPool
    spec = write_spec(f"{name}.inc", f"network {name}:\n    input 3x8x8\n    conv 3x3 4 /2 S\n    {name}_b(c = 4)\n"
                      f"    {name}_b(c = 6)\n    maxpool 3x3 /2 S\n    gap -> flatten -> linear 2\n"
                      f"block {name}_b(c):\n    conv 1x1 c as {name}\n")
    try:
        net = incdsl.load(str(spec))
    except incdsl.IncdslError:
        pytest.skip(f"`{name}` is not a network name the language accepts")
    text, cls, _ = generate_source(net)
    module = exec_source(text)
    assert isinstance(getattr(module, cls), type)
    build_and_run(net)


def test_labels_and_parameters_named_like_generated_code(write_spec):
    spec = write_spec("labels.inc", """\
network n:
    input 3x8x8
    conv 3x3 4 S as self
    b(ConvBnAct = 4, Scope = 2, self = 1, super = 3) as node_paths
    b(ConvBnAct = 6, Scope = 3, self = 2, super = 4) as x
    gap -> flatten -> linear 2 as forward
block b(ConvBnAct, Scope, self, super):
    conv 1x1 ConvBnAct as B
    concat:
        branch: conv 1x1 Scope as nn
        branch: conv 1x1 self as F
        branch: conv 1x1 super as torch
""")
    net = incdsl.load(str(spec))
    text, cls, _ = generate_source(net)
    exec_source(text)
    model = build_and_run(net)
    assert isinstance(model.node_paths, dict) and model.node_paths["self"] == "self_"


def test_ninety_nested_repeats_give_flat_code(write_spec):
    lines = ["network deep:", "    input 3x8x8"]
    lines += ["    " * (i + 1) + "repeat 1:" for i in range(90)]
    lines += ["    " * 91 + "conv 3x3 4 S", "    gap -> flatten -> linear 2"]
    net = incdsl.load(str(write_spec("deep.inc", "\n".join(lines) + "\n")))
    text, _, paths = generate_source(net)
    compile(text, "generated", "exec")  # no "too many nested parentheses"
    model = build_and_run(net)
    conv = next(n for n in net.graph.nodes if net.graph.nodes[n]["op"] == "conv")
    assert paths[conv] == ".".join(["repeat.0"] * 90 + ["conv_0"])
    assert f"{paths[conv]}.conv.weight" in model.state_dict()


def test_nesting_limit_keeps_keys_order_and_values(write_spec):
    """A spec just past the nesting limit builds the same module as the nested form would."""
    from incdsl.torch import codegen
    lines = ["network n:", "    input 3x8x8"]
    for i in range(codegen.MAX_NESTING + 3):
        lines += ["    " * (i + 1) + "repeat 2:", "    " * (i + 2) + f"conv 1x1 3 as c{i}"]
    net = incdsl.load(str(write_spec("n.inc", "\n".join(lines).replace("repeat 2", "repeat 1") + "\n")))
    flat = incdsl.to_torch(net, seed=1).state_dict()
    old = codegen.MAX_NESTING
    codegen.MAX_NESTING = 10**6
    try:
        nested = incdsl.to_torch(net, seed=1).state_dict()
    finally:
        codegen.MAX_NESTING = old
    assert ":=" in generate_source(net)[0]
    assert list(flat) == list(nested) and all(torch.equal(flat[k], nested[k]) for k in flat)


# --- hypothesis: random accepted specs with adversarial names --------------------------------

ADVERSARIAL = [
    "self", "x", "x1", "x_", "F", "nn", "torch", "math", "Scope", "ConvBnAct", "PaddedPool", "Concat", "Add",
    "LinearAct", "copy", "init_weights", "IncdslNet", "conv_bn_act", "padded_pool", "scope", "f", "super", "int",
    "float", "range",
    "print", "len", "object", "type", "match", "case", "_", "class", "def", "lambda", "None", "True", "none_", "true_",
    "forward", "training", "node_paths", "num_classes", "classifiers", "aux_names", "seed", "pre_logits", "logits",
    "taps", "__init__", "__class__", "__builtins__", "_m1", "__dict__", "Blk", "Blk_2", "B", "B_2", "Net",
    "get_submodule",
    "add_module", "state_dict", "T_destination", "eval", "exec", "m_private", "class_", "forward_", "x_2", "n", "b",
    "ValueError", "value_error", "module_list", "ModuleList", "incdsl_net", "cls", "globals",
]
ADVERSARIAL = [n for n in ADVERSARIAL if n not in DSL_RESERVED]


def adversarial_spec(names: list[str], use_aux: bool, reps: int) -> str:
    (net, b1, b2, p, q, q2, l1, l2, l3, l4, l5, l6, l7, r, a) = names
    aux = f"    aux {a}(weight = 0.3) from {l2}: gap -> flatten -> linear 3\n" if use_aux else ""
    return f"""\
network {net}({p} = 4):
    input 3x8x8
    conv 3x3 {p} S as {l1}
    {b1}({q} = 4) as {l2}
    {b1}({q} = 6)
    repeat {reps} as {r}:
        {b2}({q2} = 6)
    concat:
        branch: conv 1x1 4 as {l3}
        branch: {b2}({q2} = 2) as {l4}
{aux}    gap -> flatten -> linear 3 as {l5}
block {b1}({q}):
    conv 1x1 {q} as {l6}
    {b2}({q2} = {q})
block {b2}({q2}):
    conv 3x3 {q2} S as {l7}
"""


@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.filter_too_much])
@given(names=st.lists(st.sampled_from(ADVERSARIAL), min_size=15, max_size=15, unique=True),
       use_aux=st.booleans(), reps=st.integers(1, 3))
def test_random_accepted_specs_with_adversarial_names_build_and_run(write_spec, names, use_aux, reps):
    path = write_spec("adv.inc", adversarial_spec(names, use_aux, reps))
    try:
        net = incdsl.load(str(path))
    except incdsl.IncdslError:
        assume(False)  # a name the language keeps for itself; only accepted specs count
    compile(generate_source(net)[0], "generated", "exec")
    build_and_run(net)  # runs the generated source


# --- --class-name --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["F", "torch", "nn", "math", "copy", "super", "int", "Scope", "ConvBnAct", "builtins",
                                  "__builtins__", "None", "class", "not valid", "1x", "\ufb01", "IncdslNet",
                                  "init_weights", "float", "range"])
def test_class_names_that_would_break_the_module_are_usage_errors(tmp_path, capsys, name):
    out = tmp_path / "m.py"
    spec = tmp_path / "t.inc"
    spec.write_text(TINY)
    if name == "builtins":  # not a builtin itself: the module does not read it, so it is allowed
        assert main(["compile", str(spec), "--class-name", name, "-o", str(out)]) == 0
        assert isinstance(getattr(exec_source(out.read_text()), name), type)
        return
    assert main(["compile", str(spec), "--class-name", name, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--class-name" in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("name", ["Réseau", "Model", "Blk", "Tiny_2", "match_"])
def test_unusual_but_valid_class_names_work(tmp_path, name):
    spec = tmp_path / "t.inc"
    spec.write_text(TINY)
    out = tmp_path / "m.py"
    assert main(["compile", str(spec), "--class-name", name, "-o", str(out)]) == 0
    module = exec_source(out.read_text(encoding="utf-8"))
    model = getattr(module, name)(seed=0).eval()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3)


@given(st.text(max_size=12))
def test_namespace_names_are_legal_unique_and_never_reserved(candidate):
    ns = Namespace(taken={"F", "torch"}, avoid={"forward", "self"})
    a, b = ns.create_name(candidate), ns.create_name(candidate)
    for name in (a, b):
        assert name.isidentifier() and not name.startswith("_")
        assert name not in {"F", "torch", "forward", "self"}
        compile(f"{name} = 1", "n", "exec")  # not a keyword
    assert a != b
    assert identifier(candidate) == identifier(identifier(candidate))


# --- item 7: memory is estimated before anything is allocated -------------------------------

HUGE = "network huge:\n    input 3x224x224\n    flatten -> linear {units}\n"


def test_a_nine_billion_parameter_spec_is_refused_before_allocating(write_spec):
    net = incdsl.load(str(write_spec("huge.inc", HUGE.format(units=60_000))))
    assert incdsl.count_costs(net).total.params > 9e9
    with pytest.raises(incdsl.IncdslError) as info:
        incdsl.to_torch(net, max_bytes=8 * 2**30)
    message = info.value.render()
    assert "GiB" in message and "9,031," in message and "max_bytes" in message


def test_a_terabyte_spec_is_refused_by_default(write_spec):
    net = incdsl.load(str(write_spec("huge.inc", HUGE.format(units=3_000_000))))
    with pytest.raises(incdsl.IncdslError, match="over the limit"):
        incdsl.to_torch(net)


def test_the_limit_can_be_raised_and_meta_builds_anything(write_spec):
    net = incdsl.load(str(write_spec("small.inc", "network s:\n    input 3x8x8\n    flatten -> linear 10\n")))
    with pytest.raises(incdsl.IncdslError):
        incdsl.to_torch(net, max_bytes=1000)
    build_and_run(net, max_bytes=2**30)
    huge = incdsl.load(str(write_spec("huge.inc", HUGE.format(units=60_000))))
    with torch.device("meta"):
        model = incdsl.to_torch(huge)
    assert model.get_classifier().weight.shape == (60_000, 150_528)


def test_compile_onnx_refuses_with_the_figure_and_the_flag(write_spec, capsys, tmp_path):
    spec = write_spec("big.inc", HUGE.format(units=1000))  # 150 million parameters
    out = tmp_path / "m.onnx"
    assert main(["compile", str(spec), "--onnx", str(out), "--max-memory", "100M"]) == 1
    err = capsys.readouterr().err
    assert "over the limit of 100.0 MiB" in err and "150,529,000 parameters" in err
    hint = re.search(r"--max-memory (\d+)G", err)
    assert hint and int(hint[1]) * 2**30 >= export_bytes(incdsl.load(spec)) > 150_529_000 * 4
    assert not out.exists()


def test_compile_onnx_refuses_more_weights_than_a_file_holds(write_spec, capsys, tmp_path):
    spec = write_spec("huge.inc", HUGE.format(units=60_000))
    out = tmp_path / "m.onnx"
    assert main(["compile", str(spec), "--onnx", str(out), "--max-memory", "100T"]) == 1
    err = capsys.readouterr().err
    assert "33.6 GiB of weights" in err and "at most 2.0 GiB" in err and not out.exists()


def test_max_memory_must_be_a_size(write_spec, capsys):
    spec = write_spec("t.inc", TINY)
    with pytest.raises(SystemExit) as info:
        main(["compile", str(spec), "--onnx", "x.onnx", "--max-memory", "lots"])
    assert info.value.code == 2 and "8G" in capsys.readouterr().err


# --- item 11: --weights that are not a state dict -------------------------------------------

def _garbage(kind: str, path, net):
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    elif kind == "int keys":
        torch.save({1: torch.zeros(3)}, path)
    elif kind == "no tensors":
        torch.save({"a": 1, "b": "x"}, path)
    elif kind == "wrong shapes":
        state = incdsl.to_torch(net, seed=0).state_dict()
        torch.save({k: torch.zeros(*(s + 1 for s in v.shape)) if v.dim() else v for k, v in state.items()}, path)
    elif kind == "a directory":
        path.mkdir()


@pytest.mark.parametrize("kind", ["random bytes", "empty", "a list", "int keys", "no tensors", "wrong shapes",
                                  "a directory", "missing"])
def test_garbage_weights_are_a_one_line_error(tmp_path, capsys, kind):
    spec = tmp_path / "t.inc"
    spec.write_text(TINY)
    net = incdsl.load(str(spec))
    weights = tmp_path / "w.pt"
    _garbage(kind, weights, net)
    out = tmp_path / "m.onnx"
    code = main(["compile", str(spec), "--onnx", str(out), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("incdsl: error: ") and "w.pt" in err and "Traceback" not in err and not out.exists()
    assert len(err.strip().splitlines()) <= 2  # the error, and at most a hint
