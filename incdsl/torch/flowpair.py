"""Pairing layers by data flow, for `weights.load_weights` given a reference *module*.

Both networks run once on a dummy input (`dataflow.trace_flow`). Each of the reference's units,
in the order it ran, pairs with the first of ours that reads from the counterparts of the units
it reads from and fits; where branches look alike the pairing backtracks, and where a
concatenation joins branches in another order the reading layer's input axis is permuted
(`channel_orders`). A pairing other than the plain one is kept only if every paired layer then
computes what the reference's does (`pair_checked`). `weights.py` holds the units, the
positional pairing and the loading; this module only decides which unit pairs with which.
"""
from __future__ import annotations

import torch

from .dataflow import INPUT
from .weights import Unit, WeightsError, as_kind_of, load_pairs, mismatch

SEARCH_STEPS = 20_000  # candidate pairs tried while searching the pairings of two flows
PAIRINGS_CHECKED = 8   # complete pairings whose outputs are compared before giving up


def _in_flow_order(found: list[Unit], flow) -> tuple[list[Unit], list[Unit]]:
    """(the units that ran, in the order they ran; those that did not, in their own order)."""
    by_prefix = {u.prefix: u for u in found}
    ran = [by_prefix[p] for p in flow.order if p in by_prefix]
    return ran, [u for u in found if u.prefix not in flow.reads]


def _reads(flow, prefix: str) -> str:
    inputs = sorted(flow.reads[prefix])
    return "the network's input" if not inputs else ", ".join(f"`{p}`" for p in inputs)


def pair_by_flow(ours: list[Unit], theirs: list[Unit], our_flow, their_flow, where: str, skip: set,
                  classifiers: set, strict: bool = True) -> tuple[list[tuple[Unit, Unit]], list[str]]:
    """Like `_pair`, but each of the reference's units, in the order it ran, pairs with the first
    free unit of ours (in our running order) that reads from the counterparts of the units it
    reads from and fits; where none fits, with the first that reads alike (`strict=False`:
    ours is kept, and the flow goes on through the pair). `load_weights` uses it with
    `strict=False`; strict pairing searches further (`pair_checked`)."""
    ours, our_idle = _in_flow_order(ours, our_flow)
    theirs, their_idle = _in_flow_order(theirs, their_flow)
    if strict and (our_idle or their_idle):
        side, unit = ("ours", our_idle[0]) if our_idle else ("the reference's", their_idle[0])
        raise WeightsError(f"{where}: {side} {unit.describe()} did not run in a forward pass; "
                           "pass the reference's state dict to pair layers by registration order")
    free: dict[frozenset, list[Unit]] = {}  # what a unit reads -> our free units reading it, in order
    for a in ours:
        free.setdefault(our_flow.reads[a.prefix], []).append(a)
    counterpart, taken, pairs, left, unpaired = {}, set(), [], [], []
    for i, b in enumerate(theirs):
        wanted = frozenset(counterpart.get(p, "\0" + p) for p in their_flow.reads[b.prefix])
        alike = [a for a in free.get(wanted, []) if id(a) not in taken]
        fit = next((a for a in alike if mismatch(a, as_kind_of(b, a), where, i, skip, classifiers) is None), None)
        if fit is not None:
            pairs.append((fit, as_kind_of(b, fit)))
        elif strict:
            raise WeightsError(mismatch(alike[0], as_kind_of(b, alike[0]), where, i, skip, classifiers) if alike
                               else _no_counterpart(b, i, where, their_flow, our_flow,
                                                    [a for a in ours if id(a) not in taken]))
        elif alike:  # kept as ours is; the flow goes on through the pair
            fit = alike[0]
            left.append(fit.prefix)
        else:
            unpaired.append(b)
            continue
        counterpart[b.prefix] = fit.prefix
        taken.add(id(fit))
    rest = [a for a in ours if id(a) not in taken]
    if strict and (rest or unpaired):
        raise WeightsError(f"{where}: ours has {len(ours)} layers with weights, the reference {len(theirs)}; "
                           f"the first unpaired is " + (f"ours {rest[0].describe()}" if rest else
                                                        f"the reference's {unpaired[0].describe()}"))
    return pairs, left + [a.prefix for a in rest + our_idle]


