"""IR -> standalone PyTorch source: one module of Python that imports torch only.

The file holds the layer classes of `layers.py` (copied verbatim), one class per block
configuration and one class for the network (see `plan.py` for what becomes a module and how
modules are named). Every forward is straight-line code over the nodes in graph order, so
the result traces with torch.fx, compiles with torch.compile and exports to ONNX.

Block classes. Instances of a block that build the same layers share one class. Where they
differ only in numbers, the class takes those numbers as constructor parameters, named after
the block's own parameters (``Inception(in_channels=192, c1=64, ...)``; ``in_channels`` is the
block input's depth); a number that no parameter explains gives that configuration a class of
its own (``InceptionA``, ``InceptionA_2``, ...).

`incdsl.to_torch` executes this same source, except that the layer classes are imported from
`incdsl.torch.layers` instead of copied (`standalone=False`, so its models pickle), so a
written file and `to_torch` build the same module for the same seed.

Safety. The spec and its file name come from anyone: every identifier in the file comes from
an `incdsl.ir.names.Namespace` (module level: the prelude's names, Python's builtins and the
module's own dunders are taken; a class's constructor parameters avoid every module-level
name), and every other piece of text or number is written by `incdsl.ir.names.literal`, so no
name, label or file name can end a string, shadow what the code uses, or run on import.
"""
from __future__ import annotations

import ast
import functools
import os
import re
import textwrap
import unicodedata

from ..version import __version__
from ..ir.graph import format_shape, inputs, kind
from ..ir.names import BUILTINS, PYTHON_KEYWORDS, Namespace, literal
from ..ops.activation import fused_act
from .codegen import Printer, build_lines, emit_method, prelude
from .rewrite import check_level, deferred_nodes, fusion_groups
from .plan import (Lits, Owner, attribute_path, build_tree, class_name, classifier_node, constructor, find_owners,
                   head_chain, input_bound_nodes)

# globals every module has; a class must not be bound over them (`__builtins__` above all)
MODULE_DUNDERS = frozenset({"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__",
                            "__cached__", "__builtins__", "__annotations__", "__dict__"})


