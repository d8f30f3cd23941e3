"""The oracles of the differential tests (tests/test_differential.py's docstring lists them):
each checks one of incdsl's claims about a network against something that does not share
incdsl's code. Also used by the zoo tests on the layer kinds they add."""
from __future__ import annotations

import math
import re

import pytest

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.report.conventions import count_convention  # noqa: E402

from speclib import quiet  # noqa: E402
from modellib import randomise_norms, unfused_grads  # noqa: E402


# --- helpers --------------------------------------------------------------------------------------

def randomise(model, seed: int = 0):
    """Batch-norm statistics and affine values away from 0/1 (folding must matter), learned
    scales away from 0 (a branch scaled by 0 hides its mistakes)."""
    randomise_norms(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 1:
                p.copy_(torch.rand((), generator=gen) + 0.5)
    return model


def run_all(model, x):
    """Trunk and aux heads (eval mode runs the heads only when asked)."""
    if model.aux_names:
        feats, taps = model.forward_trunk(x)
        return [model.forward_head(feats), *model.forward_aux(*taps)]
    return [model(x)]


def hooked_shapes(model, x) -> dict:
    """Every IR node's output shape (batch left off), as torch computes it."""
    shapes, handles = {}, []
    for node, path in model.node_paths.items():
        def hook(mod, args, out, node=node):
            shapes[node] = tuple(out.shape[1:])
        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            run_all(model, x)
    finally:
        for h in handles:
            h.remove()
    return shapes


# --- the claims, one function each (the scratch runner calls them too) ---------------------------

def check_shapes_and_activations(net, model):
    """Every node's shape (the IR's, and as `check --ir` prints it) and activation count are
    those of torch's tensor."""
    x = torch.randn(2, *net.input_shape)
    shapes = hooked_shapes(model.eval(), x)
    assert set(model.node_paths) == set(net.graph.nodes) - {net.input}
    wrong = {n: (shapes.get(n), net.graph.nodes[n]["shape"]) for n in model.node_paths
             if shapes.get(n) != tuple(net.graph.nodes[n]["shape"])}
    assert not wrong, wrong
    # what `check --ir` prints: one node a line, ending in its shape
    line_re = re.compile(r"(\S+) = .* -> (\S+)(?: \[aux \S+\])?")
    printed = dict(line_re.fullmatch(line).groups() for line in net.format().splitlines()[1:])
    assert all(printed[n] == "x".join(map(str, shapes[n])) for n in shapes)
    with torch.no_grad():
        assert tuple(model(x).shape[1:]) == tuple(net.output_shape)  # check's `output` line
    costs = incdsl.count_costs(net)
    for row in costs.nodes:
        expect = math.prod(shapes[row.name]) if row.name in shapes else math.prod(net.input_shape)
        assert row.activations == expect, row.name
    assert costs.total_with_aux.activations == math.prod(net.input_shape) + sum(math.prod(s) for s in shapes.values())


def check_memory(net, model, batch: int = 3):
    """`cost --batch B --dtype D`: each row's activation memory is the bytes of that node's
    output tensor for a batch of B in dtype D, and the total adds the input's."""
    from incdsl.report.tables import build_report
    costs = incdsl.count_costs(net)
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        sizes, handles = {}, []
        for node, path in model.node_paths.items():
            def hook(mod, args, out, node=node):
                sizes[node] = (out.numel(), out.numel() * out.element_size())
            handles.append(model.get_submodule(path).register_forward_hook(hook))
        x = torch.randn(batch, *net.input_shape, dtype=dtype)
        try:
            with torch.no_grad():
                run_all(model.eval().to(dtype), x)
        finally:
            for h in handles:
                h.remove()
        report = build_report(net, costs, "layer", True, name, batch)
        by_row = {r["name"]: r for r in report["rows"]}
        for node, (elements, size) in sizes.items():
            assert (by_row[node]["activations"], by_row[node]["memory_bytes"]) == (elements, size), node
        assert report["total"]["memory_bytes"] == x.numel() * x.element_size() + sum(b for _, b in sizes.values())
    model.float()


def check_params(net, model):
    costs = incdsl.count_costs(net)
    assert sum(p.numel() for p in model.parameters()) == costs.total_with_aux.params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == costs.total_with_aux.params
    aux = tuple(p + "." for p in model.aux_paths)
    assert sum(p.numel() for k, p in model.named_parameters() if not k.startswith(aux)) == costs.total.params
    for row in costs.nodes:
        if row.op != "input":
            module = model.get_submodule(model.node_paths[row.name])
            assert sum(p.numel() for p in module.parameters()) == row.params, row.name


def check_macs(net, model):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        run_all(model.eval(), torch.randn(1, *net.input_shape))
    costs = incdsl.count_costs(net)
    assert counter.get_total_flops() == 2 * costs.total_with_aux.macs
    # node by node, so that no two errors cancel: each node's module again on its recorded inputs
    inputs, handles = {}, []
    for node, path in model.node_paths.items():
        handles.append(model.get_submodule(path).register_forward_pre_hook(
            lambda mod, args, node=node: inputs.__setitem__(node, args)))
    try:
        with torch.no_grad():
            run_all(model, torch.randn(1, *net.input_shape))
    finally:
        for h in handles:
            h.remove()
    for row in costs.nodes:
        if row.op != "input":
            one = FlopCounterMode(display=False)
            with torch.no_grad(), one:
                model.get_submodule(model.node_paths[row.name])(*inputs[row.name])
            assert one.get_total_flops() == 2 * row.macs, row.name


def tool_count(name: str, model, x):
    """What counter `name` prints for `model` on `x` (batch 1)."""
    if name == "fvcore":
        from fvcore.nn import FlopCountAnalysis
        fa = FlopCountAnalysis(model, x)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        return fa.total()
    if name in ("ptflops", "ptflops-aten"):
        from ptflops import get_model_complexity_info
        return get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False,
                                         backend="pytorch" if name == "ptflops" else "aten")[0]
    if name == "thop":
        import thop
        return thop.profile(model, inputs=(x,), verbose=False)[0]
    if name == "torchinfo":
        import torchinfo
        return torchinfo.summary(model, input_size=tuple(x.shape), verbose=0).total_mult_adds
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def check_convention(net, name: str):
    model = incdsl.to_torch(net, seed=0).eval()
    with quiet(), torch.no_grad():
        printed = tool_count(name, model, torch.zeros(1, *net.input_shape))
    assert printed == count_convention(net, incdsl.count_costs(net), name), name


