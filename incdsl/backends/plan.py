"""How an IR becomes modules: which block instances get a class, module names, layer constructors.

No torch here: the plan is plain data that `source.py` prints as Python.

Ownership. A compiled network is a tree of modules that mirrors the IR's scope paths
(``inception_a.2/branch_1/conv_0`` -> module ``inception_a[2].branch_1.conv_0``). Every block
instance whose nodes all belong to the same head (all trunk, or all one aux head) becomes a
module with its own class and a straight-line ``forward``; it *owns* the nodes below it that
no deeper such instance owns. The network class owns the rest. Other scopes (branches,
repeat members, labelled composites, instances that mix trunk and aux nodes) are plain
`Scope` containers; a repeat group (``name.0``, ``name.1``, ...) is an ``nn.ModuleList``.

Names. Scope components are DSL names, already identifiers; one that is a Python keyword,
starts with ``_``, or shadows an ``nn.Module`` attribute or the model API gets a ``_``
suffix (``m`` prefix for a leading ``_``), then a further ``_`` until it is unique among its
siblings. State-dict keys are these module paths, so they are stable and readable.
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..ir import inputs
from ..passes.shapes import window

# dir(torch.nn.Module) (public names, torch 2.14), instance attributes, and the model API;
# tests check this list still covers the installed torch.
RESERVED = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
half ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters
parameters register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict
to to_empty train type xpu zero_grad training
num_classes input_shape aux_names aux_weights aux_paths classifiers get_classifier reset_classifier forward_features
forward_head forward_trunk forward_aux
""".split())

HEAD_OPS = {"gap", "flatten", "dropout", "linear", "act", "softmax", "identity"}
_COMPONENT = re.compile(r"^(?P<base>[^.]+)(?:\.(?P<index>\d+))?$")


def legal_name(name: str) -> str:
    """A Python identifier for a DSL name that cannot shadow a module attribute."""
    name = re.sub(r"\W", "_", name)
    if not name or name[0].isdigit() or name.startswith("_"):
        name = "m" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED:
        name += "_"
    return name


def class_name(name: str) -> str:
    """``inception_a`` -> ``InceptionA``."""
    out = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9A-Za-z]+", name) if p)
    return out if out and not out[0].isdigit() else "Net" + out


# --- owners ----------------------------------------------------------------------------------

@dataclass
class Owner:
    """A module with its own class and forward: the network (scope "") or a block instance."""
    scope: str
    block: str | None
    aux: str | None
    parent: str | None
    members: list = field(default_factory=list)  # ("node", name) | ("owner", scope), graph order
    inputs: list = field(default_factory=list)  # IR values it reads from outside
    outputs: list = field(default_factory=list)  # IR values it gives to the outside


def _prefixes(path: str):
    parts = path.split("/") if path else []
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def find_owners(graph) -> tuple[dict[str, Owner], dict[str, str]]:
    """The owners, keyed by scope, and the owner of every node (input excluded)."""
    instances = graph.graph.get("instances", {})
    heads: dict[str, set] = {}
    for name, data in graph.nodes(data=True):
        if data["op"] != "input":
            for pre in _prefixes(data["scope"]):
                if pre in instances:
                    heads.setdefault(pre, set()).add(data["aux"])
    pure = {s: next(iter(a)) for s, a in heads.items() if len(a) == 1}

    def owner_of(scope: str, aux) -> str:
        found = ""
        for pre in _prefixes(scope):
            if pre in pure and pure[pre] == aux:
                found = pre
        return found

    owners = {"": Owner("", None, None, None)}
    for scope in sorted(pure, key=lambda s: s.count("/")):
        parent = owner_of(scope.rpartition("/")[0], pure[scope])
        owners[scope] = Owner(scope, instances[scope]["block"], pure[scope], parent)
    node_owner = {}
    placed = set()
    for name, data in graph.nodes(data=True):
        if data["op"] == "input":
            continue
        own = owner_of(data["scope"], data["aux"])
        node_owner[name] = own
        owners[own].members.append(("node", name))
        # the chain of owners above this node enters each parent at its first node
        child = own
        while child and child not in placed:
            placed.add(child)
            owners[owners[child].parent].members.append(("owner", child))
            child = owners[child].parent
    _connect(graph, owners, node_owner)
    return owners, node_owner


def _connect(graph, owners: dict[str, Owner], node_owner: dict[str, str]) -> None:
    """Fill each owner's `inputs` and `outputs`: the values that cross its boundary."""
    def chain(name):
        out, o = [], node_owner.get(name)
        while o is not None:
            out.append(o)
            o = owners[o].parent if o else None
        return out

    chains = {n: set(chain(n)) for n in node_owner}
    chains[graph.graph["input"]] = {""}
    ends = {graph.graph["output"], *(h["output"] for h in graph.graph["aux"])}
    for name in node_owner:
        for src in inputs(graph, name):
            for o in chains[name] - chains[src]:
                if src not in owners[o].inputs:
                    owners[o].inputs.append(src)
            for o in chains[src] - chains[name]:
                if src not in owners[o].outputs:
                    owners[o].outputs.append(src)
        if name in ends:
            for o in chains[name] - {""}:
                if name not in owners[o].outputs:
                    owners[o].outputs.append(name)
    order = {n: i for i, n in enumerate(graph.nodes)}
    for o in owners.values():
        o.outputs.sort(key=order.get)


