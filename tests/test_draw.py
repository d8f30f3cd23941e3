"""`incdsl draw` and `incdsl.render`: diagrams at network, block and layer level.

Drawings are checked where they end up: the SVG that Graphviz's `dot` lays out is parsed
(box texts, arrow labels, box positions), and the DOT text for what does not need a layout
(clusters, determinism). Tests that run `dot` skip when it is not installed.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.cli import main
from incdsl.ir.graph import inputs
from incdsl.render.collect import block_names
from incdsl.render.graphviz import (DrawError, DrawOptions, GraphvizNotFound, build_dot, collect, dot_digest,
                                    render_svg, run_dot, source_hash)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
# the networks we ship: specs/*.inc and specs/variants/*.inc (specs/lib holds only blocks)
SHIPPED = sorted(glob.glob(str(ROOT / "specs" / "*.inc")) + glob.glob(str(ROOT / "specs" / "variants" / "*.inc")))
MINI, PLAIN, EDGE = str(DATA / "draw_mini.inc"), str(DATA / "draw_plain.inc"), str(DATA / "draw_edge.inc")
ALL_SPECS = SHIPPED + [MINI, PLAIN, EDGE]
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` is not installed")
SVG_NS = "{http://www.w3.org/2000/svg}"


def spec_id(path: str) -> str:
    return os.path.relpath(path, ROOT)


@lru_cache(maxsize=None)
def load(path: str) -> incdsl.Network:
    return incdsl.load(path)


def every_block():
    return [(spec, block) for spec in ALL_SPECS for block in block_names(load(spec).graph)]


# --- reading SVG -----------------------------------------------------------------------------

def parse_svg(svg: bytes | str) -> tuple[dict, dict]:
    """nodes: DOT id -> (texts, (x, y) centre); edges: (tail, head) -> [texts], from dot's SVG."""
    root = ET.fromstring(svg.encode() if isinstance(svg, str) else svg)
    nodes, edges = {}, {}
    for g in root.iter(SVG_NS + "g"):
        cls, title = g.get("class"), g.findtext(SVG_NS + "title")
        texts = [t.text for t in g.iter(SVG_NS + "text") if t.text]
        if cls == "node":
            nodes[title] = (texts, _centre(g))
        elif cls == "edge":
            tail, head = title.split("->")
            edges.setdefault((tail, head), []).extend(texts)
    return nodes, edges


def _centre(g) -> tuple[float, float]:
    ellipse = g.find(SVG_NS + "ellipse")
    if ellipse is not None:
        return float(ellipse.get("cx")), float(ellipse.get("cy"))
    polygon = g.find(SVG_NS + "polygon")
    if polygon is None:  # plain text (an `Output` label): where its first line stands
        text = g.find(SVG_NS + "text")
        return float(text.get("x")), float(text.get("y"))
    points = [tuple(map(float, p.split(","))) for p in polygon.get("points").split()]
    xs, ys = [p[0] for p in points[:-1]], [p[1] for p in points[:-1]]
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2


def all_texts(parsed) -> list[str]:
    nodes, edges = parsed
    return [t for texts, _ in nodes.values() for t in texts] + [t for texts in edges.values() for t in texts]


def hwc(shape) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[0]}" if len(shape) == 3 else str(shape[0])


def draw_svg(path: str, **options) -> tuple[dict, dict]:
    return parse_svg(run_dot(build_dot(load(path), DrawOptions(**options)), "svg"))


# --- expectations computed from the IR -------------------------------------------------------

def instance_of(graph, block: str) -> str:
    return next(s for s, inst in graph.graph["instances"].items() if inst["block"] == block)


def branch_boxes(graph, block: str) -> list[tuple[list[str], list[str]]]:
    """For each concat (or `add:`) drawn in the block's first instance: (heads, tails) of its
    branches in input order, as drawn box ids (a block instance nested inside is one box, its
    scope). Residual sums are left out: their shortcut comes from outside."""
    scope = instance_of(graph, block)
    nested = [s for s in graph.graph["instances"] if s.startswith(scope + "/")]

    def box(n):
        return next((s for s in nested if n.startswith(s + "/")), n)

    members = [n for n in graph.nodes if n.startswith(scope + "/")]
    out = []
    for c in members:
        prefix = graph.nodes[c]["scope"] + "/"
        if graph.nodes[c]["op"] not in ("concat", "add") or box(c) != c or \
                not all(src.startswith(prefix) for src in inputs(graph, c)):
            continue
        heads, tails = [], []
        for src in inputs(graph, c):
            branch = prefix + src[len(prefix):].split("/")[0] + "/"
            heads.append(box(next(n for n in members if n.startswith(branch))))
            tails.append(box(src))
        out.append((heads, tails))
    return out