def _flow_pairings(ours: list[Unit], theirs: list[Unit], our_flow, their_flow, where: str, skip: set,
                   classifiers: set):
    """Every complete pairing of two flows (both lists in running order), depth first: each of
    the reference's units pairs with a free unit of ours that reads from the counterparts of
    the units it reads from and fits (`pair_by_flow`'s rule), those with the same signature
    (the operations on the way, `dataflow`) tried first, then in our running order. Yields
    (pairs, plain): `plain` when every unit took the first that fits in running order, the
    choice `load_weights` has always made. Raises WeightsError as `pair_by_flow` does when
    there is no pairing, naming the deepest dead end (the layer where the two truly part).
    """
    free: dict[frozenset, list[Unit]] = {}
    for a in ours:
        free.setdefault(our_flow.reads[a.prefix], []).append(a)
    n, counterpart, taken = len(theirs), {}, set()
    options, firsts, pos, chosen = [None] * n, [None] * n, [0] * n, [None] * n
    dead_end, steps, i, found = (-1, None), 0, 0, False  # the deepest level no candidate fits, and why

    def candidates(i: int):
        b = theirs[i]
        wanted = frozenset(counterpart.get(p, "\0" + p) for p in their_flow.reads[b.prefix])
        alike = [a for a in free.get(wanted, []) if id(a) not in taken]
        fit = [a for a in alike if mismatch(a, as_kind_of(b, a), where, i, skip, classifiers) is None]
        if not fit:
            return fit, None, (mismatch(alike[0], as_kind_of(b, alike[0]), where, i, skip, classifiers) if alike
                               else _no_counterpart(b, i, where, their_flow, our_flow,
                                                    [a for a in ours if id(a) not in taken]))
        signature = their_flow.signatures.get(b.prefix)
        return sorted(fit, key=lambda a: our_flow.signatures.get(a.prefix) != signature), fit[0], None

    while i >= 0:
        if i == n:
            if len(taken) < len(ours):  # the counts differ: every pairing leaves the same number over
                rest = [a for a in ours if id(a) not in taken]
                raise WeightsError(f"{where}: ours has {len(ours)} layers with weights, the reference {len(theirs)}; "
                                   f"the first unpaired is ours {rest[0].describe()}")
            found = True
            yield ([(a, as_kind_of(b, a)) for a, b in zip(chosen, theirs)],
                   all(a is first for a, first in zip(chosen, firsts)))
            i -= 1
        elif options[i] is None:
            options[i], firsts[i], error = candidates(i)
            if error is not None and i > dead_end[0]:
                dead_end = (i, error)
            pos[i] = 0
            continue
        elif pos[i] < len(options[i]):
            steps += 1
            if steps > SEARCH_STEPS:
                break
            chosen[i] = options[i][pos[i]]
            counterpart[theirs[i].prefix] = chosen[i].prefix
            taken.add(id(chosen[i]))
            i += 1
            continue
        else:
            options[i] = None
            i -= 1
        if i >= 0:  # undo level i and try its next candidate
            del counterpart[theirs[i].prefix]
            taken.discard(id(chosen[i]))
            pos[i] += 1
    if not found:
        raise WeightsError(dead_end[1] or f"{where}: the layers pair in too many ways to search "
                           f"({SEARCH_STEPS:,} tries)")