def level_pair(net, level, dtype=torch.float32):
    plain = randomise(incdsl.to_torch(net, seed=0))
    fast = incdsl.to_torch(net, seed=0, optimize=level)
    fast.load_state_dict(plain.state_dict())
    return plain.to(dtype), fast.to(dtype)


def near(got, want, tolerance, what=""):
    got, want = [o.double() for o in got], [o.double() for o in want]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape, what
        assert (a - b).abs().max().item() <= tolerance * max(b.abs().max().item(), 1.0), what


def check_levels_eval(net, level):
    """Eval mode at `level`: level none's outputs (aux heads too), the same on a second run
    (dropout and the stochastic layers are off), and with autograd on."""
    plain, fast = level_pair(net, level)
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(4))
    plain.eval(), fast.eval()
    with torch.no_grad():
        want = run_all(plain, x)
        got = run_all(fast, x)
        again = run_all(fast, x)
    near(got, want, 1e-4, f"eval at {level}")
    near(again, got, 0, "eval is deterministic")  # dropout and stochastic layers are off in eval
    grad_x = x.clone().requires_grad_()  # eval with autograd: another path at level infer
    out = run_all(fast, grad_x)
    near(out, want, 1e-4, f"eval with autograd at {level}")


def check_levels_train(net, level):
    """Training mode at `level`, in float64 under one seed: level none's outputs, input and
    parameter gradients and updated running statistics, to rounding."""
    plain, fast = level_pair(net, level, torch.float64)
    x = torch.randn(4, *net.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    plain.train(), fast.train()
    outs, inputs = [], []
    for model in (plain, fast):
        torch.manual_seed(7)
        xi = x.clone().requires_grad_()  # a network without parameters still has input gradients
        out = model(xi)
        out = [out] if isinstance(out, torch.Tensor) else [out[0], *out[1]]
        # weights that differ per element: a permuted or misplaced gradient changes the sum
        sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in out).backward()
        outs.append(out)
        inputs.append(xi.grad)
    near(outs[1], outs[0], 1e-9, f"training outputs at {level}")
    near([inputs[1]], [inputs[0]], 1e-9, f"input gradient at {level}")
    grads_a, grads_b = {k: p.grad for k, p in plain.named_parameters()}, unfused_grads(fast)
    assert grads_a.keys() == grads_b.keys()
    for k, g in grads_a.items():
        if g is None or grads_b[k] is None:
            assert g is None and grads_b[k] is None, k
        else:
            near([grads_b[k]], [g], 1e-9, k)
    sa, sb = plain.state_dict(), fast.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        near([sb[k]], [sa[k]], 1e-9, k)