def top_level_groups(graph) -> list[tuple[str, int]]:
    """(block, count) for each run of consecutive repeated instances at top level."""
    runs = []
    for scope, inst in graph.graph["instances"].items():
        m = re.fullmatch(r"(.+)\.(\d+)", scope)
        if "/" in scope or not m:
            continue
        if int(m.group(2)) == 0:
            runs.append([inst["block"], 0])
        runs[-1][1] += 1
    return [tuple(r) for r in runs]


# --- network level ---------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("spec", ALL_SPECS, ids=spec_id)
def test_network_level_svg(spec):
    from incdsl.render.labels import pretty_name
    net = load(spec)
    parsed = draw_svg(spec)
    nodes, edges = parsed
    texts = all_texts(parsed)
    c, h, w = net.input_shape
    assert f"Input ({h}x{w}x{c})" in texts
    for block, count in top_level_groups(net.graph):
        if count > 1:
            assert f"{count} x {pretty_name(block)}" in texts
    edge_texts = {t for ts in edges.values() for t in ts}
    assert hwc(net.output_shape) in edge_texts
    for scope, inst in net.graph.graph["instances"].items():
        if "/" not in scope:  # every top-level block instance's output shape is on an arrow (or in
            # its box, where it also feeds an aux head)
            last = [n for n in net.graph.nodes if n.startswith(scope + "/") and net.graph.nodes[n]["aux"] is None][-1]
            assert hwc(net.graph.nodes[last]["shape"]) in edge_texts | set(texts), scope
    for head in net.aux_heads:
        assert any(t.startswith(f"Aux head {head['name']} ") for t in texts)
    assert len(nodes) < 40, "the overall schema should stay compact"


@needs_dot
def test_inception_v4_overall_schema():
    parsed = draw_svg(str(ROOT / "specs" / "inception_v4.inc"))
    nodes, edges = parsed
    texts = all_texts(parsed)
    for label in ("Input (299x299x3)", "Stem", "4 x Inception-A", "Reduction-A", "7 x Inception-B", "Reduction-B",
                  "3 x Inception-C", "Global Avg Pooling", "Dropout (keep 0.8)", "Linear (1000)"):
        assert label in texts
    assert edges[("stem", "inception_a.0")] == ["35x35x384"]
    assert edges[("inception_a.0", "reduction_a")] == ["35x35x384"]
    assert edges[("reduction_a", "inception_b.0")] == ["17x17x1024"]
    assert edges[("reduction_b", "inception_c.0")] == ["8x8x1536"]
    # bottom-up like the paper: the input lies below the stem (SVG y grows downwards)
    assert nodes["input"][1][1] > nodes["stem"][1][1] > nodes["#output"][1][1]


def test_network_level_groups_and_stem_folding():
    scene = collect(load(PLAIN))
    titles = {n.id: n.title for n in scene.nodes}
    stem = next(n for n in scene.nodes if n.id == "#stem")
    assert stem.lines == ("7x7 Conv (16 stride 2)", "3x3 MaxPool (stride 2 V ceil)", "LocalRespNorm", "1x1 Conv (16)",
                          "3x3 Conv (32)", "LocalRespNorm", "3x3 MaxPool (stride 2 V ceil)")
    assert titles["m3a"] == "Module" and titles["maxpool_2"] == "3x3 MaxPool (stride 2 V ceil)"
    assert "flatten_0" not in titles  # a flatten only reshapes: its shape goes on the arrow
    arrows = {(e.tail, e.head): e.shape for e in scene.edges}
    assert arrows[("gap_0", "dropout_0")] == (56,)
    mini = {n.id: n.title for n in collect(load(MINI)).nodes}
    assert mini["mini_a.0"] == "3 x Mini-A" and mini["mini_res.0"] == "2 x Mini-Res"