@functools.cache
def prelude_names() -> frozenset:
    """The names the copied layer classes bind at module level (imports, functions, classes)."""
    names = set()
    for node in ast.parse(prelude()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return frozenset(names)


def layers_import() -> str:
    """What replaces the copied layer classes in the source `to_torch` runs: the prelude's own
    imports, then its public names from `incdsl.torch.layers`, so that those classes are
    importable and a model pickles them by reference (see `build.rebuild_generated`)."""
    tree = ast.parse(prelude())
    lines = [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = {(a.asname or a.name).split(".")[0] for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    public = sorted(n for n in prelude_names() - imported if not n.startswith("_"))
    names = textwrap.fill(", ".join(public), width=100, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines) + f"\n\nfrom {__package__}.layers import (\n{names},\n)\n"


def module_namespace() -> Namespace:
    """The generated file's module-level names: the prelude's and Python's are taken."""
    return Namespace(taken=prelude_names() | MODULE_DUNDERS, avoid=BUILTINS)


def _items(graph, owner: Owner, owners: dict, paths: dict, members=None, fused: dict | None = None,
           deferred: frozenset = frozenset()) -> list[tuple]:
    """The (callee, inputs, outputs[, keywords]) calls that run an owner's members (or the given ones).

    `fused` maps every node of each fusion group to (the fused module's name, the group): the
    group runs where its first node ran, as one call that gives every member's output.
    Nodes in `deferred` (`rewrite.deferred_nodes`) are called with `defer=True`; a fused
    module with one flag per member."""
    out = []
    fused = fused or {}
    done = set()
    for kind, key in (members if members is not None else owner.members):
        if kind == "node" and key in fused:
            name, group = fused[key]
            if name not in done:
                done.add(name)
                flags = tuple(m in deferred for m in group.members)
                out.append((name, [group.input], list(group.members)) + ((f", defer={flags!r}",) if any(flags) else ()))
        elif kind == "node":
            out.append((attribute_path(paths[(kind, key)]), inputs(graph, key), [key])
                       + ((", defer=True",) if key in deferred else ()))
        else:
            out.append((attribute_path(paths[(kind, key)]), owners[key].inputs, owners[key].outputs))
    return out


def _fusions(pr: Printer, tree, paths: dict, groups: list) -> dict:
    """Name each fusion group of an owner in its module tree and print the class's `fusions`
    attribute ((name, member module paths, pool module paths), ...) that `fuse_siblings` reads; returns the
    `fused` argument of `_items`."""
    if not groups:
        return {}
    fused, entries = {}, []
    for group in groups:
        name = tree.namespace.create_name("fused")
        for n in (*group.members, *group.pools):
            if n is not None:
                fused[n] = (name, group)
        entries.append((name, tuple(paths[("node", m)] for m in group.members),
                        tuple(paths[("node", p)] if p else None for p in group.pools)))
    # the file's reader meets `self.fused(...)` in `forward` but in no `__init__`: say where it comes from
    pr("# (module, members, pools): the network's `optimize()` runs each group's members as that module")
    pr("fusions = (")  # one group a line: a block's groups make a line too long to read
    with pr.indent():
        for entry in entries:
            pr(f"{literal(entry)},")
    pr(")")
    pr()
    return fused


# --- block classes ---------------------------------------------------------------------------

class _Classes:
    """Assigns a class to every block-instance owner, deepest first, and prints the classes."""

    def __init__(self, graph, owners: dict[str, Owner], names: Namespace, groups: dict | None = None,
                 deferred: frozenset = frozenset()):
        self.graph, self.owners = graph, owners
        self.groups = groups or {}  # owner scope -> its fusion groups (`rewrite.fusion_groups`)
        self.deferred = deferred  # nodes called with defer=True (`rewrite.deferred_nodes`)
        self.names = names  # module level: the class names go here
        self.calls: dict[str, tuple[str, list]] = {}  # owner scope -> (class name, [(param, value)])
        self.sources: list[str] = []
        self.trees: dict[str, tuple] = {}
        self.bodies: dict[tuple, str] = {}  # (block, class body) -> class name

    def template(self, owner: Owner) -> tuple[str, list]:
        """The class body with numbers marked, and the numbers."""
        lit = Lits()
        tree, paths = build_tree(owner)
        self.trees[owner.scope] = (tree, paths)
        pr = Printer()
        pr.level = 1
        fused = _fusions(pr, tree, paths, self.groups.get(owner.scope, []))
        pr("def __init__(self{params}):")
        with pr.indent():
            pr("super().__init__()")
            build_lines(pr, tree, lambda leaf: self.leaf(leaf, lit))
        pr()
        items = _items(self.graph, owner, self.owners, paths, fused=fused, deferred=self.deferred)
        emit_method(pr, "def forward(self, " + ", ".join("{}" for _ in owner.inputs) + "):",
                    owner.inputs, items, owner.outputs)
        return pr.text(), lit.values

    def leaf(self, leaf, lit: Lits) -> str:
        kind, key = leaf
        if kind == "node":
            return constructor(self.graph, key, lit)
        cls, params = self.calls[key]
        return f"{cls}(" + ", ".join(f"{p}={lit(v)}" for p, v in params) + ")"

    def run(self) -> None:
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        pending = sorted((s for s in self.owners if s), key=lambda s: -s.count("/"))
        # level by level, deepest first, so that a parent's template can name its children's classes
        while pending:
            depth = pending[0].count("/")
            level = [s for s in pending if s.count("/") == depth]
            pending = pending[len(level):]
            groups: dict[tuple, list] = {}
            for s in sorted(level, key=lambda s: order[self._first(s)]):
                text, values = self.template(self.owners[s])
                groups.setdefault((self.owners[s].block, text), []).append((s, values))
            for (block, text), members in groups.items():
                self.make_classes(block, text, members)

    def _first(self, scope: str) -> str:
        owner = self.owners[scope]
        kind, key = owner.members[0]
        return key if kind == "node" else self._first(key)

    def make_classes(self, block: str, text: str, members: list) -> None:
        names = self.parameters(members)
        if names is None:  # some number is not a parameter: one class per distinct configuration
            configs: dict[tuple, list] = {}
            for s, values in members:
                configs.setdefault(tuple(map(repr, values)), []).append((s, values))
            for same in configs.values():
                self.emit(block, text, same, [None] * len(same[0][1]))
        else:
            self.emit(block, text, members, names)

    def parameters(self, members: list) -> list | None:
        """For each number of the template: None (a literal) or the parameter it comes from."""
        values = [v for _, v in members]
        cands = self.candidates(members)
        names = []
        for i in range(len(values[0])):
            column = [v[i] for v in values]
            if all(_same(c, column[0]) for c in column):
                names.append(None)
                continue
            match = next((p for p, vals in cands if all(_same(a, b) for a, b in zip(vals, column))), None)
            if match is None:
                return None
            names.append(match)
        return names

    def candidates(self, members: list) -> list[tuple[str, list]]:
        instances = self.graph.graph.get("instances", {})
        first = instances[members[0][0]]["args"]
        out = []
        for arg in first:
            vals = [instances[s]["args"].get(arg) for s, _ in members]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                out.append((arg, vals))
        ins = [self.owners[s].inputs for s, _ in members]
        if "in_channels" not in first and all(len(i) == 1 and len(self.graph.nodes[i[0]]["shape"]) == 3 for i in ins):
            out.append(("in_channels", [self.graph.nodes[i[0]]["shape"][0] for i in ins]))
        return out

    def emit(self, block: str, text: str, members: list, names: list) -> None:
        params = list(dict.fromkeys(n for n in names if n is not None))
        # constructor parameters must not hide what the body reads: module-level names, `self`
        local = Namespace(avoid=self.names.taken | BUILTINS | {"self"})
        legal = {p: local.create_name(p) for p in params}
        values = members[0][1]

        def fill(m):
            i = int(m.group(1))
            return legal[names[i]] if names[i] is not None else literal(values[i])

        body = re.sub(f"{Lits.MARK}(\\d+){Lits.MARK}", fill, text)
        body = body.replace("{params}", "".join(f", {legal[p]}" for p in params), 1)
        cls = self.bodies.get((block, body))
        if cls is None:
            cls = self.names.create_name(class_name(block))
            self.bodies[(block, body)] = cls
            doc = Printer()
            doc.level = 1
            doc.docstring(f"Block `{block}`.", (block,))
            self.sources.append(f"class {cls}(nn.Module):\n{doc.text()}\n{body}")
        for s, vals in members:
            self.calls[s] = (cls, [(legal[p], vals[names.index(p)]) for p in params])


def _same(a, b) -> bool:
    return type(a) is type(b) and (a == b or a != a and b != b)  # nan is the same nan


# --- the network class -----------------------------------------------------------------------

def _classifiers_source(classifiers: list[tuple]) -> str:
    """``[(path, in_features, bias, act), ...]`` with each activation as its module, which
    `reset_classifier` copies into the new classifiers (no name -> module table in the layers)."""
    return "[" + ", ".join(f"({literal(path)}, {literal(n_in)}, {literal(bias)}, {fused_act(act)})"
                           for path, n_in, bias, act in classifiers) + "]"


def _bound_paths(graph, other_input: tuple, module_paths: dict) -> list[str] | None:
    """The module paths of the layers whose weights differ at `other_input` (`input_bound_nodes`)."""
    nodes = input_bound_nodes(graph, other_input)
    return None if nodes is None else [module_paths.get(n, n) for n in nodes]


def _network_class(pr: Printer, graph, owners: dict, node_owner: dict, classes: _Classes, cls: str,
                   doc: str, quoted: tuple[str, ...], optimize: str = "none", spec: str = "",
                   settings: dict | None = None) -> dict[str, str]:
    """Print the network class; returns the module path of every node."""
    root = owners[""]
    tree, paths = build_tree(root)
    classes.trees[""] = (tree, paths)
    lit = Lits()
    chain = head_chain(graph, node_owner)
    aux = graph.graph["aux"]
    module_paths = _module_paths(owners, classes.trees)
    main = classifier_node(graph, graph.graph["output"])
    classifiers = []
    if main is not None:
        units = graph.nodes[main]["attrs"]["units"]
        heads = [main] + [c for c in (classifier_node(graph, h["output"]) for h in aux)
                          if c is not None and graph.nodes[c]["attrs"]["units"] == units]
        for c in heads:
            a = graph.nodes[c]["attrs"]
            classifiers.append((module_paths[c], graph.nodes[next(iter(graph.predecessors(c)))]["shape"][0],
                                a["bias"], a["act"]))
        num_classes = units
    else:
        out = graph.nodes[graph.graph["output"]]["shape"]
        num_classes = out[0] if len(out) == 1 else None

    pr(f"class {cls}(IncdslNet):")
    with pr.indent():
        pr.docstring(doc, quoted)
        pr()
        if optimize != "none":
            pr(f"optimize_level = {literal(optimize)}")
        fused = _fusions(pr, tree, paths, classes.groups.get("", []))
        if optimize != "none" and not fused:  # `_fusions` ends its attribute with a blank line
            pr()
        pr(f"def __init__(self, num_classes: int | None = {literal(num_classes)}, seed: int | None = None):")
        with pr.indent():
            pr("super().__init__()")
            pr(f"self.num_classes = {literal(num_classes)}")
            c, h, w = shape = tuple(graph.nodes[graph.graph['input']]['shape'])
            pr(f"self.input_shape = {literal(shape)}")
            # for the error of another input size (`IncdslNet.check_input`): does a larger input
            # (or one more channel) change some layer's weights?
            pr(f"self.network_name = {literal(graph.graph['name'])}")
            pr(f"self.spec_file = {literal(spec)}")
            if settings:  # the --set values: the error's way to another input size repeats them
                pr(f"self.spec_settings = {literal(settings)}")
            pr(f"self.size_bound_weights = {literal(_bound_paths(graph, (c, 2 * h, 2 * w), module_paths))}")
            pr(f"self.channel_bound_weights = {literal(_bound_paths(graph, (c + 1, h, w), module_paths))}")
            pr(f"self.aux_names = {literal([h['name'] for h in aux])}")
            pr(f"self.aux_weights = {literal([float(h['weight']) for h in aux])}")
            pr(f"self.aux_paths = {literal(_aux_paths(graph, module_paths))}")
            pr(f"self.classifiers = {_classifiers_source(classifiers)}")
            start = len(pr.lines)
            build_lines(pr, tree, lambda leaf: classes.leaf(leaf, lit))
            pr.lines[start:] = [re.sub(f"{Lits.MARK}(\\d+){Lits.MARK}", lambda m: literal(lit.values[int(m.group(1))]), l)
                                for l in pr.lines[start:]]
            pr("if num_classes is not None and num_classes != self.num_classes:")
            with pr.indent():
                pr("self.reset_classifier(num_classes)")
            pr("init_weights(self, seed)")
            if _global_paths(graph):
                pr("self.share_column_draw()")
            if optimize != "none":
                pr("self.optimize()")
        _network_methods(pr, graph, owners, paths, chain, main, fused, classes.deferred)
    return module_paths


def _network_methods(pr: Printer, graph, owners: dict, paths: dict, chain: list, main: str | None,
                     fused: dict, deferred: frozenset) -> None:
    root = owners[""]
    aux = graph.graph["aux"]
    in_head = set(chain)
    rest = [m for m in root.members if m[1] not in in_head]
    trunk_members = [m for m in rest if (graph.nodes[m[1]]["aux"] if m[0] == "node" else owners[m[1]].aux) is None]
    aux_members = [m for m in rest if (graph.nodes[m[1]]["aux"] if m[0] == "node" else owners[m[1]].aux) is not None]
    trunk = _items(graph, root, owners, paths, trunk_members, fused, deferred)
    aux_items = _items(graph, root, owners, paths, aux_members, fused, deferred)
    head = _items(graph, root, owners, paths, [("node", n) for n in chain])
    feature = head[0][1][0] if head else graph.graph["output"]
    made = {v for _, _, outs, *_ in aux_items for v in outs}
    taps = list(dict.fromkeys(v for _, ins, *_ in aux_items for v in ins if v not in made))
    x = graph.graph["input"]
    # global drop-path: one draw per forward pass, before any join reads it
    draw = {0: lambda var: pr(f"self.draw_columns({var(x)})")} if _global_paths(graph) and trunk else None
    pr()
    # every entry that takes images runs the trunk's method, which checks them first
    check = ["self.check_input(x)"]
    if aux:
        pr("def forward_features(self, x):")
        with pr.indent():
            pr("return self.forward_trunk(x)[0]")
        pr()
        emit_method(pr, "def forward_trunk(self, {}):", [x], trunk, [feature] + taps,
                    lambda v: f"{v[0]}, [{', '.join(v[1:])}]", before=draw, opening=check)
    else:
        emit_method(pr, "def forward_features(self, {}):", [x], trunk, [feature], before=draw, opening=check)
    pr()
    before = {}
    for i, (_, ins, outs, *_) in enumerate(head):
        if outs[0] == main:
            def stop(var, v=ins[0]):
                pr("if pre_logits:")
                with pr.indent():
                    pr(f"return {var(v)}")
            before[i] = stop
    emit_method(pr, "def forward_head(self, {}, pre_logits: bool = False):", [feature], head,
                [graph.graph["output"]], before=before)
    if aux:
        pr()
        emit_method(pr, "def forward_aux(self, " + ", ".join("{}" for _ in taps) + "):", taps, aux_items,
                    [h["output"] for h in aux], lambda v: "[" + ", ".join(v) + "]")
    pr()
    pr("def forward(self, x):")
    with pr.indent():
        if aux:
            pr("x, taps = self.forward_trunk(x)")
            pr("logits = self.forward_head(x)")
            pr("if self.training:")
            with pr.indent():
                pr("return logits, self.forward_aux(*taps)")
            pr("return logits")
        else:
            pr("return self.forward_head(self.forward_features(x))")


def _global_paths(graph) -> bool:
    """Whether a join of the network has global drop-path (then the network shares one draw)."""
    return any(kind(graph, n).network_draw is not None and kind(graph, n).network_draw(graph.nodes[n]["attrs"])
               for n in graph.nodes)


def _aux_paths(graph, module_paths: dict) -> list[str]:
    """The module path that holds each aux head's layers (the common prefix of their paths)."""
    out = []
    for head in graph.graph["aux"]:
        paths = [module_paths[n].split(".") for n, d in graph.nodes(data=True) if d["aux"] == head["name"]]
        common = paths[0]
        for p in paths[1:]:
            k = 0
            while k < min(len(common), len(p)) and common[k] == p[k]:
                k += 1
            common = common[:k]
        out.append(".".join(common))
    return out


def _module_paths(owners: dict, trees: dict) -> dict[str, str]:
    """IR node -> module path in the network (the prefix of its state-dict keys)."""
    out: dict[str, str] = {}
    base = {"": ""}

    def visit(scope: str):
        _, paths = trees[scope]
        for (kind, key), rel in paths.items():
            full = f"{base[scope]}.{rel}" if base[scope] else rel
            if kind == "node":
                out[key] = full
            else:
                base[key] = full
                visit(key)
    visit("")
    return out


# --- the file --------------------------------------------------------------------------------

def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be the network class's name, or None if it can: it must be a Python
    identifier as written (NFKC-normal, not a keyword) that the generated module does not
    already bind or read (`torch`, `F`, `Scope`, `ConvBnAct`, dunders, builtins such as
    `super` or `int`)."""
    if not name.isidentifier():
        return f"{name!r} is not a Python identifier"
    if unicodedata.normalize("NFKC", name) != name:
        return f"{name!r} is not in NFKC form: Python would bind {unicodedata.normalize('NFKC', name)!r}"
    if name in PYTHON_KEYWORDS:
        return f"{name!r} is a Python keyword"
    if name in BUILTINS or name in module_namespace():
        return f"{name!r} would shadow a name the generated module uses"
    return None


def _plain(value):
    """A parameter's value as builtin data (our str, int and tuple subclasses made plain), for a literal."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return str(value)


def generate_source(network, class_name_: str | None = None, optimize: str = "none",
                    standalone: bool = True) -> tuple[str, str, dict[str, str]]:
    """Standalone PyTorch source for a network.

    Parameters:
        network: a checked `Network`.
        class_name_: the network class's name (default: the network's name in CamelCase, made
            unique); see `class_name_problem` for the names it may not be.
        optimize: "none", "train" or "infer" (see `rewrite.py`).
        standalone: copy the layer classes into the source (True) or import them from
            `incdsl.torch.layers` (False: what `to_torch` runs; see `layers_import`).
    Returns:
        (source, class name, module path of every IR node).
    Raises:
        ValueError: `class_name_` cannot be used.

    Example:
        >>> text, cls, paths = generate_source(incdsl.load("specs/inception_v4.inc"))
        >>> cls
        'InceptionV4'
    """
    names = module_namespace()
    if class_name_ is not None:
        problem = class_name_problem(class_name_)
        if problem:
            raise ValueError(f"bad class name: {problem}")
        cls = names.take(class_name_)
    else:
        cls = names.create_name(class_name(network.name))
    graph = network.graph
    owners, node_owner = find_owners(graph)
    groups = {}
    head = head_chain(graph, node_owner)
    for group in fusion_groups(graph, node_owner, head) if check_level(optimize) != "none" else ():
        groups.setdefault(group.owner, []).append(group)
    deferred = deferred_nodes(graph, node_owner, head) if optimize == "infer" else frozenset()
    classes = _Classes(graph, owners, names, groups, deferred)
    classes.run()
    spec = os.path.basename(network.file)
    doc = (f"Network `{network.name}` from {spec}, compiled by incdsl {__version__}.\n\n"
           f"Input {format_shape(network.input_shape)}, output {format_shape(network.output_shape)}"
           + (f"; aux heads {', '.join(h['name'] for h in graph.graph['aux'])} (training mode only)"
              if graph.graph["aux"] else "") + ".\n"
           f"`{cls}(num_classes=..., seed=0)` builds it with a deterministic initialisation.")
    quoted = (network.name, spec, cls, *(h["name"] for h in graph.graph["aux"]))  # from the spec or the user
    pr = Printer()
    settings = {name: _plain(value) for name, value in sorted(getattr(network, "settings", {}).items())}
    paths = _network_class(pr, graph, owners, node_owner, classes, cls, doc, quoted, optimize, spec, settings)
    header = Printer()
    header.docstring(f"{network.name}: PyTorch model generated by incdsl {__version__} from {spec}.\n\n"
                     f"Needs only torch. Build with `model = {cls}()`; state-dict keys follow the spec's scope names.",
                     quoted)
    text = (header.text() + (prelude() if standalone else layers_import()) + "\n\n" + "\n\n".join(classes.sources) + ("\n\n" if classes.sources else "")
            + pr.text())
    return text, cls, paths