# --- module tree -----------------------------------------------------------------------------

@dataclass
class Container:
    """A module that only holds others: a `Scope` (names) or an `nn.ModuleList` (indices)."""
    kind: str  # "scope" | "list"
    children: dict = field(default_factory=dict)  # key -> Container | ("node", name) | ("owner", scope)
    names: dict = field(default_factory=dict)  # DSL name -> legal name (scope containers)

    def key(self, raw: str) -> str:
        if raw not in self.names:
            name = legal_name(raw)
            while name in self.children or name in self.names.values():
                name += "_"
            self.names[raw] = name
        return self.names[raw]


def build_tree(owner: Owner) -> tuple[Container, dict[tuple, str]]:
    """The module tree an owner constructs, and the relative path of each of its members.

    Returns:
        (tree, paths): `paths` maps ("node", name) / ("owner", scope) to a path such as
        ``inception_a.2.branch_1.conv_0``.
    """
    root = Container("scope")
    paths = {}
    cut = len(owner.scope) + 1 if owner.scope else 0
    for member in owner.members:
        rel = member[1][cut:]
        cur, path = root, []
        comps = rel.split("/")
        for i, comp in enumerate(comps):
            m = _COMPONENT.match(comp)
            base, index = m["base"], m["index"]
            last = i == len(comps) - 1
            name = cur.key(base)
            path.append(name)
            if index is None:
                cur = cur.children.setdefault(name, member if last else Container("scope"))
            else:
                group = cur.children.setdefault(name, Container("list"))
                path.append(str(int(index)))
                cur = group.children.setdefault(int(index), member if last else Container("scope"))
        paths[member] = ".".join(path)
    return root, paths


def attribute_path(path: str) -> str:
    """``inception_a.2.conv_0`` -> ``inception_a[2].conv_0`` (for `self.` in generated code)."""
    return re.sub(r"\.(\d+)", r"[\1]", path)


# --- layer constructors ----------------------------------------------------------------------

class Lits:
    """Collects the numbers of constructor calls: a class may turn them into parameters."""
    MARK = "\x00"

    def __init__(self):
        self.values: list = []

    def __call__(self, value) -> str:
        self.values.append(value)
        return f"{self.MARK}{len(self.values) - 1}{self.MARK}"

    def pair(self, v) -> str:
        return self(v[0]) if v[0] == v[1] else f"({self(v[0])}, {self(v[1])})"

    def tuple(self, v) -> str:
        return "(" + ", ".join(self(x) for x in v) + ("," if len(v) == 1 else "") + ")"