def test_aux_head_taps_the_trunk_where_the_spec_says():
    scene = collect(load(PLAIN))
    taps = {e.head: e.tail for e in scene.edges if e.aux and not e.head.endswith("/output")}
    assert taps == {"#aux/aux1": "m3b", "#aux/aux2": "m4a"}
    layer = collect(load(PLAIN), DrawOptions(level="layer"))
    assert any(e.tail == "m3b/concat_0" and e.head == "aux1/avgpool_0" for e in layer.edges)


@pytest.mark.parametrize("level", ["network", "layer"])
def test_no_aux_hides_the_heads(level):
    net = load(PLAIN)
    aux_nodes = [n for n in net.graph.nodes if net.graph.nodes[n]["aux"]]
    with_aux = build_dot(net, DrawOptions(level=level))
    without = build_dot(net, DrawOptions(level=level, aux=False))
    assert "Aux head" in with_aux or all(f'"{n}"' in with_aux for n in aux_nodes)
    assert "aux1" in with_aux and "aux2" in with_aux
    assert "aux1" not in without and "aux2" not in without and "style=dashed" not in without


# --- block level ---------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("spec,block", every_block(), ids=lambda v: spec_id(v) if v.endswith(".inc") else v)
def test_block_level_svg(spec, block):
    from incdsl.render.labels import layer_label
    net = load(spec)
    g = net.graph
    nodes, edges = draw_svg(spec, level="block", block=block)
    scope = instance_of(g, block)
    nested = [s for s in g.graph["instances"] if s.startswith(scope + "/")]
    texts = [t for ts, _ in nodes.values() for t in ts]
    assert "Previous layer" in texts and "Output" in texts
    for n in g.nodes:
        if n.startswith(scope + "/") and not any(n.startswith(s + "/") for s in nested):
            assert layer_label(g.nodes[n]["op"], g.nodes[n]["attrs"]) in nodes[n][0]
    out = [n for n in g.nodes if n.startswith(scope + "/") and g.nodes[n]["aux"] is None][-1]
    assert hwc(g.nodes[out]["shape"]) in [t for (tail, head), ts in edges.items() if head == "#output" for t in ts]
    for heads, tails in branch_boxes(g, block):
        for ids in (heads, tails):
            xs = [nodes[i][1][0] for i in ids]
            assert xs == sorted(xs) and len(set(xs)) == len(xs), f"branches out of concat order: {ids} at {xs}"


@needs_dot
def test_block_labels_in_the_papers_style():
    v4 = str(ROOT / "specs" / "inception_v4.inc")
    texts = all_texts(draw_svg(v4, level="block", block="inception_a"))
    assert {"1x1 Conv (96)", "1x1 Conv (64)", "3x3 Conv (96)", "3x3 Avg Pooling", "Filter concat"} <= set(texts)
    assert {"35x35x96", "35x35x64", "35x35x384"} <= set(texts)
    texts = all_texts(draw_svg(v4, level="block", block="reduction_a"))
    assert {"3x3 Conv (384 stride 2 V)", "3x3 Conv (256 stride 2 V)", "3x3 MaxPool (stride 2 V)"} <= set(texts)
    nodes, edges = draw_svg(MINI, level="block", block="mini_res")
    texts = all_texts((nodes, edges))
    assert {"+", "ReLU activation", "1x1 Conv (160 Linear)", "1x7 Conv (16)", "7x1 Conv (16)"} <= set(texts)
    assert edges[("mini_res.0/conv_0", "mini_res.0/add_0")] == ["7x7x160", "scale 0.2"]
    # the shortcut: straight from the block input into the sum
    assert ("#in/reduction/concat_0", "mini_res.0/add_0") in edges


@needs_dot
def test_nested_block_is_one_box():
    nodes, edges = draw_svg(MINI, level="block", block="mini_pair")
    assert nodes["mini_pair/branch_0/mini_a"][0] == ["Mini-A", "n 8"]  # its arguments under the title
    assert not any(n.startswith("mini_pair/branch_0/mini_a/") for n in nodes)
    assert edges[("mini_pair/branch_0/mini_a", "mini_pair/concat_0")] == ["7x7x56"]