def _map_layout(layout: tuple, atoms: dict):
    """The reference's input layout in our channels (None where a channel's layer is unpaired)."""
    out = []
    for entry in layout:
        mapped = set()
        for atom in entry:
            if atom[0] == INPUT:
                mapped.add(atom)
            elif atom[:2] in atoms:
                mapped.add(atoms[atom[:2]] + atom[2:])
            else:
                return None
        out.append(frozenset(mapped))
    return tuple(out)


def _permute(b: Unit, perm: list, width: int):
    """`b` with its input axis permuted (our input channel k takes the reference's perm[k]), and
    the permutation of its output channels (None when its outputs keep their order); None when
    a grouped convolution would need its groups rearranged."""
    index = torch.tensor(perm)
    w = b.tensors.get("weight")
    if b.kind in ("conv", "linear") and w is not None and w.dim() >= 2 and w.shape[1] == width:
        return Unit(b.prefix, b.kind, dict(b.tensors, weight=w[:, index])), None
    if b.kind == "conv" and w is not None and w.shape[1] == 1 and w.shape[0] == width:  # depthwise
        return Unit(b.prefix, b.kind, {k: (t[index] if t.dim() else t) for k, t in b.tensors.items()}), perm
    if b.kind == "bn":
        return Unit(b.prefix, b.kind, {k: (t[index] if t.dim() == 1 and len(t) == width else t)
                                       for k, t in b.tensors.items()}), perm
    return None


def channel_orders(pairs: list, our_flow, their_flow, kept: list | None = None):
    """(checked, None): the pairs with the reference's tensors permuted where its layers read
    their input channels in another order than ours (branches concatenated in another order),
    each with its output permutation (None: the same order); or (None, why) when a layer would
    need a permutation it cannot take (a grouped convolution). A layer whose layouts are
    unknown (an operation `dataflow` does not follow), or hold other channels than ours, keeps
    its order, as before layouts existed. Given a list `kept`, a pair that cannot be reordered
    is left out and its prefix (ours) added to `kept` instead (`strict=False`)."""
    atoms, out = {}, []  # the reference's (layer, channel) -> ours
    for a, b in pairs:
        ours_l, theirs_l = our_flow.layouts.get(a.prefix), their_flow.layouts.get(b.prefix)
        mapped = _map_layout(theirs_l, atoms) if ours_l is not None and theirs_l is not None else None
        where = {entry: k for k, entry in enumerate(mapped or ())}
        out_perm = None
        if mapped is not None and mapped != ours_l and len(where) == len(mapped) and set(where) == set(ours_l):
            permuted = _permute(b, [where[entry] for entry in ours_l], len(ours_l))
            if permuted is None and kept is not None:
                kept.append(a.prefix)
                continue
            if permuted is None:
                return None, (f"the reference's `{b.prefix}` reads its input channels in another order than ours "
                              f"`{a.prefix}`, and a grouped convolution cannot be reordered")
            b, out_perm = permuted
        t = b.tensors.get("weight", b.tensors.get("running_mean"))
        for k in range(t.shape[0] if t is not None and t.dim() else 0):
            atoms[(b.prefix, out_perm[k] if out_perm else k)] = (a.prefix, k)
        out.append(((a, b), out_perm))
    return out, None


def _differs(module, reference, checked: list, skip: set, input_size) -> str | None:
    """The first pair whose outputs differ between the two networks (after loading) on the
    dummy input of `dataflow`, or None when all agree."""
    from .dataflow import layer_outputs
    ours = layer_outputs(module, [a.prefix for (a, _), _ in checked], input_size)
    theirs = layer_outputs(reference, [b.prefix for (_, b), _ in checked], input_size)
    for (a, b), out_perm in checked:
        if a.prefix in skip or a.prefix not in ours or b.prefix not in theirs:
            continue
        mine, expected = ours[a.prefix], theirs[b.prefix]
        if out_perm is not None:
            expected = expected[:, torch.tensor(out_perm)]
        if mine.numel() != expected.numel():
            return f"`{a.prefix}` and `{b.prefix}` give {list(mine.shape)} and {list(expected.shape)}"
        scale = max(1.0, float(expected.abs().max()))
        if float((mine.reshape(expected.shape) - expected).abs().max()) > 1e-4 * scale:
            return f"ours `{a.prefix}` and the reference's `{b.prefix}` compute different values"
    return None


