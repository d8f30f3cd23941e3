"""How an IR becomes modules: which block instances get a class, module names, layer constructors.

No torch here: the plan is plain data that `source.py` prints as Python.

Ownership. A compiled network is a tree of modules that mirrors the IR's scope paths
(``inception_a.2/branch_1/conv_0`` -> module ``inception_a[2].branch_1.conv_0``). Every block
instance whose nodes all belong to the same head (all trunk, or all one aux head) becomes a
module with its own class and a straight-line ``forward``; it *owns* the nodes below it that
no deeper such instance owns. The network class owns the rest. Other scopes (branches,
repeat members, labelled composites, instances that mix trunk and aux nodes) are plain
`Scope` containers; a repeat group (``name.0``, ``name.1``, ...) is an ``nn.ModuleList``.

Names. Scope components are DSL names, already identifiers; each goes through one
`incdsl.ir.names.Namespace` per container: one that is a Python keyword, or shadows an
``nn.Module`` attribute or the model API, gets a ``_`` suffix (``m`` prefix for a leading
``_``), and one that a sibling already has a number (``name_2``). State-dict keys are these
module paths, so they are stable and readable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir.graph import inputs, kind, node as ir_node
from ..ir.names import Namespace, legal_identifier

# dir(torch.nn.Module) (public names, torch 2.14), instance attributes, the model API, and
# `self`, which `Scope(**children)` takes beside its children; tests check this list still
# covers the installed torch.
RESERVED = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
half ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters
parameters register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict
to to_empty train type xpu zero_grad training
num_classes input_shape aux_names aux_weights aux_paths classifiers get_classifier reset_classifier
forward_features forward_head forward_trunk forward_aux node_paths self
optimize optimize_level refold fusions fusion_plan plain_keys capture
check_input input_problem other_size_hint network_name spec_file spec_settings size_bound_weights channel_bound_weights
what_came weights_hint column_draw draw_columns keep_column share_column_draw
""".split())

_COMPONENT = re.compile(r"^(?P<base>[^.]+)(?:\.(?P<index>\d+))?$")


def legal_name(name: str) -> str:
    """A Python identifier for a DSL name that cannot shadow a module attribute."""
    return legal_identifier(name, RESERVED)


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
        if name != graph.graph["input"]:
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
        if name == graph.graph["input"]:
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
    names: dict = field(default_factory=dict)  # (DSL name, is a repeat group) -> legal name
    namespace: Namespace = field(default_factory=lambda: Namespace(avoid=RESERVED))

    def key(self, raw: str, group: bool = False) -> str:
        """The attribute name of child `raw` (`group`: of the repeat group `raw.0`, `raw.1`, ...)."""
        if (raw, group) not in self.names:
            self.names[(raw, group)] = self.namespace.create_name(raw)
        return self.names[(raw, group)]


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
            name = cur.key(base, index is not None)
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


def constructor(graph, name: str, lit: Lits) -> str:
    """The Python expression that builds one node's module, numbers passed through `lit`."""
    node = ir_node(graph, name)
    ins = [graph.nodes[i]["shape"] for i in inputs(graph, name)]
    return node.kind.torch(node.attrs, ins, node.shape, lit)


# --- the network head ------------------------------------------------------------------------

def head_chain(graph, node_owner: dict[str, str]) -> list[str]:
    """The trailing nodes `forward_head` runs: from the last `gap`/`flatten` run to the output.

    The chain holds network-level trunk nodes of head kinds (`Op.head`), each with one input and
    no consumer outside the chain; it starts at the first `Op.head_start` kind in it.
    """
    chain: list[str] = []  # built from the output back, reversed at the end
    seen: set[str] = set()
    n = graph.graph["output"]
    while (n in node_owner and node_owner[n] == "" and kind(graph, n).head
           and graph.nodes[n]["aux"] is None and set(graph.successors(n)) <= seen):
        chain.append(n)
        seen.add(n)
        n = inputs(graph, n)[0]
    chain.reverse()
    starts = [i for i, c in enumerate(chain) if kind(graph, c).head_start]
    return chain[starts[0]:] if starts else chain


def classifier_node(graph, out: str) -> str | None:
    """The linear layer that gives `out` (through softmax, identity, dropout), if there is one."""
    n = out
    while kind(graph, n).passthrough:
        n = inputs(graph, n)[0]
    return n if kind(graph, n).classifier else None


# --- weights bound to the input size ----------------------------------------------------------

def input_bound_nodes(graph, other_input: tuple) -> list[str] | None:
    """The nodes whose parameter count differs when the network reads `other_input` (C, H, W)
    instead of its own input, in graph order: their trained weights do not load into the
    network built at that size (a `linear` reading a flattened map that no pool made global,
    a convolution reading the input's channels). None when the graph does not fit
    `other_input` (a join whose branches no longer agree), so it cannot be told.

    Shapes are inferred again over the graph as lowered, each through its op's shape and cost
    rules (`passes.shapes.infer_node`, `passes.cost.node_params_macs`).
    """
    import networkx as nx

    from ..passes.cost import node_params_macs
    from ..passes.shapes import ShapeError, infer_node

    first = graph.graph["input"]
    shapes = {first: tuple(other_input)}
    bound = []
    for name in nx.topological_sort(graph):
        if name == first:
            continue
        node = ir_node(graph, name)
        ins = inputs(graph, name)
        try:
            shapes[name] = infer_node(node.op, node.attrs, [shapes[i] for i in ins])[0]
        except ShapeError:
            return None
        ours = node_params_macs(node.op, node.attrs, [graph.nodes[i]["shape"] for i in ins], node.shape)[0]
        theirs = node_params_macs(node.op, node.attrs, [shapes[i] for i in ins], shapes[name])[0]
        if ours != theirs:
            bound.append(name)
    order = {n: i for i, n in enumerate(graph.nodes)}
    return sorted(bound, key=order.__getitem__)
