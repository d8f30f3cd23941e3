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

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


# --- the formulas --------------------------------------------------------------------------------

def out_size(n: int, k: int, s: int, d: int, pad, ceil: bool) -> int:
    """One axis. pad: "V", "S" or (before, after)."""
    k = d * (k - 1) + 1
    if pad == "S":
        return math.ceil(n / s)
    before, after = (0, 0) if pad == "V" else pad
    if n + before + after < k:
        return 0
    if not ceil:
        return math.floor((n + before + after - k) / s) + 1
    out = math.ceil((n + before + after - k) / s) + 1
    if (out - 1) * s >= n + before:
        out -= 1
    return out


def axis_pad(pad, axis: int):
    return pad if pad in ("V", "S") else (pad[2 * axis], pad[2 * axis + 1])


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


# --- random valid specs ----------------------------------------------------------------------------

class Spec:
    """Text being built and the shape it is expected to give."""

    def __init__(self, shape):
        self.shape = shape
        self.lines: list[str] = []
        self.blocks: list[str] = []


def pad_text(draw, kh, kw, pool: bool):
    """A padding, as (text, per-axis pads for the formulas). Pools pad at most half the window."""
    kind = draw(st.sampled_from(["V", "V-default", "S", "int", "pair", "four"]))
    if kind == "V":
        return " V", ("V", "V")
    if kind == "V-default":
        return "", ("V", "V")
    if kind == "S":
        return " S", ("S", "S")
    lim_h, lim_w = (kh // 2, kw // 2) if pool else (3, 3)
    if kind == "int":
        p = draw(st.integers(0, min(lim_h, lim_w)))
        return f" pad = {p}", ((p, p), (p, p))
    if kind == "pair":
        ph, pw = draw(st.integers(0, lim_h)), draw(st.integers(0, lim_w))
        return f" pad = ({ph}, {pw})", ((ph, ph), (pw, pw))
    top, bottom = draw(st.integers(0, lim_h)), draw(st.integers(0, lim_h))
    left, right = draw(st.integers(0, lim_w)), draw(st.integers(0, lim_w))
    return f" pad = ({top}, {bottom}, {left}, {right})", ((top, bottom), (left, right))


def window_layer(draw, shape, op: str):
    """A conv or pool with random kernel, stride, padding (and dilation, groups or ceil)."""
    c, h, w = shape
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    text, (pad_h, pad_w) = pad_text(draw, kh, kw, pool=op != "conv")
    d = draw(st.integers(1, 2)) if op == "conv" else 1
    ceil = op != "conv" and "S" not in text and draw(st.booleans())
    oh = out_size(h, kh, s, d, pad_h, ceil)
    ow = out_size(w, kw, s, d, pad_w, ceil)
    if oh < 1 or ow < 1:  # the input is too small for this window: SAME padding always fits
        text, ceil, oh, ow = " S", False, math.ceil(h / s), math.ceil(w / s)
    stride = f" /{s}" if s > 1 or draw(st.booleans()) else ""
    if op == "conv":
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
        filters = groups * draw(st.integers(1, 6))
        extra = (f" dilation = {d}" if d > 1 else "") + (f" groups = {groups}" if groups > 1 else "")
        extra += draw(st.sampled_from(["", " bn = 0.001", " act = off", " bias = no", " bn = on act = relu6"]))
        return f"conv {kh}x{kw} {filters}{stride}{text}{extra}", (filters, oh, ow)
    kernel = f"{kh}" if kh == kw and draw(st.booleans()) else f"{kh}x{kw}"
    extra = " ceil = yes" if ceil else ""
    if op == "avgpool" and draw(st.booleans()):
        extra += " count_pad = no"
    return f"{op} {kernel}{stride}{text}{extra}", (c, oh, ow)


def keep_layer(draw, shape):
    """A layer that keeps the spatial size: stride 1, SAME or symmetric explicit padding."""
    c, h, w = shape
    kind = draw(st.sampled_from(["conv-S", "conv-explicit", "maxpool", "avgpool", "1x1"]))
    f = draw(st.integers(1, 8))
    if kind == "conv-S":
        kh, kw = draw(st.sampled_from([(3, 3), (1, 7), (7, 1), (1, 3), (2, 2), (5, 5)]))
        return f"conv {kh}x{kw} {f} S", (f, h, w)
    if kind == "conv-explicit":
        kh, kw = draw(st.sampled_from([(3, 3), (1, 7), (7, 1), (5, 3)]))
        return f"conv {kh}x{kw} {f} pad = ({(kh - 1) // 2}, {(kw - 1) // 2})", (f, h, w)
    if kind == "maxpool":
        return "maxpool 3x3 S", shape
    if kind == "avgpool":
        return "avgpool 3x3 /1 pad = 1 count_pad = no", shape
    return f"conv 1x1 {f}", (f, h, w)


def chain(draw, shape, layer, n_max=3):
    parts = []
    for _ in range(draw(st.integers(1, n_max))):
        text, shape = layer(draw, shape)
        parts.append(text)
    return " -> ".join(parts), shape


def statement(draw, spec: Spec, depth: int = 0):
    """Append one statement (4 spaces deep) and update the expected shape."""
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "chain", "concat", "residual", "projection",
                                 "add", "repeat", "block", "with"]))
    shape = spec.shape
    if kind in ("conv", "maxpool", "avgpool"):
        text, spec.shape = window_layer(draw, shape, kind)
        spec.lines.append(text)
    elif kind == "chain":
        text, spec.shape = chain(draw, shape, lambda dr, sh: window_layer(dr, sh, dr(st.sampled_from(["conv", "maxpool"]))))
        spec.lines.append(text)
    elif kind == "concat":
        spec.lines.append("concat:")
        depth_sum = 0
        for _ in range(draw(st.integers(1, 4))):
            text, out = chain(draw, shape, keep_layer)
            spec.lines.append(f"    branch: {text}")
            depth_sum += out[0]
        spec.shape = (depth_sum,) + shape[1:]
    elif kind == "residual":
        text, out = chain(draw, shape, keep_layer, 2)
        spec.lines += [f"residual(scale = {draw(st.sampled_from(['0.1', '1', '0.17']))}):",
                       f"    {text} -> conv 1x1 in.c act = off"]
    elif kind == "projection":
        f = draw(st.integers(1, 8))
        spec.lines += ["residual(act = relu):", f"    shortcut: conv 1x1 {f} /2 act = off", f"    conv 3x3 {f} /2 S"]
        spec.shape = (f, math.ceil(shape[1] / 2), math.ceil(shape[2] / 2))
    elif kind == "add":
        spec.lines.append("add(act = relu):")
        for _ in range(draw(st.integers(2, 3))):
            layer = draw(st.sampled_from(["identity", "bn", f"conv 3x3 {shape[0]} S", "maxpool 3x3 S"]))
            spec.lines.append(f"    branch: {layer}")
    elif kind == "repeat":
        count, base = draw(st.integers(0, 3)), draw(st.integers(1, 5))
        spec.lines.append(f"repeat {count} as i: conv 1x1 ({base} + 2 * i) S")
        if count:
            spec.shape = (base + 2 * (count - 1),) + shape[1:]
    elif kind == "block":
        name = f"blk{len(spec.blocks)}"
        spec.blocks.append(f"block {name}(n, m = 2):\n    conv 1x1 n -> conv 3x3 (n * m) S\n"
                           f"    residual:\n        conv 1x1 in.c act = off\n")
        n, m = draw(st.integers(1, 6)), draw(st.integers(1, 3))
        call = draw(st.sampled_from([f"{name}({n}, {m})", f"{name}(n = {n}, m = {m})", f"{name}({n}, m = {m})"]))
        count = draw(st.integers(1, 3))
        spec.lines.append(f"repeat {count}: {call}" if count > 1 else call)
        spec.shape = (n * m,) + shape[1:]
    else:  # with: defaults that do not change shapes, around a nested statement
        inner = Spec(shape)
        inner.blocks = spec.blocks
        statement(draw, inner, depth + 1)
        spec.lines.append("with conv(bn = 0.001, act = relu6), avgpool(count_pad = no):")
        spec.lines += [f"    {line}" for line in inner.lines]
        spec.shape = inner.shape


@st.composite
def valid_specs(draw):
    c, h, w = draw(st.integers(1, 6)), draw(st.integers(1, 48)), draw(st.integers(1, 48))
    spec = Spec((c, h, w))
    for _ in range(draw(st.integers(1, 6))):
        statement(draw, spec)
    if draw(st.booleans()):
        spec.lines.append("gap -> flatten -> dropout 0.2 -> linear 10")
        spec.shape = (10,)
    body = "".join(f"    {line}\n" for line in spec.lines)
    return f"network gen(classes = 10):\n    input {c}x{h}x{w}\n{body}" + "".join(spec.blocks), spec.shape


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
