"""Properties over random specs (hypothesis).

(a) Random valid specs built from the language's constructs check cleanly, and every inferred
    shape obeys the closed-form window formulas, written here independently of incdsl:
        V (valid)        out = floor((n - k) / s) + 1
        S (TF SAME)      out = ceil(n / s)
        explicit b, a    out = floor((n + b + a - k) / s) + 1
        ceil mode        out = ceil((n + b + a - k) / s) + 1, less one if the last window
                         would start in the trailing padding (PyTorch)
    with k the dilated kernel d * (k - 1) + 1.
(b) Random corruptions of valid specs never give anything but a network or a clean IncdslError.
"""
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import incdsl
from incdsl.ir.graph import inputs, lint
from incdsl.passes.shapes import infer_shapes
from shapegen import axis_pad, out_size, valid_specs

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def expected_shape(net, name):
    """A node's shape from its attributes and its inputs' shapes, by the formulas above."""
    node = net.graph.nodes[name]
    op, a = node["op"], node["attrs"]
    ins = [net.graph.nodes[i]["shape"] for i in inputs(net.graph, name)]
    if op == "input":
        return a["shape"]
    if op in ("conv", "maxpool", "avgpool"):
        c, h, w = ins[0]
        d = a.get("dilation", (1, 1))
        ceil = a.get("ceil", False)
        oh = out_size(h, a["kernel"][0], a["stride"][0], d[0], axis_pad(a["pad"], 0), ceil)
        ow = out_size(w, a["kernel"][1], a["stride"][1], d[1], axis_pad(a["pad"], 1), ceil)
        return (a["filters"] if op == "conv" else c, oh, ow)
    if op == "concat":
        return (sum(s[0] for s in ins),) + ins[0][1:]
    if op == "gap":
        return (ins[0][0], 1, 1)
    if op == "flatten":
        return (math.prod(ins[0]),)
    if op == "linear":
        return (a["units"],)
    assert op in ("add", "bn", "act", "dropout", "identity", "softmax", "lrn"), op
    assert all(s == ins[0] for s in ins)
    return ins[0]


def drops_rows(net, name) -> bool:
    """Whether VALID padding leaves input rows or columns unread at this node."""
    node = net.graph.nodes[name]
    a = node["attrs"]
    if node["op"] not in ("conv", "maxpool", "avgpool") or a["pad"] != "V" or a.get("ceil"):
        return False
    _, h, w = net.graph.nodes[inputs(net.graph, name)[0]]["shape"]
    d = a.get("dilation", (1, 1))
    # windows narrower than their stride skip rows by design and are not reported
    return any((n - (dd * (k - 1) + 1)) % s and dd * (k - 1) + 1 >= s
               for n, k, s, dd in zip((h, w), a["kernel"], a["stride"], d))


@SETTINGS
@given(valid_specs())
def test_random_valid_specs_check_and_obey_the_formulas(case):
    text, shape = case
    net = incdsl.load(text)
    lint(net.graph)
    assert net.output_shape == shape, text
    for name in net.graph.nodes:
        assert net.graph.nodes[name]["shape"] == expected_shape(net, name), (name, text)
    assert infer_shapes(net.graph) == {n: d["shape"] for n, d in net.graph.nodes(data=True)}
    assert len(net.warnings) == sum(drops_rows(net, n) for n in net.graph.nodes), text


@settings(deadline=None, max_examples=200)
@given(n=st.integers(1, 300), k=st.integers(1, 11), s=st.integers(1, 5), d=st.integers(1, 3),
       before=st.integers(0, 5), after=st.integers(0, 5), ceil=st.booleans())
