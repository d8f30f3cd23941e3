"""Load a reference implementation's state dict into a compiled network, by structure and shape.

Names differ between implementations (timm `features.6.branch1.0.conv.weight`, ours
`inception_a.0.branch_1.conv_0.conv.weight`); structure does not. Both state dicts are cut
into *units*, one per module that holds tensors directly:

    conv    a 4-d `weight` (and a `bias`)
    linear  a 2-d `weight` (and a `bias`)
    bn      `weight`, `bias`, `running_mean`, `running_var` (, `num_batches_tracked`)
    scale   `layer_scale` alone (ConvNeXt's per-channel multiplier, torchvision's name)

Given a state dict, the units are paired in order: ours in graph (forward) order, the
reference's in registration order, which for most timm and torchvision models is forward order.
Given the reference *module*, both run once on a dummy input (`dataflow.trace_flow`) and each
of the reference's units, in the order they ran, pairs with the first of ours that reads from
the counterparts of the units it reads from and fits: the order of parallel paths, and where a
shortcut is registered or run, no longer matter (timm's `legacy_xception`, `resnetv2_50`).
Where branches look alike up to a point (two towers that both start with a 1x1 conv of 64),
the pairing backtracks; where a concatenation joins the branches in another order (a port of
Inception-v4 that puts the double 3x3 tower first), the layer that reads it gets its input
axis permuted to match, and a batch norm or depthwise conv on the way is permuted with it,
as `dataflow`'s channel layouts say. Any such pairing other than the plain one is kept only if
every paired layer then computes what the reference's does on the dummy input; otherwise the
next is tried, and the load fails when none does. That search is `flowpair.py`'s.
A 1x1 conv pairs with a linear layer of the same weights (timm's conv classifiers). Auxiliary heads are
paired separately, head by head: ours from `aux_paths`, the reference's from top-level
modules whose name contains "aux" (torchvision registers GoogLeNet's `aux1`/`aux2` after
`inception5b`, out of forward order). Every pair must agree in kind and in every tensor shape;
the first that does not is reported with both keys, as nanoGPT's `from_pretrained` checks key
counts and shapes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class WeightsError(ValueError):
    """The state dict does not fit the network; the message names the first mismatch."""


@dataclass
class Unit:
    prefix: str
    kind: str  # conv | linear | bn
    tensors: dict = field(default_factory=dict)  # leaf name -> tensor

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in self.tensors.items() if k != "num_batches_tracked")
        return f"{self.kind} `{self.prefix}` ({shapes})"


def units(state_dict) -> list[Unit]:
    """The tensor-holding modules of a state dict, in its order."""
    groups: dict[str, dict] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value
    out = []
    for prefix, tensors in groups.items():
        if "running_mean" in tensors or "running_var" in tensors:
            kind = "bn"
        elif "weight" in tensors and tensors["weight"].dim() == 4:
            kind = "conv"
        elif "weight" in tensors and tensors["weight"].dim() == 2:
            kind = "linear"
        elif "weight" in tensors and tensors["weight"].dim() == 1:
            kind = "bn"  # affine norm without running statistics
        elif set(tensors) == {"layer_scale"}:
            kind = "scale"
        else:
            continue  # e.g. buffers of parameter-free layers
        out.append(Unit(prefix, kind, tensors))
    return _scales_after_their_children(out)


def _scales_after_their_children(found: list[Unit]) -> list[Unit]:
    """A module's own tensors come before its children's in a state dict, though torchvision's
    `CNBlock` applies its `layer_scale` after its children (the branch): such a scale moves to
    after the last unit under its prefix, where forward order has it; a leaf scale (ours) stays."""
    out = list(found)
    for unit in [u for u in found if u.kind == "scale" and u.prefix]:
        under = [i for i, u in enumerate(out) if u.prefix.startswith(unit.prefix + ".")]
        if under:
            out.insert(under[-1] + 1, unit)
            out.remove(unit)  # the first occurrence: the original place, before its children
    return out


def _under(prefix: str, path: str) -> bool:
    return prefix == path or prefix.startswith(path + ".")


def _split_ours(module, found: list[Unit]) -> tuple[list[Unit], list[list[Unit]]]:
    heads = list(getattr(module, "aux_paths", []))
    aux = [[u for u in found if _under(u.prefix, p)] for p in heads]
    taken = {id(u) for head in aux for u in head}
    return [u for u in found if id(u) not in taken], aux


def split_reference(found: list[Unit], aux_paths=()) -> tuple[list[Unit], list[list[Unit]]]:
    """(trunk, heads): heads are top-level modules named like "aux", or, for a state dict of
    ours, the modules at our `aux_paths` (our heads take the names the spec gives them)."""
    trunk, aux = [], {}
    for u in found:
        top = u.prefix.split(".")[0]
        head = next((p for p in aux_paths if _under(u.prefix, p)), None)
        if head is not None or "aux" in top.lower():
            aux.setdefault(head or top, []).append(u)
        else:
            trunk.append(u)
    return trunk, list(aux.values())


BIAS_HINT = ("the two differ in conv biases: one puts batch norm after bias-free convolutions; for torchvision's "
             "GoogLeNet load into specs/variants/googlenet_torchvision.inc, which has its layout")
CLASSIFIER_HINT = "pass skip_classifier=True to keep ours (another class count) and load the rest"


class LoadReport(Mapping):
    """What `load_weights` did: our key -> the reference's key for each tensor loaded (a read-only
    mapping), plus the layers left as they were.

    Attributes:
        loaded: {our key: the reference's key}.
        skipped: our module prefixes not loaded (our classifiers under `skip_classifier`, unpaired
            aux heads under `aux="skip"`, mismatches under `strict=False`), in order.
        aux_heads: auxiliary heads loaded.
    """

    def __init__(self, loaded: dict, skipped: list, aux_heads: int):
        self.loaded, self.skipped, self.aux_heads = loaded, skipped, aux_heads

    def __getitem__(self, key):
        return self.loaded[key]

    def __iter__(self):
        return iter(self.loaded)

    def __len__(self) -> int:
        return len(self.loaded)

    def summary(self) -> str:
        """`896 tensors loaded, 1 aux head, 2 layers kept (linear_0, aux.linear_0)`-style text."""
        parts = [f"{len(self.loaded)} tensors loaded"]
        if self.aux_heads:
            parts.append(f"{self.aux_heads} aux head{'s' if self.aux_heads != 1 else ''}")
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            parts.append(f"{len(self.skipped)} layer{'s' if len(self.skipped) != 1 else ''} kept ({shown})")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"<LoadReport: {self.summary()}>"


def mismatch(a: Unit, b: Unit, where: str, i: int, skip: set, classifiers: set) -> str | None:
    """Why `a` (ours) cannot take `b`'s tensors, with a hint where one helps; None if it can."""
    if a.kind != b.kind:
        return f"{where}, layer {i}: ours is {a.describe()}, the reference's is {b.describe()}"
    for leaf, t in a.tensors.items():
        if leaf == "num_batches_tracked" and leaf not in b.tensors:
            continue
        if leaf not in b.tensors:
            hint = f"; {BIAS_HINT}" if a.kind == "conv" and leaf == "bias" else ""
            return (f"{where}, layer {i}: the reference's {b.describe()} has no `{leaf}` for "
                    f"`{a.prefix}.{leaf}`{hint}")
        if tuple(b.tensors[leaf].shape) != tuple(t.shape) and a.prefix not in skip:
            hint = f"; {CLASSIFIER_HINT}" if a.prefix in classifiers else ""
            return (f"{where}, layer {i}: `{a.prefix}.{leaf}` has shape {list(t.shape)} but the "
                    f"reference's `{b.prefix}.{leaf}` has {list(b.tensors[leaf].shape)}{hint}")
    extra = set(b.tensors) - set(a.tensors)
    if extra:
        hint = f"; {BIAS_HINT}" if a.kind == "conv" and extra == {"bias"} else ""
        return (f"{where}, layer {i}: the reference's {b.describe()} has "
                f"{', '.join(sorted(extra))}, which ours (`{a.prefix}`) lacks{hint}")
    return None


def as_kind_of(b: Unit, a: Unit) -> Unit:
    """`b` in `a`'s form where a 1x1 conv and a linear layer hold the same weights (timm's
    `ClassifierHead(use_conv=True)` against our `linear`); `b` itself otherwise."""
    w, ours = b.tensors.get("weight"), a.tensors.get("weight")
    if w is None or ours is None:
        return b
    if b.kind == "conv" and a.kind == "linear" and tuple(w.shape[2:]) == (1, 1):
        return Unit(b.prefix, "linear", dict(b.tensors, weight=w.flatten(1)))
    if b.kind == "linear" and a.kind == "conv" and tuple(ours.shape[2:]) == (1, 1):
        return Unit(b.prefix, "conv", dict(b.tensors, weight=w[:, :, None, None]))
    return b


def _pair(ours: list[Unit], theirs: list[Unit], where: str, skip: set, classifiers: set,
          strict: bool = True) -> tuple[list[tuple[Unit, Unit]], list[str]]:
    """Pairs of units that fit, and (with `strict=False`) the prefixes of ours that do not."""
    pairs, left = [], []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = as_kind_of(b, a)
        problem = mismatch(a, b, where, i, skip, classifiers)
        if problem is None:
            pairs.append((a, b))
        elif strict:
            raise WeightsError(problem)
        else:
            left.append(a.prefix)
    if len(ours) != len(theirs):
        if strict:
            longer, name = (ours, "ours") if len(ours) > len(theirs) else (theirs, "the reference's")
            raise WeightsError(f"{where}: ours has {len(ours)} layers with weights, the reference {len(theirs)}; "
                               f"the first unpaired is {name} {longer[min(len(ours), len(theirs))].describe()}")
        left += [u.prefix for u in ours[len(theirs):]]
    return pairs, left



def load_pairs(module, own: dict, pairs: list, skip: set) -> dict:
    """Load each pair's tensors (the reference's) into `module` over `own`; returns the mapping
    our key -> the reference's key."""
    new, mapping = dict(own), {}
    for a, b in pairs:
        if a.prefix in skip:
            continue
        for leaf in a.tensors:
            if leaf in b.tensors:
                new[f"{a.prefix}.{leaf}"] = b.tensors[leaf]
                mapping[f"{a.prefix}.{leaf}"] = f"{b.prefix}.{leaf}"
    module.load_state_dict(new, strict=True)
    return mapping


def _unwrap(reference):
    """The model inside DataParallel / DistributedDataParallel."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return reference.module if isinstance(reference, wrappers) else reference


def load_weights(module, state_dict, *, aux: str = "strict", skip_classifier: bool = False,
                 strict: bool = True, input_size=None) -> LoadReport:
    """Copy a reference's weights into a compiled network, pairing layers by order, kind and shape.

    Parameters:
        module: a network from `incdsl.to_torch` or a class written by `incdsl compile`.
        state_dict: the reference's state dict (timm inception_v3/v4/inception_resnet_v2,
            torchvision googlenet/inception_v3, or one of ours), its layers paired in
            registration order; keys saved from DataParallel/DDP (`module.` prefixes) are
            accepted. Or the reference module itself (an `nn.Module`): its layers are paired by
            the data flow of one forward pass of each network, which also fits references that
            register or run their layers in another order (timm `legacy_xception`,
            `resnetv2_50`); neither module's state or mode changes.
        input_size: (C, H, W) of the forward passes when `state_dict` is a module; by default
            the input size the network was compiled for (`module.input_shape`).
        aux: "strict": both sides have the same auxiliary heads; "skip": heads are loaded
            where both have them and left as they are otherwise (e.g. a reference built with
            `aux_logits=True` into a spec without heads).
        skip_classifier: keep our classifiers (e.g. another class count) instead of loading
            the reference's.
        strict: every layer must pair with one of the same kind and shapes (the default);
            False loads the layers that fit and keeps ours where they do not, listing them in
            the report's `skipped`.
    Returns:
        a `LoadReport`: a mapping of our key -> the reference's key for every tensor loaded,
        whose repr is one line (`<LoadReport: 896 tensors loaded>`).
    Raises:
        WeightsError: naming the first layer whose kind or shapes differ, or the first
            unpaired layer, with a hint (`skip_classifier=True` for a classifier of another
            size; the torchvision-layout spec for GoogLeNet's conv biases).
        ValueError: `aux` is not "strict" or "skip".
        TypeError: `module` is no `nn.Module`, or `state_dict` neither a mapping nor one.

    Example:
        >>> ref = timm.create_model("inception_v4")
        >>> model = incdsl.to_torch(incdsl.load("specs/inception_v4.inc"))
        >>> load_weights(model, ref.state_dict())
        <LoadReport: 896 tensors loaded>
    """
    if aux not in ("strict", "skip"):
        raise ValueError(f"aux must be 'strict' or 'skip', got {aux!r}")
    if not isinstance(module, torch.nn.Module):
        hint = ": build it with incdsl.to_torch(network) first" if hasattr(module, "graph") else ""
        raise TypeError(f"load_weights() loads into an nn.Module, got {type(module).__name__}{hint}")
    if not isinstance(state_dict, (Mapping, torch.nn.Module)):
        hint = ": read a file with torch.load(path, weights_only=True) first" if isinstance(state_dict, (str, os.PathLike)) else ""
        raise TypeError(f"load_weights() takes a state dict or the reference nn.Module, got {type(state_dict).__name__}{hint}")
    own = module.state_dict()
    reference = _unwrap(state_dict) if isinstance(state_dict, torch.nn.Module) else None
    if reference is not None:
        if getattr(module, "fusion_plan", None):
            raise WeightsError(f"pairing layers with a reference module runs both forwards, and this model's were "
                               f"rewritten (optimize={getattr(module, 'optimize_level', '?')!r}): pass the reference's "
                               f"state_dict(), or load with to_torch(..., optimize=..., weights=reference)")
        state_dict = reference.state_dict()
    elif state_dict and all(k.startswith("module.") for k in state_dict):  # saved from DataParallel / DDP
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    our_trunk, our_aux = _split_ours(module, units(own))
    ref_units = units(state_dict)
    ours_present = [p for p in getattr(module, "aux_paths", []) if any(_under(u.prefix, p) for u in ref_units)]
    ref_trunk, ref_aux = split_reference(ref_units, ours_present)
    if aux == "strict" and len(our_aux) != len(ref_aux):
        raise WeightsError(f"ours has {len(our_aux)} auxiliary head(s), the reference {len(ref_aux)}; "
                           "pass aux='skip' to load the trunk alone")
    classifiers = {p for p, *_ in getattr(module, "classifiers", [])}
    skip = classifiers if skip_classifier else set()
    if reference is None:
        pairs, left = _pair(our_trunk, ref_trunk, "trunk", skip, classifiers, strict)
    else:
        from .flowpair import channel_orders, trace_both, pair_by_flow, pair_checked  # it imports this module
        our_flow, their_flow, shape = trace_both(module, reference, our_trunk, ref_trunk, input_size)
        if strict:
            pairs, left = pair_checked(module, reference, our_trunk, ref_trunk, our_flow, their_flow, skip,
                                        classifiers, shape), []
        else:
            pairs, left = pair_by_flow(our_trunk, ref_trunk, our_flow, their_flow, "trunk", skip, classifiers,
                                        strict)
            checked, _ = channel_orders(pairs, our_flow, their_flow, kept=left)
            pairs = [pair for pair, _ in checked]
    for i, (a, b) in enumerate(zip(our_aux, ref_aux)):
        head_pairs, head_left = _pair(a, b, f"aux head {i + 1}", skip, classifiers, strict)
        pairs, left = pairs + head_pairs, left + head_left
    left += [u.prefix for head in our_aux[len(ref_aux):] for u in head]  # aux="skip": heads the reference lacks
    left += [a.prefix for a, _ in pairs if a.prefix in skip]
    mapping = load_pairs(module, own, pairs, skip)
    return LoadReport(mapping, left, min(len(our_aux), len(ref_aux)))
