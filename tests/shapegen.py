"""Random valid specs with the shape each is expected to give (hypothesis strategies), and the
closed-form window formulas they are computed by, written independently of incdsl (see
test_properties's docstring). Shared by test_properties and test_walk."""
import math

from hypothesis import strategies as st


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
