"""Random spec TEXT for differential tests: networks of many layer kinds and join forms, at odd
sizes, written in the language's surface forms (chains, joins, residuals, blocks, repeats,
labels, `with` scopes, aux heads).

The generator keeps its own idea of the current shape, from closed-form window formulas
written here (not incdsl's), only to steer towards specs that should check: branches of a
join end at the same size, a residual body ends at its input's depth. Whether a spec is valid
and what its shapes are is for the oracles in tests/oraclelib.py to decide (torch runs
the compiled model), so a slip here costs a rejected case, not a wrong verdict.

Draws go through a `Pick` so the same generator serves Hypothesis (`HypothesisPick`, which
shrinks) and a seeded `random.Random` (`RandomPick`, for long local runs).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

ACTS = ("relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "elu", "leaky_relu", "hardswish", "hardsigmoid")


class RandomPick:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options):
        return options[self.rng.randrange(len(options))]

    def bool(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


class HypothesisPick:
    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, options):
        return self.data.draw(self.st.sampled_from(list(options)))

    def bool(self, p: float = 0.5) -> bool:
        # shrinks towards False; p is a hint only (Hypothesis draws booleans evenly)
        return self.data.draw(self.st.booleans())


# --- shape formulas (PyTorch's, per axis) ---------------------------------------------------------

def window_out(n: int, k: int, s: int, d: int, pad, ceil: bool) -> int:
    """Output length of a window over n: pad "V", "S" or (before, after); k before dilation."""
    k = d * (k - 1) + 1
    if pad == "S":
        return math.ceil(n / s)
    before, after = (0, 0) if pad == "V" else pad
    span = n + before + after - k
    if span < 0:
        return 0
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:
        out -= 1
    return out


@dataclass
class Ctx:
    """What a statement may use: the blocks and labels written so far."""
    pick: object
    blocks: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # label -> shape, visible in this body
    counter: list = field(default_factory=lambda: [0])
    depth: int = 0

    def fresh(self, stem: str) -> str:
        self.counter[0] += 1
        return f"{stem}{self.counter[0]}"


# --- single layers ------------------------------------------------------------------------------

def pad_clause(p, kh: int, kw: int, pool: bool):
    """(text, per-axis pads). Pools pad at most half their window (PyTorch's rule)."""
    kind = p.choice(["V", "", "S", "int", "pair", "four"])
    if kind in ("V", ""):
        return (" V" if kind else ""), ("V", "V")
    if kind == "S":
        return " S", ("S", "S")
    lh, lw = (kh // 2, kw // 2) if pool else (3, 3)
    if kind == "int":
        v = p.int(0, min(lh, lw))
        return f" pad = {v}", ((v, v), (v, v))
    if kind == "pair":
        a, b = p.int(0, lh), p.int(0, lw)
        return f" pad = ({a}, {b})", ((a, a), (b, b))
    t, b, l, r = p.int(0, lh), p.int(0, lh), p.int(0, lw), p.int(0, lw)
    return f" pad = ({t}, {b}, {l}, {r})", ((t, b), (l, r))


def conv_layer(ctx: Ctx, shape, *, keep_size: bool = False, filters: int | None = None):
    p = ctx.pick
    c, h, w = shape
    if keep_size:
        kh, kw = p.choice([(1, 1), (3, 3), (1, 3), (3, 1), (5, 5), (2, 2), (1, 7)])
        s, d, pad_text, pads = 1, 1, (" S" if (kh, kw) != (1, 1) else ""), ("S", "S")
        if (kh, kw) != (1, 1) and p.bool(0.3):
            d = p.int(1, 2)
    else:
        kh, kw = p.int(1, 5), p.int(1, 5)
        s, d = p.choice([1, 1, 2, 2, 3]), p.choice([1, 1, 1, 2])
        pad_text, pads = pad_clause(p, kh, kw, pool=False)
    oh = window_out(h, kh, s, d, pads[0], False)
    ow = window_out(w, kw, s, d, pads[1], False)
    if oh < 1 or ow < 1:
        pad_text, pads, oh, ow = " S", ("S", "S"), -(-h // s), -(-w // s)
    groups = 1
    kind = p.choice(["plain", "plain", "grouped", "depthwise"])
    if kind == "depthwise":
        groups = c
    elif kind == "grouped":
        groups = p.choice([g for g in (1, 2, 3, 4) if c % g == 0])
    fixed = filters is not None
    if filters is None:
        filters = groups * p.int(1, 4) if groups > 1 else p.int(1, 8)
    elif filters % groups:
        groups = 1
    extra = ""
    if d > 1:
        extra += f" dilation = {d}"
    if groups > 1:
        extra += f" groups = {groups}"
    if p.bool(0.1) and groups == 1 and not fixed:  # scaled to a multiple of 8 (timm's make_divisible)
        width = p.choice([0.5, 1.5, 2])
        extra += f" width = {width}"
        filters, scaled = 16, int(16 * width)
    extra += p.choice(["", "", " bn = 0.001", " bn = on", " act = off", " bias = no", " bias = yes bn = on",
                       f" act = {p.choice(ACTS)}", f" bn = on act = {p.choice(ACTS)}"])
    stride = f" /{s}" if s > 1 else p.choice(["", " /1"])
    kernel = f"{kh}x{kw}"
    text = f"conv {kernel} {filters}{stride}{pad_text}{extra}"
    return text, (scaled if " width = " in extra else filters, oh, ow)


def pool_layer(ctx: Ctx, shape, *, keep_size: bool = False):
    p = ctx.pick
    c, h, w = shape
    op = p.choice(["maxpool", "avgpool"])
    if keep_size:
        k = p.choice([1, 2, 3, 5])
        return f"{op} {k}x{k} S" + (" count_pad = no" if op == "avgpool" and p.bool() else ""), shape
    kh, kw = p.int(1, 4), p.int(1, 4)
    s = p.choice([1, 2, 2, 3])
    pad_text, pads = pad_clause(p, kh, kw, pool=True)
    ceil = p.bool(0.4)
    oh = window_out(h, kh, s, 1, pads[0], ceil)
    ow = window_out(w, kw, s, 1, pads[1], ceil)
    if oh < 1 or ow < 1:
        pad_text, pads, ceil, oh, ow = " S", ("S", "S"), False, -(-h // s), -(-w // s)
    extra = " ceil = yes" if ceil else ""
    if op == "avgpool" and p.bool():
        extra += " count_pad = no"
    kernel = f"{kh}" if kh == kw and p.bool() else f"{kh}x{kw}"
    return f"{op} {kernel} /{s}{pad_text}{extra}", (c, oh, ow)


def same_shape_layer(ctx: Ctx, shape):
    """A layer that keeps C x H x W."""
    p = ctx.pick
    kind = p.choice(["bn", "act", "relu", "prelu", "dropout", "identity", "lrn", "learned_scale",
                     "stochastic_depth", "drop_path", "conv1", "pool", "layer_norm", "layer_scale"])
    if kind == "act":
        return f"act {p.choice(ACTS)}", shape
    if kind == "prelu":
        return "prelu" + (" shared = yes" if p.bool(0.3) else ""), shape
    if kind == "dropout":
        return f"dropout {p.choice(['0.1', '0.5', '0'])}", shape
    if kind == "lrn":
        return f"lrn {p.choice([1, 2, 3, 5])}", shape
    if kind == "learned_scale":
        return f"learned_scale {p.choice(['0.5', '1', '(-2)'])}", shape
    if kind == "layer_norm":
        return f"layer_norm {p.choice(['1e-6', '0.001'])}", shape
    if kind == "layer_scale":
        return f"layer_scale {p.choice(['0.5', '(-1.5)'])}", shape
    if kind == "stochastic_depth":
        return f"stochastic_depth {p.choice(['0.8', '1', '0.5'])}", shape
    if kind == "drop_path":
        return f"drop_path {p.choice(['0.2', '0'])}", shape
    if kind == "conv1":
        return conv_layer(ctx, shape, keep_size=True, filters=shape[0])
    if kind == "pool":
        return pool_layer(ctx, shape, keep_size=True)
    return kind, shape


def reshape_layer(ctx: Ctx, shape):
    """A layer that changes the shape without weights (mostly)."""
    p = ctx.pick
    c, h, w = shape
    kind = p.choice(["upsample", "upsample_to", "channels", "zeropad", "pad_channels", "adaptive", "gap", "shuffle"])
    if kind == "upsample" and h * w <= 400:
        f = p.int(1, 3)
        return f"upsample {f}" + (" mode = bilinear" if p.bool(0.3) else ""), (c, h * f, w * f)
    if kind == "upsample_to":
        oh, ow = p.int(1, 2 * h + 1), p.int(1, 2 * w + 1)
        return f"upsample to {oh}x{ow} mode = {p.choice(['nearest', 'bilinear'])}", (c, oh, ow)
    if kind == "channels" and c > 1:
        a = p.int(0, c - 1)
        b = p.int(a + 1, c)
        return f"channels {a}:{b}", (b - a, h, w)
    if kind == "shuffle" and c > 1:
        return f"shuffle {p.choice([g for g in range(2, c + 1) if c % g == 0])}", shape
    if kind == "zeropad":
        t, b, l, r = (p.int(0, 2) for _ in range(4))
        if p.bool():
            return f"zeropad({t}, {b}, {l}, {r})", (c, h + t + b, w + l + r)
        return f"zeropad right = {r}", (c, h, w + r)
    if kind == "pad_channels":
        d = c + p.int(0, 4)
        return f"pad_channels {d}" + (" place = both" if p.bool() else ""), (d, h, w)
    if kind == "adaptive":
        oh, ow = p.int(1, h + 1), p.int(1, w + 1)
        return f"{p.choice(['adaptive_avgpool', 'adaptive_maxpool'])} {oh}x{ow}", (c, oh, ow)
    return "gap", (c, 1, 1)


def any_layer(ctx: Ctx, shape):
    r = ctx.pick.choice(["conv", "conv", "conv", "pool", "pool", "same", "same", "reshape"])
    if r == "conv":
        return conv_layer(ctx, shape)
    if r == "pool":
        return pool_layer(ctx, shape)
    if r == "same":
        return same_shape_layer(ctx, shape)
    return reshape_layer(ctx, shape)


def keep_layer(ctx: Ctx, shape):
    """A layer that keeps the spatial size (branches of a join)."""
    r = ctx.pick.choice(["conv", "conv", "pool", "same"])
    if r == "conv":
        return conv_layer(ctx, shape, keep_size=True)
    if r == "pool":
        return pool_layer(ctx, shape, keep_size=True)
    return same_shape_layer(ctx, shape)


def chain(ctx: Ctx, shape, layer, n_max: int = 3):
    parts = []
    for _ in range(ctx.pick.int(1, n_max)):
        text, shape = layer(ctx, shape)
        parts.append(text)
    return " -> ".join(parts), shape


def to_depth(ctx: Ctx, text: str, shape, depth: int):
    """Append a 1x1 conv to `depth` channels unless the chain already ends there."""
    if shape[0] == depth and ctx.pick.bool():
        return text, shape
    act = ctx.pick.choice(["", " act = off", " bn = on act = off"])
    return f"{text} -> conv 1x1 {depth}{act}", (depth,) + shape[1:]


# --- statements ---------------------------------------------------------------------------------

def indent(lines, n: int = 1):
    return ["    " * n + ln for ln in lines]


def branch_lines(ctx: Ctx, shape, depth: int | None, reduce: bool):
    """One join branch: (lines, shape). `depth`: the channels it must end with; `reduce`: stride 2
    (SAME, so every branch gives ceil(n / 2))."""
    p = ctx.pick
    if reduce:
        c = depth or p.int(1, 8)
        kind = p.choice(["conv", "pool"]) if depth in (None, shape[0]) else "conv"
        if kind == "pool":
            text, out = f"{p.choice(['maxpool', 'avgpool'])} 3x3 /2 S", (shape[0], -(-shape[1] // 2), -(-shape[2] // 2))
        else:
            k = p.choice([1, 3, 2])
            text, out = f"conv {k}x{k} {c} /2 S", (c, -(-shape[1] // 2), -(-shape[2] // 2))
        return [f"branch: {text}"], out
    if depth == shape[0] and p.bool(0.3):
        return ["branch: identity"], shape
    if ctx.depth < 3 and p.bool(0.25):  # a nested statement inside the branch
        inner = Ctx(p, ctx.blocks, dict(ctx.labels), ctx.counter, ctx.depth + 1)
        lines, out = statement(inner, shape, keep=True)
        if depth is not None and out[0] != depth:
            lines.append(f"conv 1x1 {depth} act = off")
            out = (depth,) + out[1:]
        return ["branch:"] + indent(lines), out
    start, prefix = shape, ""
    if p.bool(0.3):  # a plain 1x1 first: siblings that `--optimize train` runs as one conv
        k = p.int(1, 6)
        start, prefix = (k,) + shape[1:], f"conv 1x1 {k} -> "
    text, out = chain(ctx, start, keep_layer)
    text = prefix + text
    if depth is not None:
        text, out = to_depth(ctx, text, out, depth)
    return [f"branch: {text}"], out


def join_statement(ctx: Ctx, shape, keep: bool = False):
    """concat, add (weights, act), mean (drop path), max, multiply (SE), gate or concat(pad = yes);
    stride-2 branches unless `keep`."""
    p = ctx.pick
    kind = p.choice(["concat", "concat", "add", "add", "mean", "max", "multiply", "gate"] + ([] if keep else ["concat_pad"]))
    reduce = not keep and kind in ("concat", "add", "mean", "max") and p.bool(0.25)
    n = p.int(3, 3) if kind == "gate" else p.int(2, 4) if kind != "concat" else p.int(1, 4)
    if kind == "concat_pad":
        return concat_pad(ctx, shape)
    if kind == "multiply" and p.bool():  # squeeze-and-excitation: a Cx1x1 branch scales channels
        r = p.int(1, 4)
        return ["multiply:", "    branch: identity",
                f"    branch: gap -> conv 1x1 {r} -> conv 1x1 {shape[0]} act = sigmoid"], shape
    depth = None if kind == "concat" else p.choice([shape[0], p.int(1, 8)])
    header = kind + ":"
    if kind == "add":
        opts = []
        if p.bool():
            opts.append(f"act = {p.choice(ACTS)}")
        if p.bool(0.4):
            opts.append("weights = (" + ", ".join(p.choice(["0.5", "1", "0.25", "-1", "2"]) for _ in range(n)) + ")")
        header = f"add({', '.join(opts)}):" if opts else "add:"
    elif kind == "mean" and p.bool(0.4):
        header = f"mean(drop_path = {p.choice(['0.15', '0.5'])}):"
    lines, outs = [header], []
    for _ in range(n):
        b, out = branch_lines(ctx, shape, depth, reduce)
        lines += indent(b)
        outs.append(out)
    if kind == "gate":
        lines[1] = lines[1] + " -> act sigmoid" if not lines[1].endswith(":") else lines[1]
    if kind == "concat":
        return lines, (sum(o[0] for o in outs),) + outs[0][1:]
    return lines, outs[0]


def concat_pad(ctx: Ctx, shape):
    """`concat(pad = yes)`: branches of different sizes, smaller ones zero-padded."""
    p = ctx.pick
    lines, outs = ["concat(pad = yes):"], []
    for _ in range(p.int(2, 3)):
        text, out = chain(ctx, shape, lambda c, s: conv_layer(c, s) if p.bool() else pool_layer(c, s), 2)
        lines.append(f"    branch: {text}")
        outs.append(out)
    return lines, (sum(o[0] for o in outs), max(o[1] for o in outs), max(o[2] for o in outs))


def residual_statement(ctx: Ctx, shape, keep: bool = False):
    """A residual of any form: scaled, learned, stochastic depth, drop path, swapout, PyramidNet's
    separated form, or a projection shortcut (stride 2 unless `keep`)."""
    p = ctx.pick
    c, h, w = shape
    opts = []
    form = p.choice(["plain", "scale", "learned", "survive", "drop_path", "swapout", "separate", "project"])
    if form == "scale":
        opts.append(f"scale = {p.choice(['0.17', '0.1', '2', '-0.5'])}")
    elif form == "learned":
        opts.append(p.choice(["scale = learned", "scale = learned(0.1)"]))
    elif form == "survive":
        opts.append(f"survive = {p.choice(['0.8', '0.5', '1'])}")
    elif form == "drop_path":
        opts.append(f"drop_path = {p.choice(['0.1', '0'])}")
    elif form == "swapout":
        opts.append("swapout = (0.9, 0.5)")
    if p.bool(0.3):
        opts.append(f"act = {p.choice(ACTS + ('off',))}")
    if form == "separate":
        grow = c + p.int(1, 4)
        opts = [f"survive = {p.choice(['0.8', '0.5'])}", "separate = yes"]
        header = f"residual({', '.join(opts)}):"
        return [header, f"    conv 3x3 {grow} S", f"    shortcut: pad_channels {grow}"], (grow, h, w)
    header = f"residual({', '.join(opts)}):" if opts else "residual:"
    if form == "project":
        f = p.int(1, 8)
        s = 1 if keep else p.choice([1, 2])
        body = [f"conv 3x3 {f} /{s} S" + p.choice(["", " act = off", " bn = on"])]
        if p.bool():
            body.append(f"conv 3x3 {f} S act = off")
        short = p.choice([f"conv 1x1 {f} /{s} act = off",
                          f"conv 1x1 {f} /{s} S bn = on act = off"] +
                         ([f"maxpool 1x1 /{s} -> pad_channels {f}"] if f >= c else []))
        return [header] + indent(body + [f"shortcut: {short}"]), (f, -(-h // s), -(-w // s))
    text, out = chain(ctx, shape, keep_layer, 2)
    body = [text]
    if p.bool(0.3) and ctx.depth < 3:  # a join inside the body
        inner = Ctx(p, ctx.blocks, dict(ctx.labels), ctx.counter, ctx.depth + 1)
        body += join_statement(inner, out, keep=True)[0]  # keeps the size; the 1x1 below sets the depth
    body.append(f"conv 1x1 in.c{p.choice(['', ' act = off', ' bn = on act = off'])}")
    return [header] + indent(body), shape


def block_statement(ctx: Ctx, shape):
    p = ctx.pick
    name = ctx.fresh("blk")
    n, m = p.int(1, 6), p.int(1, 3)
    variant = p.choice(["plain", "if", "residual"])
    if variant == "if":
        body = ["    let d = n * m",
                '    require d > 0, "d must be positive"',  # holds: a requirement makes nothing
                "    if m > 1:", "        conv 3x3 d S", "    else:", "        conv 1x1 d -> bn"]
    elif variant == "residual":
        body = ["    conv 1x1 n -> conv 3x3 (n * m) S", "    residual:", "        conv 3x3 in.c S act = off"]
    else:
        body = ["    conv 1x1 n -> conv 3x3 (n * m) S"]
    ctx.blocks.append(f"block {name}(n, m = 2):\n" + "\n".join(body) + "\n")
    call = p.choice([f"{name}({n}, {m})", f"{name}(n = {n}, m = {m})", f"{name}({n}, m = {m})"])
    count = p.int(1, 3)
    return [f"repeat {count}: {call}" if count > 1 else call], (n * m, shape[1], shape[2])


FRACTAL = """block fractal(c, f):
    if c == 1:
        conv 3x3 f S
    else:
        mean(flat = yes{args}):
            branch: fractal(c - 1, f) -> fractal(c - 1, f)
            branch: fractal(1, f)
"""


def fractal_statement(ctx: Ctx, shape):
    """FractalNet's recursive expansion (one flat mean of c columns), drop-path and all."""
    p = ctx.pick
    if any(b.startswith("block fractal(") for b in ctx.blocks):
        f = p.int(1, 6)
        return [f"fractal({p.int(1, 3)}, {f})"], (f,) + shape[1:]
    args = p.choice(["", ", drop_path = 0.15", ", drop_path = 0.15, global_path = 0.5"])
    ctx.blocks.append(FRACTAL.format(args=args))
    f = p.int(1, 6)
    return [f"fractal({p.int(2, 3)}, {f})"], (f,) + shape[1:]


def named_statement(ctx: Ctx, shape):
    """Named tensors: `as`, `branch from`, `channels`, `concat(pad = yes)` of earlier taps."""
    p = ctx.pick
    c, h, w = shape
    a, b = ctx.fresh("t"), ctx.fresh("t")
    if p.bool() and c >= 2:
        k = p.int(1, c - 1)
        return [f"channels 0:{k} as {a}", "add(act = relu):",
                f"    branch from {a}: conv 3x3 {k} S act = off",
                f"    branch from {a}: identity"], (k, h, w)
    if p.bool():  # a concatenation read twice: by the next statement and by name
        f, g = p.int(1, 4), p.int(1, 4)
        return [f"concat as {a}:", f"    branch: conv 1x1 {f}", f"    branch: conv 1x1 {g} -> conv 3x3 {g} S",
                "add:", f"    branch from {a}: identity",
                f"    branch: conv 1x1 {f + g} act = off",
                f"    branch from {a}: maxpool 3x3 S"], (f + g, h, w)
    f, r = p.int(1, 6), p.int(1, 4)
    return [f"conv 1x1 {f} as {a}",
            f"conv 3x3 {f} /2 S as {b}",
            "concat(pad = yes):",
            f"    branch from {a}: identity",
            f"    branch from {b}: conv 1x1 {r}",
            "    branch: maxpool 2x2 /2 S"], (2 * f + r, h, w)


def take_statement(ctx: Ctx, shape):
    """`take NAME`: two streams split off one tensor by channels, joined again."""
    p = ctx.pick
    c, h, w = shape
    a, b = ctx.fresh("t"), ctx.fresh("t")
    k = p.int(1, c - 1)
    return [f"identity as {a}",
            f"take {a} -> channels 0:{k} as {b}",
            f"take {a} -> channels {k}:{c}",
            "concat:",
            f"    branch: conv 3x3 {c - k} S act = off",
            f"    branch from {b}: conv 1x1 {k}"], (c, h, w)


def repeated_statement(ctx: Ctx, shape):
    """`repeat N:` (or a block called N times) around a residual or a join that keeps the
    shape, so that every instance reads what the first did: repeated scopes, sibling fusion
    in each instance, aux heads inside blocks."""
    p = ctx.pick
    inner = Ctx(p, ctx.blocks, {}, ctx.counter, ctx.depth + 1)
    if p.bool():
        lines, out = residual_statement(inner, shape, keep=True)
        if out != shape:  # a residual that changes the depth: project back
            lines += [f"conv 1x1 {shape[0]} act = off"]
    else:
        lines = ["add(act = relu):"]
        for _ in range(p.int(2, 3)):
            b, _ = branch_lines(inner, shape, shape[0], False)
            lines += indent(b)
    count = p.int(1, 3)
    if p.bool():
        return [f"repeat {count}{p.choice(['', ' as i'])}:"] + indent(lines), shape
    name = ctx.fresh("rep")
    aux = count == 1 and p.bool(0.3)  # a head's name is its identity: only in a block made once
    body = lines + ([f"aux {name}_head(weight = 0.2): gap -> flatten -> linear 3"] if aux else [])
    ctx.blocks.append(f"block {name}:\n" + "".join(f"    {ln}\n" for ln in body))
    return [f"repeat {count}: {name}" if count > 1 else name], shape


def statement(ctx: Ctx, shape, keep: bool = False):
    """One statement: (lines, shape). `keep`: the spatial size stays (inside branches)."""
    p = ctx.pick
    kinds = ["layer", "layer", "chain", "join", "join", "residual", "repeat", "block", "with", "fractal", "named",
             "repeated"]
    if shape[0] >= 2:
        kinds.append("take")

    if keep:
        kinds = ["keep", "join", "residual"]
    kind = p.choice(kinds)
    if kind == "fractal":
        return fractal_statement(ctx, shape)
    if kind == "repeated":
        return repeated_statement(ctx, shape)
    if kind == "named":
        return named_statement(ctx, shape)
    if kind == "take":
        return take_statement(ctx, shape)
    if kind == "keep":
        text, out = chain(ctx, shape, keep_layer, 2)
        return [text], out
    if kind == "layer":
        text, out = any_layer(ctx, shape)
        return [text], out
    if kind == "chain":
        text, out = chain(ctx, shape, any_layer)
        return [text], out
    if kind == "join":
        return join_statement(ctx, shape, keep)
    if kind == "residual":
        return residual_statement(ctx, shape, keep)
    if kind == "repeat":
        count, base = p.int(0, 3), p.int(1, 5)
        out = (base + 2 * (count - 1),) + shape[1:] if count else shape
        return [f"repeat {count} as i: conv 1x1 ({base} + 2 * i) S"], out
    if kind == "block":
        return block_statement(ctx, shape)
    inner = Ctx(p, ctx.blocks, ctx.labels, ctx.counter, ctx.depth + 1)
    lines, out = statement(inner, shape)
    scope = p.choice(["conv(bn = 0.001, act = relu6)", "conv(pad = S), pool(pad = S)", "avgpool(count_pad = no)",
                      "conv(bn = on), residual(act = off)", "add(act = relu)"])
    return [f"with {scope}:"] + indent(lines), out


def head(ctx: Ctx, shape):
    p = ctx.pick
    kind = p.choice(["none", "gap", "flatten", "gap_act"])
    if kind == "none":
        return [], shape
    parts = ["gap"] if kind != "flatten" else []
    parts.append("flatten")
    if p.bool():
        parts.append(f"dropout {p.choice(['0.2', '0.5'])}")
    if p.bool(0.3):
        parts.append(f"linear {p.int(2, 12)} act = {p.choice(ACTS)}")
    if p.bool(0.3):
        parts.append("bn")
    lines = []
    if p.bool(0.3):  # layers and joins on a flat vector
        parts.append(p.choice(["prelu", "prelu shared = yes", "learned_scale 0.5", "stochastic_depth 0.8",
                               "swapout 0.5", "drop_path 0.1", "linear 6 -> pad_channels 9", "act gelu",
                               "layer_norm", "layer_scale 2"]))
    if p.bool(0.2):
        u = p.int(2, 6)
        join = p.choice(["concat", "add", "mean", "max", "multiply"])
        lines = [" -> ".join(parts), f"{join}:", f"    branch: linear {u}", f"    branch: linear {u} act = tanh -> prelu"]
        parts = []
    parts.append("linear classes" + p.choice(["", " bias = no"]))
    if p.bool(0.2):
        parts.append("softmax")
    return lines + [" -> ".join(parts)], (None,)


def network(pick, max_statements: int = 6) -> str:
    """A whole spec's text."""
    ctx = Ctx(pick)
    c = pick.choice([1, 2, 3, 4, 6])
    h, w = pick.choice([(1, 1), (7, 5), (5, 7), (8, 8), (9, 9), (13, 11), (16, 16), (2, 3), (17, 17)])
    shape = (c, h, w)
    lines = []
    aux = None
    for i in range(pick.int(1, max_statements)):
        stmt, shape = statement(ctx, shape)
        if aux is None and shape[1] >= 1 and pick.bool(0.15) and not stmt[0].startswith(("with", "repeat")) \
                and " as " not in stmt[0]:
            aux = ctx.fresh("tap")
            stmt = [stmt[0] + f" as {aux}"] + stmt[1:] if not stmt[0].endswith(":") else \
                [stmt[0][:-1] + f" as {aux}:"] + stmt[1:]
        lines += stmt
    if aux is not None:
        lines.append(f"aux side(weight = 0.3) from {aux}: gap -> flatten -> linear classes")
    tail, _ = head(ctx, shape)
    lines += tail
    body = "".join(f"    {ln}\n" for ln in lines)
    return f"network gen(classes = 5):\n    input {c}x{h}x{w}\n{body}" + "".join(ctx.blocks)
