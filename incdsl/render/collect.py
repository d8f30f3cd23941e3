"""Collect a `Scene` from the IR at one level of detail.

* `collect_network`: the overall schema: one box per top-level block instance, repeated
  instances (`inception_a.0` .. `inception_a.3`) as one ``4 x Inception-A`` box, a leading
  run of top-level layers folded into a ``Stem`` box, auxiliary heads beside the trunk.
* `collect_block`: one block definition, drawn from one of its calls (the first), layer by layer.
* `collect_layers`: every layer, in nested clusters by scope path.

All three read the graph and never change it; iteration follows the IR's node order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from ..diagnostics import did_you_mean
from ..ir.graph import inputs, kind, node as ir_node
from ..ops.marks import num
from .labels import layer_label, pretty_name
from .paper import depth_rows
from .scene import (OUTPUT, DrawError, Edge, Node, Scene, aux_drop, branch_heads, exit_id, input_note,
                    layer_edges, layer_kind, layer_nodes, merge_parallel, split_index)


def _elided(graph: nx.DiGraph, name: str) -> bool:
    """At network level a reshape is not a box: the arrow carries its shape."""
    return kind(graph, name).elided


def _given_name(local: str, block: str) -> str | None:
    """An instance's own name where the spec gave one (`as NAME`); None for the names the
    lowering makes up (`fractal`, `fractal_1`, `inception_a.2`), which would only clutter a box."""
    base = split_index(local)[0]
    auto = base == block or re.fullmatch(re.escape(block) + r"_\d+", base)
    return None if auto else base


ARGS_CHARS = 48  # a longer argument line would widen a nested block's box past its neighbours


def _call_args(args: dict) -> str | None:
    """A nested block's arguments as a line of its box (``filters 256``; FractalNet's
    ``c 1, filters 64, dropout 0`` tells a one-column box from a deeper one); None when there
    are none, one is not a plain number or word, or the line would be too long."""
    if not args or not all(isinstance(v, (int, float, str)) for v in args.values()):
        return None
    text = ", ".join(f"{k} {num(v)}" for k, v in args.items())
    return text if len(text) <= ARGS_CHARS else None


def _label(graph: nx.DiGraph, name: str) -> str:
    node = ir_node(graph, name)
    return layer_label(node.op, node.attrs)


@dataclass
class _Unit:
    """A network-level box under construction."""
    id: str
    kind: str
    title: str
    lines: list = field(default_factory=list)
    flow: bool = False
    tops: list = field(default_factory=list)  # top-level scopes it holds, in order
    nodes: list = field(default_factory=list)


# --- network level -------------------------------------------------------------------------

def collect_network(graph: nx.DiGraph, aux: bool = True) -> Scene:
    """The overall schema of a network (see the module docstring)."""
    heads = list(graph.graph["aux"]) if aux else []
    tapped = {h["tap"].split("/", 1)[0] for h in heads}
    trunk = [n for n in graph.nodes if graph.nodes[n]["aux"] is None]
    units, unit_of = _trunk_units(graph, trunk, tapped)
    scene = Scene(graph.graph["name"])
    scene.nodes += [Node(u.id, u.kind, u.title, tuple(u.lines), u.flow) for u in units]
    seen = set()
    for v in trunk:
        for index, u in enumerate(inputs(graph, v)):
            a, b = unit_of[u], unit_of[v]
            if a != b and (a, b, u) not in seen:
                seen.add((a, b, u))
                scene.edges.append(Edge(a, b, graph.nodes[u]["shape"], input_note(graph, v, index) if b == v else None))
    out = graph.graph["output"]
    scene.nodes.append(Node(OUTPUT, "output", "Output"))
    scene.edges.append(Edge(unit_of[out], OUTPUT, graph.nodes[out]["shape"]))
    for head in heads:
        _aux_unit(graph, head, scene, unit_of)
    scene.edges = merge_parallel(scene.edges)
    return scene


def _trunk_units(graph: nx.DiGraph, trunk: list[str], tapped: set[str]) -> tuple[list[_Unit], dict[str, str]]:
    instances = graph.graph.get("instances", {})
    first_scoped = next((i for i, n in enumerate(trunk) if "/" in n), None)
    stem_layers = [n for n in trunk[:first_scoped or 0]
                   if not _elided(graph, n) and n != graph.graph["input"]]
    fold_stem = first_scoped is not None and len(stem_layers) >= 2
    units: list[_Unit] = []
    unit_of: dict[str, str] = {}
    box = _opened_scopes(graph, trunk, instances)
    for n in trunk:
        if box.get(n) == n:  # a layer of an opened scope: a box of its own, as a top-level layer
            if _elided(graph, n):
                unit_of[n] = unit_of[inputs(graph, n)[0]]
            else:
                units.append(_Unit(n, layer_kind(graph, n), _label(graph, n), nodes=[n]))
                unit_of[n] = n
            continue
        if "/" not in n:  # a top-level layer
            if _elided(graph, n):
                unit_of[n] = unit_of[inputs(graph, n)[0]]
                continue
            if fold_stem and n in stem_layers:
                if not units or units[-1].id != "#stem":
                    units.append(_Unit("#stem", "stem", "Stem", flow=True))
                units[-1].lines.append(_label(graph, n))
                units[-1].nodes.append(n)
            else:
                units.append(_Unit(n, layer_kind(graph, n), _label(graph, n), nodes=[n]))
            unit_of[n] = units[-1].id
            continue
        top = box.get(n) or n.split("/", 1)[0]
        cur = units[-1] if units else None
        if cur is None or not cur.tops or cur.tops[-1] != top:
            base, index = split_index(top)
            prev = split_index(cur.tops[-1]) if cur and cur.tops else (None, None)
            extends = (index is not None and prev[1] is not None and prev == (base, index - 1)
                       and cur.tops[-1] not in tapped)
            if not extends:
                cur = _Unit(top, "block", "")
                units.append(cur)
            cur.tops.append(top)
        cur.nodes.append(n)
        unit_of[n] = cur.id
    for u in units:
        if u.tops:
            _name_unit(graph, u, instances)
    _tell_calls_apart(units, instances)
    return units, unit_of


def _tell_calls_apart(units: list[_Unit], instances: dict) -> None:
    """Boxes of one block called with different arguments and no name of their own look alike
    (DenseNet's four Dense-Blocks of 6, 12, 24 and 16 layers): give each its argument line.
    Boxes with names (GoogLeNet's inception_3a ...) or calls that all agree keep one line less."""
    calls: dict[str, list] = {}
    for u in units:
        inst = instances.get(u.tops[0]) if u.tops else None
        if inst and not u.lines:
            calls.setdefault(inst["block"], []).append((u, inst["args"]))
    for members in calls.values():
        if len(members) > 1 and any(args != members[0][1] for _, args in members):
            for u, args in members:
                line = _call_args(args)
                if line:
                    u.lines.append(line)


def _opened_scopes(graph: nx.DiGraph, trunk: list[str], instances: dict) -> dict[str, str]:
    """Layers of top-level scopes that are no block call but hold some (`residual as root:`
    around three groups, RoR's; `residual as fire3: fire(...)`, SqueezeNet's bypass) -> the
    outermost block call holding them, or themselves. One box for such a scope hid the
    shortcut that is its point; opened, its calls are boxes and its own layers too."""
    tops = dict.fromkeys(n.split("/", 1)[0] for n in trunk if "/" in n)
    opened = [t for t in tops if t not in instances and any(s.startswith(t + "/") for s in instances)]
    box = {}
    for top in opened:
        members = [n for n in trunk if n.startswith(top + "/")]
        box.update(_collapse_nested(graph, members, top + "/"))
    return box


def _name_unit(graph: nx.DiGraph, unit: _Unit, instances: dict) -> None:
    """Title and kind of a box holding top-level scopes (or the block calls of an opened one)."""
    base, _ = split_index(unit.tops[0].rpartition("/")[2])
    inst = instances.get(unit.tops[0])
    layers = [n for n in unit.nodes if n.startswith(unit.tops[0] + "/")]
    if inst:
        title = pretty_name(inst["block"])
        # a call in an opened scope without a name of its own goes by the scope's (`fire3`)
        given = _given_name(base, inst["block"]) or unit.tops[0].rpartition("/")[0].split("/")[0] or None
        if given:
            unit.lines.append(given)
    elif len(layers) == 1:
        title = layer_label(graph.nodes[layers[0]]["op"], graph.nodes[layers[0]]["attrs"])
    else:
        title = pretty_name(base)
    count = len(unit.tops)
    unit.title = f"{count} x {title}" if count > 1 else title
    shape_in = graph.nodes[inputs(graph, unit.nodes[0])[0]]["shape"] if inputs(graph, unit.nodes[0]) else None
    shape_out = graph.nodes[unit.nodes[-1]]["shape"]
    if "stem" in base.lower() or (inst and "stem" in inst["block"].lower()):
        unit.kind = "stem"
    elif shape_in and len(shape_in) == 3 and len(shape_out) == 3 and shape_out[1:] != shape_in[1:]:
        unit.kind = "reduction"


def _aux_unit(graph: nx.DiGraph, head: dict, scene: Scene, unit_of: dict) -> None:
    name = head["name"]
    uid = f"#aux/{name}"
    layers = [n for n in graph.nodes if graph.nodes[n]["aux"] == name]
    lines = tuple(_label(graph, n) for n in layers
                  if not _elided(graph, n))
    scene.nodes.append(Node(uid, "aux", f"Aux head {name} (weight {head['weight']:g})", lines, True, aux=True))
    for n in layers:
        unit_of[n] = uid
    tap = head["tap"]
    if tap in unit_of:
        scene.edges.append(Edge(unit_of[tap], uid, graph.nodes[tap]["shape"], aux=True))
    out = f"{uid}/output"
    scene.nodes.append(Node(out, "output", f"Output {name}", aux=True))
    scene.edges.append(Edge(uid, out, graph.nodes[head["output"]]["shape"], aux=True))


# --- block level ---------------------------------------------------------------------------

def block_names(graph: nx.DiGraph) -> list[str]:
    """Names of the blocks the network instantiates, in order of first use."""
    return list(dict.fromkeys(inst["block"] for inst in graph.graph.get("instances", {}).values()))


def drawn_instance(graph: nx.DiGraph, block: str, call: int = 1) -> str:
    """The scope path of the `call`-th call of `block` (1: the first), in the network's order.

    Raises:
        DrawError: when the network does not use such a block (the message lists those it does),
            or calls it fewer than `call` times.
    """
    calls = [scope for scope, inst in graph.graph.get("instances", {}).items() if inst["block"] == block]
    if not calls:
        known = block_names(graph)
        hint = did_you_mean(block, known)
        listing = ", ".join(known) if known else "none"
        raise DrawError(f"network `{graph.graph['name']}` uses no block `{block}`"
                        + (f"; {hint}" if hint else "") + f" (its blocks: {listing})")
    if not 1 <= call <= len(calls):
        raise DrawError(f"block `{block}` is called {len(calls):,} time{'s' if len(calls) != 1 else ''}: "
                        f"the call to draw is 1 to {len(calls):,}, not {call:,}")
    return calls[call - 1]


def collect_block(graph: nx.DiGraph, block: str, aux: bool = True, input_label: str = "Previous layer",
                  branch_order: str = "spec", call: int = 1) -> Scene:
    """One block definition, layer by layer, from its `call`-th call (the first by default).

    Blocks instantiated inside it are single boxes; the block's input is a box labelled
    `input_label` (GoogLeNet's figure says ``Previous layer``, Inception-v4's ``Filter concat``),
    its output an ``Output`` label; boxes sit in one row per depth, branches left to right in
    `branch_order` (see `render/paper.py`).
    """
    scope = drawn_instance(graph, block, call)
    prefix = scope + "/"
    members = [n for n in graph.nodes if n.startswith(prefix)]
    if not members:
        raise DrawError(f"call {call} of block `{block}` ({scope}) has no layers to draw")
    keep = graph.nodes[members[0]]["aux"]
    members = [n for n in members if not aux_drop(graph, n, keep, aux)]
    member_set = set(members)
    box = _collapse_nested(graph, members, prefix)

    def tail_of(u: str) -> str | None:
        if u in member_set:
            return box[u] if box[u] != u else exit_id(graph, u)
        return None if aux_drop(graph, u, keep, aux) else "#in/" + u

    scene = Scene(f"{graph.graph['name']}.{block}")
    outside = list(dict.fromkeys(u for n in members for u in inputs(graph, n) if tail_of(u) and u not in member_set))
    scene.nodes += [Node("#in/" + u, "input", input_label, aux=graph.nodes[u]["aux"] is not None) for u in outside]
    instances = graph.graph["instances"]
    boxes_done, edges_done = set(), set()
    for n in members:
        b = box[n]
        if b == n:
            scene.nodes += layer_nodes(graph, n)
            scene.edges += layer_edges(graph, n, tail_of)
            continue
        if b not in boxes_done:
            boxes_done.add(b)
            inner = instances[b]["block"]
            local = b.rpartition("/")[2]
            given = _given_name(local, inner)
            lines = tuple(t for t in (given, _call_args(instances[b]["args"])) if t)
            scene.nodes.append(Node(b, "block", pretty_name(inner), lines, aux=graph.nodes[n]["aux"] is not None))
        for u in inputs(graph, n):
            t = tail_of(u)
            if t is not None and t != b and (t, b) not in edges_done:
                edges_done.add((t, b))
                scene.edges.append(Edge(t, b, graph.nodes[u]["shape"]))
    out = [n for n in members if graph.nodes[n]["aux"] == keep][-1]
    scene.nodes.append(Node(OUTPUT, "output", "Output"))
    scene.edges.append(Edge(tail_of(out), OUTPUT, graph.nodes[out]["shape"]))
    scene.edges = merge_parallel(scene.edges)
    scene.orders = depth_rows(graph, scene, branch_order)
    return scene


def _collapse_nested(graph: nx.DiGraph, members: list[str], prefix: str) -> dict[str, str]:
    """member -> its box: itself, or the outermost block instance nested in the drawn one."""
    nested = sorted(s for s in graph.graph.get("instances", {}) if s.startswith(prefix))
    outer = [s for s in nested if not any(s.startswith(o + "/") for o in nested if o != s)]
    box = {}
    for n in members:
        box[n] = next((s for s in outer if n.startswith(s + "/")), n)
    return box


def _branch_orders(graph: nx.DiGraph, joins: list[str], members: list[str], box: dict) -> list[tuple[str, ...]]:
    """For each concat (and multi-branch add): its branch heads, to be laid out in input order."""
    orders = []
    for n in joins:
        if kind(graph, n).arity is not None or len(inputs(graph, n)) < 2:
            continue
        heads = branch_heads(graph, n, members)
        if not all(h in box for h in heads):
            continue  # a residual: the shortcut comes from outside
        boxes = tuple(box[h] for h in heads)
        if len(set(boxes)) == len(boxes):
            orders.append(boxes)
    return orders


# --- layer level ---------------------------------------------------------------------------

def collect_layers(graph: nx.DiGraph, aux: bool = True, block: str | None = None,
                   input_label: str = "Previous layer", call: int = 1) -> Scene:
    """Every layer, in nested clusters by scope path (one cluster per scope); with `block`, only
    the layers of that block's `call`-th call, its inputs drawn as `input_label` boxes."""
    within = drawn_instance(graph, block, call) + "/" if block else None
    names = [n for n in graph.nodes if not aux_drop(graph, n, None, aux) and (within is None or n.startswith(within))]
    drawn = set(names)
    instances = graph.graph.get("instances", {})
    scene = Scene(graph.graph["name"] + (f".{block}" if block else ""))

    def tail_of(u: str) -> str | None:
        if u in drawn:
            return exit_id(graph, u)
        return "#in/" + u if within is not None and not aux_drop(graph, u, None, aux) else None

    if within is not None:
        outside = dict.fromkeys(u for n in names for u in inputs(graph, n) if u not in drawn and tail_of(u))
        scene.nodes += [Node("#in/" + u, "input", input_label) for u in outside]
    for n in names:
        scope = graph.nodes[n]["scope"]
        parts = scope.split("/") if scope else []
        for i in range(len(parts)):
            path = "/".join(parts[:i + 1])
            if path not in scene.clusters:
                inst = instances.get(path)
                last = parts[i]
                label = f"{last} ({inst['block']})" if inst and split_index(last)[0] != inst["block"] else last
                scene.clusters[path] = label
        scene.nodes += layer_nodes(graph, n, scope, n.rpartition("/")[2])
        scene.edges += layer_edges(graph, n, tail_of)
    out = graph.graph["output"] if within is None else [n for n in names if graph.nodes[n]["aux"] is None][-1]
    scene.nodes.append(Node(OUTPUT, "output", "Output"))
    scene.edges.append(Edge(exit_id(graph, out), OUTPUT, graph.nodes[out]["shape"]))
    for head in graph.graph["aux"] if aux and within is None else []:
        oid = f"#aux/{head['name']}/output"
        scene.nodes.append(Node(oid, "output", f"Output {head['name']}", aux=True))
        scene.edges.append(Edge(exit_id(graph, head["output"]), oid, graph.nodes[head["output"]]["shape"], aux=True))
    scene.edges = merge_parallel(scene.edges)
    scene.orders = _branch_orders(graph, names, names, {n: n for n in names})
    return scene