@needs_dot
@pytest.mark.parametrize("rankdir,axis", [("TB", 0), ("BT", 0), ("LR", 1)])
def test_branch_order_follows_rankdir(rankdir, axis):
    v4 = str(ROOT / "specs" / "inception_v4.inc")
    net = load(v4)
    for block in ("inception_a", "inception_c"):
        nodes, _ = draw_svg(v4, level="block", block=block, rankdir=rankdir)
        for heads, _ in branch_boxes(net.graph, block):
            coords = [nodes[i][1][axis] for i in heads]
            assert coords == sorted(coords) and len(set(coords)) == len(coords)
        ins, out = nodes[next(i for i in nodes if i.startswith("#in/"))][1], nodes["#output"][1]
        if rankdir == "BT":
            assert ins[1] > out[1]
        elif rankdir == "TB":
            assert ins[1] < out[1]
        else:
            assert ins[0] < out[0]


BRANCH = st.lists(st.sampled_from(["conv 1x1 8", "conv 3x3 8 S", "avgpool 3x3 S", "conv 1x3 4 S"]), min_size=1,
                  max_size=3)


@needs_dot
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BRANCH, min_size=2, max_size=5))
def test_any_branch_layout_keeps_concat_order(branches):
    body = "\n".join(f"        branch: {' -> '.join(chain)}" for chain in branches)
    text = f"network t:\n    input 8x9x9\n    b\nblock b:\n    concat:\n{body}\n"
    net = incdsl.load(text)
    scene = collect(net, DrawOptions(level="block", block="b"))
    heads = [f"b/branch_{i}/{'conv' if c[0].startswith('conv') else 'avgpool'}_0" for i, c in enumerate(branches)]
    assert scene.orders[0] == tuple(heads)  # the first row: the branch heads
    nodes, _ = parse_svg(run_dot(build_dot(net, DrawOptions(level="block", block="b")), "svg"))
    xs = [nodes[h][1][0] for h in heads]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_corner_cases():
    net = load(EDGE)
    scene = collect(net)
    titles = {n.id: n.title for n in scene.nodes}
    assert titles["repeat.0"] == "3 x 3x3 Conv (8)" and titles["helper.0"] == "2 x Helper"
    assert titles["branch_1"] == "Branch-1" and titles["concat_0"] == "Filter concat"
    notes = {(e.tail, e.head): e.note for e in scene.edges}
    assert notes[("conv_1", "add_0")] == "scale 0.5"  # a top-level residual keeps its scale
    taps = {e.head: e.tail for e in scene.edges if e.aux and not e.head.endswith("/output")}
    assert taps == {"#aux/early": "input", "#aux/inner": "stage"}
    block = collect(net, DrawOptions(level="block", block="stage"))
    assert [n.id for n in block.nodes if n.kind == "block"] == ["stage/mini.0", "stage/mini.1", "stage/headed"]
    assert {n.id for n in block.nodes if n.aux} == {f"stage/inner/{n}" for n in ("gap_0", "flatten_0", "linear_0")}
    bare = collect(net, DrawOptions(level="block", block="stage", aux=False))
    assert not any(n.aux for n in bare.nodes)
    mini = collect(net, DrawOptions(level="block", block="mini"))
    assert mini.orders[0] == ("stage/mini.0/branch_0/conv_0", "stage/mini.0/branch_1/identity_0",
                            "stage/mini.0/branch_2/conv_0")
    for aux in (True, False):
        text = build_dot(net, DrawOptions(level="layer", aux=aux))
        assert ('"stage/inner/gap_0"' in text) == aux and ("early/gap_0" in text) == aux


def test_unknown_block_lists_the_blocks():
    with pytest.raises(DrawError) as exc:
        collect(load(MINI), DrawOptions(level="block", block="mini_b"))
    message = str(exc.value)
    assert "did you mean `mini_a`" in message
    assert "stem, mini_a, mini_reduction, mini_res, mini_pair" in message


# --- layer level ---------------------------------------------------------------------------

def dot_clusters(text: str) -> tuple[dict, dict]:
    """From DOT text: cluster -> its parent cluster ("" for the graph), node -> its cluster."""
    parents, where, stack = {}, {}, [""]
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r'subgraph "?cluster_([^" ]+)"? \{', line)
        if m:
            parents[m.group(1)] = stack[-1]
            stack.append(m.group(1))
        elif line == "{":  # an anonymous subgraph (a rank=same row)
            stack.append(stack[-1])
        elif line == "}":
            stack.pop()
        else:
            m = re.match(r'("(?:[^"\\]|\\.)*"|[\w.]+) \[label=', line)
            if m:
                where[m.group(1).strip('"')] = stack[-1]
    return parents, where