def check_state_dicts(net, level):
    """The state dict is the spec's at every level; it goes both ways, and `load_weights` (by
    key order, and by data flow from the plain model) gives the same outputs."""
    plain = randomise(incdsl.to_torch(net, seed=0), seed=3).eval()
    fast = incdsl.to_torch(net, seed=1, optimize=level).eval()
    assert list(fast.state_dict()) == list(plain.state_dict())
    fast.load_state_dict(plain.state_dict())
    back = incdsl.to_torch(net, seed=2).eval()
    back.load_state_dict(fast.state_dict())
    loaded = incdsl.to_torch(net, seed=4, optimize=level).eval()
    incdsl.load_weights(loaded, plain.state_dict())
    by_flow = incdsl.to_torch(net, seed=5, optimize=level, weights=plain).eval()
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = run_all(plain, x)
        for model in (fast, back, loaded, by_flow):
            near(run_all(model, x), want, 1e-4, f"round trip at {level}")


# --- an independent evaluator: the language's meaning, from the IR's attributes and torch.nn.functional

F = torch.nn.functional
ACT_FNS = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid,
           "tanh": torch.tanh, "elu": F.elu, "leaky_relu": F.leaky_relu, "hardswish": F.hardswish,
           "hardsigmoid": F.hardsigmoid, None: lambda x: x}


def axis_pads(n: int, k: int, s: int, d: int, pad, axis: int) -> tuple[int, int]:
    """(before, after) on one axis, as the README states V, S and explicit padding."""
    if pad == "V":
        return 0, 0
    if pad == "S":
        return same_pads(n, k, s, d)
    return pad[2 * axis], pad[2 * axis + 1]


def out_len(n: int, k: int, s: int, before: int, after: int, ceil: bool) -> int:
    """PyTorch's rule: ceil rounding, less a last window that starts in the trailing padding."""
    span = n + before + after - k
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + before else out


def ref_pool(x, a, op: str):
    """Pooling by its definition: windows over the padded input (the ceil overhang reads
    nothing); an average divides by the cells of its window in the input, plus the padding
    when `count_pad` (never the overhang)."""
    (kh, kw), (sh, sw) = a["kernel"], a["stride"]
    h, w = x.shape[-2:]
    t, b = axis_pads(h, kh, sh, 1, a["pad"], 0)
    l, r = axis_pads(w, kw, sw, 1, a["pad"], 1)
    oh, ow = out_len(h, kh, sh, t, b, a["ceil"]), out_len(w, kw, sw, l, r, a["ceil"])
    extra_h, extra_w = max((oh - 1) * sh + kh - (h + t + b), 0), max((ow - 1) * sw + kw - (w + l + r), 0)
    if op == "maxpool":
        padded = F.pad(x, (l, r + extra_w, t, b + extra_h), value=float("-inf"))
        return F.max_pool2d(padded, (kh, kw), (sh, sw))[..., :oh, :ow]
    mask = torch.ones(1, 1, h, w, dtype=x.dtype)
    mask = F.pad(mask, (l, r, t, b), value=1.0 if a["count_pad"] else 0.0)
    mask = F.pad(mask, (0, extra_w, 0, extra_h))
    total = F.avg_pool2d(F.pad(x, (l, r + extra_w, t, b + extra_h)), (kh, kw), (sh, sw), divisor_override=1)
    cells = F.avg_pool2d(mask, (kh, kw), (sh, sw), divisor_override=1)
    return (total / cells)[..., :oh, :ow]