ACT_CLASSES = {"relu": "nn.ReLU()", "relu6": "nn.ReLU6()", "gelu": "nn.GELU()", "silu": "nn.SiLU()",
               "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "elu": "nn.ELU()", "leaky_relu": "nn.LeakyReLU()"}


def _windows(attrs: dict, in_shape: tuple):
    _, h, w = in_shape
    d = attrs.get("dilation", (1, 1))
    ceil = attrs.get("ceil", False)
    return (window(h, attrs["kernel"][0], attrs["stride"][0], d[0], attrs["pad"], 0, ceil),
            window(w, attrs["kernel"][1], attrs["stride"][1], d[1], attrs["pad"], 1, ceil))


def _conv(a: dict, ins: list, out: tuple, lit: Lits) -> str:
    wh, ww = _windows(a, ins[0])
    args = [lit(ins[0][0]), lit(a["filters"]), lit.pair(a["kernel"])]
    if a["stride"] != (1, 1):
        args.append(lit.pair(a["stride"]))
    if wh.before == wh.after and ww.before == ww.after:
        if wh.before or ww.before:
            args.append("padding=" + lit.pair((wh.before, ww.before)))
    else:  # asymmetric (TF SAME at stride 2, or explicit): pad first, as timm's Conv2dSame
        args.append("pad=" + lit.tuple((ww.before, ww.after, wh.before, wh.after)))
    if a["dilation"] != (1, 1):
        args.append("dilation=" + lit.pair(a["dilation"]))
    if a["groups"] != 1:
        args.append("groups=" + lit(a["groups"]))
    if a["bias"]:
        args.append("bias=True")
    if a["bn"] is not None:
        args.append("bn_eps=" + lit(a["bn"]))
    if a["act"] is not None:
        args.append(f'act="{a["act"]}"')
    return f"ConvBnAct({', '.join(args)})"


def _pool(kind: str):
    def make(a: dict, ins: list, out: tuple, lit: Lits) -> str:
        wh, ww = _windows(a, ins[0])
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        count_pad = a.get("count_pad", True)
        if wh.before == wh.after and ww.before == ww.after:
            args = [lit.pair(a["kernel"]), lit.pair(a["stride"])]
            if wh.before or ww.before:
                args.append("padding=" + lit.pair((wh.before, ww.before)))
            if a["ceil"]:
                args.append("ceil_mode=True")
            if kind == "avg" and not count_pad:
                args.append("count_include_pad=False")
            return f"nn.{kind.capitalize()}Pool2d({', '.join(args)})"
        # asymmetric: pad explicitly, adding the trailing rows that ceil rounding reaches
        _, h, w = ins[0]
        extra_h = max(0, (out[1] - 1) * sh + kh - (h + wh.before + wh.after))
        extra_w = max(0, (out[2] - 1) * sw + kw - (w + ww.before + ww.after))
        pad = (ww.before, ww.after + extra_w, wh.before, wh.after + extra_h)
        args = [f'"{kind}"', lit.pair(a["kernel"]), lit.pair(a["stride"]), "pad=" + lit.tuple(pad)]
        if kind == "avg":
            args += ["in_size=" + lit.tuple((h, w)), "counted=" + lit.tuple((ww.before, ww.after, wh.before, wh.after))]
            if not count_pad:
                args.append("count_pad=False")
        return f"PaddedPool({', '.join(args)})"
    return make


def _linear(a, ins, out, lit):
    args = [lit(ins[0][0]), lit(a["units"])]
    if not a["bias"]:
        args.append("bias=False")
    if a["act"] is not None:
        return f'LinearAct({", ".join(args)}, act="{a["act"]}")'
    return f"nn.Linear({', '.join(args)})"


def _bn(a, ins, out, lit):
    return f"nn.BatchNorm{2 if len(ins[0]) == 3 else 1}d({lit(ins[0][0])}, eps={lit(a['eps'])})"


def _add(a, ins, out, lit):
    act = f', act="{a["act"]}"' if a["act"] is not None else ""
    return f"Add({lit.tuple(a['scales'])}{act})"


CONSTRUCTORS = {
    "conv": _conv,
    "maxpool": _pool("max"),
    "avgpool": _pool("avg"),
    "gap": lambda a, ins, out, lit: "nn.AdaptiveAvgPool2d(1)",
    "lrn": lambda a, ins, out, lit: (f"nn.LocalResponseNorm({lit(a['size'])}, alpha={lit(a['alpha'])}, "
                                     f"beta={lit(a['beta'])}, k={lit(a['k'])})"),
    "bn": _bn,
    "act": lambda a, ins, out, lit: ACT_CLASSES[a["fn"]],
    "dropout": lambda a, ins, out, lit: f"nn.Dropout({lit(a['p'])})",
    "flatten": lambda a, ins, out, lit: "nn.Flatten()",
    "linear": _linear,
    "softmax": lambda a, ins, out, lit: "nn.Softmax(dim=1)",
    "identity": lambda a, ins, out, lit: "nn.Identity()",
    "concat": lambda a, ins, out, lit: "Concat()",
    "add": _add,
}


def constructor(graph, name: str, lit: Lits) -> str:
    """The Python expression that builds one node's module, numbers passed through `lit`."""
    node = graph.nodes[name]
    ins = [graph.nodes[i]["shape"] for i in inputs(graph, name)]
    return CONSTRUCTORS[node["op"]](node["attrs"], ins, node["shape"], lit)


# --- the network head ------------------------------------------------------------------------

def head_chain(graph, node_owner: dict[str, str]) -> list[str]:
    """The trailing nodes `forward_head` runs: from the last `gap`/`flatten` run to the output.

    The chain holds network-level trunk nodes of the kinds in HEAD_OPS, each with one input and
    no consumer outside the chain.
    """
    chain: list[str] = []
    n = graph.graph["output"]
    while (n in node_owner and node_owner[n] == "" and graph.nodes[n]["op"] in HEAD_OPS
           and graph.nodes[n]["aux"] is None and set(graph.successors(n)) <= set(chain)):
        chain.insert(0, n)
        n = inputs(graph, n)[0]
    starts = [i for i, c in enumerate(chain) if graph.nodes[c]["op"] in ("gap", "flatten")]
    return chain[starts[0]:] if starts else chain


def classifier_node(graph, out: str) -> str | None:
    """The linear layer that gives `out` (through softmax, identity, dropout), if there is one."""
    n = out
    while graph.nodes[n]["op"] in ("softmax", "identity", "dropout"):
        n = inputs(graph, n)[0]
    return n if graph.nodes[n]["op"] == "linear" else None