@pytest.mark.parametrize("spec", [MINI, PLAIN, str(ROOT / "specs" / "inception_v4.inc")], ids=spec_id)
def test_layer_level_one_cluster_per_scope(spec):
    net = load(spec)
    g = net.graph
    parents, where = dot_clusters(build_dot(net, DrawOptions(level="layer")))
    scopes = set()
    for n in g.nodes:
        parts = g.nodes[n]["scope"].split("/") if g.nodes[n]["scope"] else []
        scopes |= {"/".join(parts[:i + 1]) for i in range(len(parts))}
    assert set(parents) == scopes
    for scope, parent in parents.items():
        assert parent == scope.rpartition("/")[0]
    for n in g.nodes:
        assert where[n] == g.nodes[n]["scope"], n
    assert len([n for n in where if not n.startswith("#") and "#" not in n]) == len(g)


@needs_dot
@pytest.mark.parametrize("spec", [MINI, str(ROOT / "specs" / "inception_v4.inc")], ids=spec_id)
def test_layer_level_renders_in_branch_order(spec):
    g = load(spec).graph
    nodes, edges = parse_svg(run_dot(build_dot(load(spec), DrawOptions(level="layer")), "svg"))
    assert len([n for n in nodes if "#" not in n]) == len(g)
    for n in g.nodes:  # each box: its layer label, then its name
        assert nodes[n][0][1] == n.rpartition("/")[2]
    for c in g.nodes:
        if g.nodes[c]["op"] == "concat":
            prefix = g.nodes[c]["scope"] + "/"
            heads = [next(n for n in g.nodes if n.startswith(prefix + src[len(prefix):].split("/")[0] + "/"))
                     for src in inputs(g, c)]
            xs = [nodes[h][1][0] for h in heads]
            assert xs == sorted(xs), f"{c}: branches out of order"


# --- DOT text: determinism, escaping, options ------------------------------------------------

def test_dot_is_deterministic_across_processes(tmp_path):
    v4 = str(ROOT / "specs" / "inception_v4.inc")
    outputs = []
    for seed in ("1", "2"):
        files = []
        for i, extra in enumerate([[], ["--block", "inception_c"], ["--level", "layer"]]):
            out = tmp_path / f"{seed}_{i}.dot"
            env = dict(os.environ, PYTHONHASHSEED=seed)
            proc = subprocess.run([sys.executable, "-m", "incdsl", "draw", v4, "-o", str(out), *extra],
                                  capture_output=True, env=env, cwd=ROOT)
            assert proc.returncode == 0, proc.stderr
            files.append(out.read_bytes())
        outputs.append(files)
    assert outputs[0] == outputs[1]
    assert outputs[0][0].startswith(b"digraph inception_v4 {")


def test_labels_are_escaped():
    from incdsl.render.scene import Edge, Node, Scene
    from incdsl.render.graphviz import to_dot
    scene = Scene("t", [Node("a", "conv", 'x < y & "z"', ("<b>",)), Node("b", "output", "Output")],
                  [Edge("a", "b", (1, 2, 3), "a>b")])
    text = to_dot(scene)
    assert "x &lt; y &amp; \"z\"" in text and "&lt;b&gt;" in text and "a&gt;b" in text
    if HAVE_DOT:
        nodes, edges = parse_svg(run_dot(text, "svg"))
        assert nodes["a"][0] == ['x < y & "z"', "<b>"]
        assert edges[("a", "b")] == ["2x3x1", "a>b"]


def test_print_options():
    net = load(MINI)
    plain = build_dot(net, DrawOptions(level="block", block="mini_res"))
    assert "fillcolor" in plain and "7x7x32" in plain
    mono = build_dot(net, DrawOptions(level="block", block="mini_res", mono=True, font="Times-Roman"))
    assert "fillcolor" not in mono and "#" not in re.sub(r'"#[^"]*"', "", mono).replace("#act", "")
    assert 'fontname="Times-Roman"' in mono and "Helvetica" not in mono
    bare = build_dot(net, DrawOptions(level="block", block="mini_res", shapes=False))
    assert "7x7x32" not in bare and "scale 0.2" in bare


# --- the command line ------------------------------------------------------------------------