def ref_node(op: str, a: dict, xs: list, p):
    """One node's output in eval mode; `p(leaf)` reads the node's parameters."""
    x = xs[0] if xs else None
    if op == "conv":
        (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
        t, b = axis_pads(x.shape[2], kh, sh, dh, a["pad"], 0)
        l, r = axis_pads(x.shape[3], kw, sw, dw, a["pad"], 1)
        y = F.conv2d(F.pad(x, (l, r, t, b)), p("conv.weight"), p("conv.bias") if a["bias"] else None,
                     (sh, sw), 0, (dh, dw), a["groups"])
        if a["bn"] is not None:
            y = F.batch_norm(y, p("bn.running_mean"), p("bn.running_var"), p("bn.weight"), p("bn.bias"), False, 0.0, a["bn"])
        return ACT_FNS[a["act"]](y)
    if op in ("maxpool", "avgpool"):
        return ref_pool(x, a, op)
    if op == "bn":
        return F.batch_norm(x, p("running_mean"), p("running_var"), p("weight"), p("bias"), False, 0.0, a["eps"])
    if op == "act":
        return ACT_FNS[a["fn"]](x)
    if op == "prelu":
        return torch.where(x >= 0, x, x * p("weight").view(1, -1, 1, 1) if x.dim() == 4 else x * p("weight"))
    if op == "linear":
        return ACT_FNS[a["act"]](F.linear(x, p("weight"), p("bias") if a["bias"] else None))
    if op in ("dropout", "identity", "drop_path"):  # eval mode
        return x
    if op == "stochastic_depth":
        return x * a["survive"]
    if op == "swapout":
        return x * a["keep"]
    if op == "learned_scale":
        return x * p("weight")
    if op == "layer_scale":
        return x * p("layer_scale")
    if op == "layer_norm":  # over the channels at each position: move them last, as torchvision's LayerNorm2d
        moved = x.movedim(1, -1)
        return F.layer_norm(moved, moved.shape[-1:], p("weight"), p("bias"), a["eps"]).movedim(-1, 1)
    if op == "gap":
        return x.mean((2, 3), keepdim=True)
    if op == "adaptive_avgpool":
        return F.adaptive_avg_pool2d(x, a["size"])
    if op == "adaptive_maxpool":
        return F.adaptive_max_pool2d(x, a["size"])
    if op == "lrn":
        return F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
    if op == "flatten":
        return x.flatten(1)
    if op == "softmax":
        return x.softmax(1)
    if op == "concat":
        return torch.cat(xs, 1)
    if op == "add":
        return ACT_FNS[a["act"]](sum(s * v for s, v in zip(a["scales"], xs)))
    if op == "mean":
        return sum(xs) / len(xs)
    if op == "max":
        return torch.stack(xs).amax(0)
    if op == "multiply":
        return math.prod(xs)
    if op == "gate":
        t, h, x = xs
        return t * h + (1 - t) * x
    if op == "upsample":
        size = a["size"] or (x.shape[2] * a["factor"], x.shape[3] * a["factor"])
        return F.interpolate(x, size=size, mode=a["mode"], **({"align_corners": False} if a["mode"] == "bilinear" else {}))
    if op == "pad_channels":
        more = a["depth"] - x.shape[1]
        before = more // 2 if a["place"] == "both" else 0
        return F.pad(x, (0, 0) * (x.dim() - 2) + (before, more - before))  # channels are dim 1, flat or not
    if op == "channels":
        return x[:, a["start"]:a["stop"]]
    if op == "zeropad":
        t, b, l, r = a["pad"]
        return F.pad(x, (l, r, t, b))
    if op == "shuffle":  # channels as `groups` rows, transposed: output i reads (i % g) * (c / g) + i // g
        c, g = x.shape[1], a["groups"]
        return x[:, [(i % g) * (c // g) + i // g for i in range(c)]]
    raise NotImplementedError(op)


def reference_outputs(net, model, x) -> dict:
    """Every node's output, computed from the IR with the model's parameters."""
    from incdsl.ir.graph import inputs
    state = model.state_dict()
    values = {}
    for name in net.graph.nodes:  # graph order is a topological order
        node = net.graph.nodes[name]
        if node["op"] == "input":
            values[name] = x
            continue
        path = model.node_paths[name]
        values[name] = ref_node(node["op"], node["attrs"], [values[i] for i in inputs(net.graph, name)],
                                lambda leaf, path=path: state[f"{path}.{leaf}"])
    return values


def check_reference(net, model):
    """The compiled model's every node output equals the reference evaluator's (eval mode)."""
    model = randomise(model).eval().double()
    x = torch.randn(2, *net.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    got = {}
    handles = [model.get_submodule(path).register_forward_hook(
        lambda mod, args, out, node=node: got.__setitem__(node, out)) for node, path in model.node_paths.items()]
    try:
        with torch.no_grad():
            run_all(model, x)
            want = reference_outputs(net, model, x)
    finally:
        for h in handles:
            h.remove()
    for node in model.node_paths:
        near([got[node]], [want[node]], 1e-9, node)


CHECKS = {
    "shapes": lambda net, model: check_shapes_and_activations(net, model),
    "params": lambda net, model: check_params(net, model),
    "memory": lambda net, model: check_memory(net, model),
    "macs": lambda net, model: check_macs(net, model),
    "reference": lambda net, model: check_reference(net, model),
}


def check_all(net, *, conventions=("thop", "ptflops", "ptflops-aten", "torchinfo")):
    model = incdsl.to_torch(net, seed=0)
    for check in CHECKS.values():
        check(net, model)
    for level in ("train", "infer"):
        check_levels_eval(net, level)
        check_levels_train(net, level)
        check_state_dicts(net, level)
    for name in conventions:
        pytest.importorskip(name.split("-")[0])
        check_convention(net, name)


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME: total padding for ceil(n / s) outputs, the odd pixel after."""
    total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2