def pair_checked(module, reference, ours: list[Unit], theirs: list[Unit], our_flow, their_flow, skip: set,
                  classifiers: set, input_size) -> list[tuple[Unit, Unit]]:
    """The strict pairing of the trunks by flow. The plain pairing (`_flow_pairings`) in the
    same channel order is taken as it is; any other (another choice among layers that look
    alike, or a permuted input axis after a concatenation) is loaded and kept only if every
    paired layer then computes what the reference's does on the dummy input; otherwise the
    next pairing is tried, and after `PAIRINGS_CHECKED` the pairing is called ambiguous."""
    ours, our_idle = _in_flow_order(ours, our_flow)
    theirs, their_idle = _in_flow_order(theirs, their_flow)
    if our_idle or their_idle:
        side, unit = ("ours", our_idle[0]) if our_idle else ("the reference's", their_idle[0])
        raise WeightsError(f"trunk: {side} {unit.describe()} did not run in a forward pass; "
                           "pass the reference's state dict to pair layers by registration order")
    saved, tried, last = None, 0, None
    for pairs, plain in _flow_pairings(ours, theirs, our_flow, their_flow, "trunk", skip, classifiers):
        checked, why = channel_orders(pairs, our_flow, their_flow)
        if checked is None:
            last = why
            tried += 1
            if tried >= PAIRINGS_CHECKED:
                break
            continue
        if plain and all(out_perm is None for _, out_perm in checked) and all(
                p[1] is q[1] for p, (q, _) in zip(pairs, checked)):
            return pairs
        if saved is None:
            saved = {k: v.clone() for k, v in module.state_dict().items()}
        load_pairs(module, saved, [pair for pair, _ in checked], skip)
        last = _differs(module, reference, checked, skip, input_size)
        module.load_state_dict(saved)
        if last is None:
            return [pair for pair, _ in checked]
        tried += 1
        if tried >= PAIRINGS_CHECKED:
            break
    which = f"none of the {tried} pairings" if tried > 1 else "the pairing"
    raise WeightsError(f"trunk: the layers pair by kind, shape and data flow, but {which} tried computes what the "
                       f"reference does ({last}); if both register their layers in the same order, pass the "
                       "reference's state_dict() to pair them in that order")


def _no_counterpart(b: Unit, i: int, where: str, their_flow, our_flow, rest: list[Unit]) -> str:
    text = (f"{where}, layer {i}: the reference's {b.describe()} reads from {_reads(their_flow, b.prefix)}, "
            "and no layer of ours left reads from their counterparts")
    if rest:
        text += f" (the next of ours is {rest[0].describe()}, reading from {_reads(our_flow, rest[0].prefix)})"
    return text


def trace_both(module, reference, ours: list[Unit], theirs: list[Unit], input_size):
    """Both networks' flows (`dataflow.trace_flow`) at `input_size`, else the module's own."""
    from .dataflow import trace_flow
    shape = tuple(input_size or getattr(module, "input_shape", None) or ())
    if len(shape) != 3:
        raise ValueError("pairing with a reference module needs the input size: pass input_size=(C, H, W)")
    flows = []
    for name, model, found in (("ours", module, ours), ("the reference", reference, theirs)):
        try:
            flows.append(trace_flow(model, [u.prefix for u in found], shape))
        except Exception as exc:  # noqa: BLE001  (any failure of a forward pass; named below)
            raise WeightsError(f"a forward pass of {name} on a 1x{'x'.join(map(str, shape))} input failed: "
                               f"{type(exc).__name__}: {str(exc).strip()[:200]}") from exc
    return (*flows, shape)