def test_single_window_matches_the_formulas(n, k, s, d, before, after, ceil):
    """One pool/conv per axis pair: height padded explicitly, width with SAME."""
    k_eff = d * (k - 1) + 1
    # pools may pad at most half their window; convs (dilated here) may pad anything
    text = (f"network w:\n    input 1x{n}x{n}\n"
            f"    conv {k}x{k} 2 /{s} pad = ({before}, {after}, 0, 0) dilation = {d}\n")
    h = out_size(n, k, s, d, (before, after), False)
    wv = out_size(n, k, s, d, "V", False)
    if h < 1 or wv < 1:
        with pytest.raises(incdsl.IncdslError, match="leaves no output"):
            incdsl.load(text)
        return
    assert incdsl.load(text).output_shape == (2, h, wv)
    assert wv == (n - k_eff) // s + 1
    pool = (f"network p:\n    input 1x{n}x{n}\n    maxpool {k}x{k} /{s} pad = ({min(before, k // 2)}, "
            f"{min(after, k // 2)}, 0, 0){' ceil = yes' if ceil else ''}\n")
    ph = out_size(n, k, s, 1, (min(before, k // 2), min(after, k // 2)), ceil)
    pw = out_size(n, k, s, 1, "V", ceil)
    if ph >= 1 and pw >= 1:
        assert incdsl.load(pool).output_shape == (1, ph, pw)
    same = f"network s:\n    input 1x{n}x{n}\n    avgpool {k}x{k} /{s} S\n"
    assert incdsl.load(same).output_shape == (1, math.ceil(n / s), math.ceil(n / s))


# --- corruptions -----------------------------------------------------------------------------------

SHIPPED = sorted(p for p in (REPO / "specs").glob("*.inc")) + sorted((REPO / "examples").glob("*.inc"))
HUGE = ["0", "1", "10000000", "2147483648", "99999999999999999999", "1" + "0" * 60, "9" * 150]


@st.composite
def corrupted(draw):
    """A valid spec (generated, or shipped) with one to three random corruptions."""
    if SHIPPED and draw(st.booleans()):
        path = draw(st.sampled_from(SHIPPED))
        text, file = path.read_text(encoding="utf-8"), str(path)
    else:
        text, file = draw(valid_specs())[0], "<spec>"
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "garbage", "huge", "cut"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            tokens = lines[i].split(" ")
            a, b = draw(st.integers(0, len(tokens) - 1)), draw(st.integers(0, len(tokens) - 1))
            tokens[a], tokens[b] = tokens[b], tokens[a]
            lines[i] = " ".join(tokens)
        elif kind == "garbage":
            junk = draw(st.one_of(st.binary(min_size=1, max_size=6).map(lambda b: b.decode("latin-1")),
                                  st.sampled_from(["->", ":", "(", ")", ",", "=", "/", "\t", "\\", "#", '"',
                                                   "branch:", "in.c", "x", "S", " as ", "\x00", "\r", "\x0c"])))
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j] + junk + lines[i][j:]
        elif kind == "huge":
            numbers = list(re.finditer(r"\d+", lines[i]))
            if numbers:
                m = draw(st.sampled_from(numbers))
                lines[i] = lines[i][:m.start()] + draw(st.sampled_from(HUGE)) + lines[i][m.end():]
        else:
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j]
        text = "\n".join(lines)
    return text, file


def assert_clean(text: str, file: str):
    try:
        net = incdsl.load(text if "\n" in text else text + "\n", file=file, max_nodes=20_000)
    except incdsl.IncdslError as exc:
        assert exc.diagnostics and all(d.severity == "error" for d in exc.diagnostics)
        rendered = exc.render()
        assert "error:" in rendered and "Traceback" not in rendered
        return
    lint(net.graph)
    net.format()


@SETTINGS
@given(corrupted())
def test_corrupted_specs_fail_cleanly_or_check(case):
    assert_clean(*case)


@settings(deadline=None, max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=corrupted())
def test_corrupted_specs_through_the_cli(case, tmp_path_factory, run_incdsl):
    text, file = case
    folder = Path(file).parent if file != "<spec>" else tmp_path_factory.mktemp("fuzz")
    path = tmp_path_factory.mktemp("spec") / "fuzz.inc"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    # keep includes resolvable: shipped specs include files next to them (and `../lib/` from variants/)
    proc = run_incdsl("check", "-I", folder, "-I", Path(folder).parent, path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