def test_cli_writes_each_format(tmp_path, capsys):
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph"}
    for fmt in (magic if HAVE_DOT else ["dot"]):
        out = tmp_path / f"mini.{fmt}"
        assert main(["draw", MINI, "-o", str(out)]) == 0
        assert out.read_bytes().startswith(magic[fmt])
    assert main(["draw", MINI, "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph draw_mini {")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".incdsl-")]  # no temp files left


@needs_dot
def test_cli_default_is_svg_on_stdout(capsys):
    assert main(["draw", MINI, "--block", "mini_a", "--rankdir", "TB", "--mono"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<?xml") and "Filter concat" in out and source_hash(out)


@needs_dot
def test_cli_binary_to_redirected_stdout(capsysbinary):
    assert main(["draw", MINI, "--format", "png", "--no-aux"]) == 0
    assert capsysbinary.readouterr().out.startswith(b"\x89PNG")


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["draw", MINI, "--block", "mini_aa"]) == 2
    err = capsys.readouterr().err
    assert "uses no block `mini_aa`" in err and "did you mean `mini_a`" in err and "Traceback" not in err
    assert main(["draw", MINI, "--level", "block"]) == 2
    assert "blocks of this network: stem, mini_a" in capsys.readouterr().err
    assert main(["draw", MINI, "--level", "network", "--block", "mini_a"]) == 2  # layer + block draws its layers
    capsys.readouterr()
    assert main(["draw", MINI, "-o", str(tmp_path / "x.jpeg")]) == 2
    assert ".svg, .pdf, .png or .dot" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["draw", MINI, "--rankdir", "RL"])
    assert exc.value.code == 2


def test_cli_spec_error_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.inc"
    bad.write_text("network n:\n    input 3x8x8\n    conv 3x3 8 -> conv 9x9 8\n")
    out = tmp_path / "bad.svg"
    assert main(["draw", str(bad), "-o", str(out)]) == 1
    assert "error" in capsys.readouterr().err and not out.exists()
    assert main(["draw", str(tmp_path / "missing.inc")]) == 1


def test_missing_dot_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` anywhere on PATH
    with pytest.raises(GraphvizNotFound, match="apt-get install graphviz"):
        run_dot("digraph { a }", "svg")
    out = tmp_path / "mini.svg"
    out.write_text("old")
    for fmt in ("svg", "png", "pdf"):
        target = out if fmt == "svg" else tmp_path / f"mini.{fmt}"
        assert main(["draw", MINI, "-o", str(target)]) == 69
        err = capsys.readouterr().err
        assert "`dot` was not found" in err and "apt-get install graphviz" in err and "brew install graphviz" in err
    assert out.read_text() == "old"  # never half a file, never a clobbered one
    assert not (tmp_path / "mini.png").exists()
    assert main(["draw", MINI, "-o", str(tmp_path / "mini.dot")]) == 0  # DOT needs no Graphviz
    assert (tmp_path / "mini.dot").read_text().startswith("digraph")


def test_missing_dot_from_a_real_process(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "incdsl", "draw", MINI, "-o", str(tmp_path / "m.png")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 69 and "brew install graphviz" in proc.stderr and "Traceback" not in proc.stderr


@needs_dot
def test_jupyter_svg():
    net = load(MINI)
    svg = net._repr_svg_()
    assert svg == render_svg(net) and svg.startswith("<?xml")
    assert "3 x Mini-A" in all_texts(parse_svg(svg))


# --- committed figures -----------------------------------------------------------------------

FIGURES = {
    "inception_v4_network.svg": ("specs/inception_v4.inc", DrawOptions()),
    "inception_v4_block_inception_a.svg": ("specs/inception_v4.inc", DrawOptions(level="block", block="inception_a")),
}


@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_committed_figures_are_current(figure):
    spec, options = FIGURES[figure]
    svg = (ROOT / "docs" / figure).read_bytes()
    expected = source_hash(svg)
    assert expected, f"docs/{figure} was not written by `incdsl draw`"
    args = ["--level", options.level] + (["--block", options.block] if options.block else [])
    assert dot_digest(build_dot(load(str(ROOT / spec)), options)) == expected, (
        f"docs/{figure} is stale; regenerate it with: incdsl draw {spec} {' '.join(args)} -o docs/{figure}")
    assert ET.fromstring(svg).tag == SVG_NS + "svg"
