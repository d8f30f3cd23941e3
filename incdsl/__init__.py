"""incdsl: describe, check, cost, draw and train Inception-family networks.

    >>> import incdsl
    >>> net = incdsl.load("specs/inception_v4.inc")
    >>> incdsl.count_costs(net).total.params
    42679816
"""
from .diagnostics import Diagnostic, IncdslError, Span
from .ir.network import Network, load

from .version import __version__

__all__ = ["Diagnostic", "IncdslError", "Network", "Span", "load", "__version__", "count_costs", "to_torch",
           "load_weights", "space"]


def count_costs(network, **kwargs):
    """Parameters, multiply-adds and memory per layer; see `incdsl.passes.cost.count_costs`.

    Returns a `Costs`: `.total` (trunk) and `.total_with_aux` hold `params`, `macs`, `flops`,
    `activations`; `.nodes` one `NodeCost` per IR node. Raises TypeError for anything but a
    `Network` (a path: `count_costs(incdsl.load(path))`).
    """
    from .passes.cost import count_costs as _count
    return _count(network, **kwargs)


def to_torch(network, *, num_classes=None, seed=None, weights=None, aux="strict", skip_classifier=False,
             strict=True, optimize="none", **kwargs):
    """Build a `torch.nn.Module` that computes `network` (imports torch).

    Parameters:
        network: a checked `Network` (from `incdsl.load`).
        num_classes: another class count for the classifier (and the aux classifiers);
            0 makes the main classifier an identity. Default: the spec's.
        seed: initialise deterministically from this seed; None draws from torch's generator.
        weights: a state dict (timm, torchvision or ours) to load with `load_weights`; the
            one-line `LoadReport` is kept as ``model.weights_report``.
        aux, skip_classifier, strict: as for `load_weights`.
        optimize: "none", "train" (sibling convolutions run as one) or "infer" (also batch
            norm folded in eval mode): graph rewrites for speed, each exact, with the same
            state dict (see `incdsl.torch.rewrite`).
    Returns:
        an `nn.Module` with timm's model API (`num_classes`, `forward_features`,
        `forward_head`, `reset_classifier`); see `incdsl.torch.build.to_torch`.
    Raises:
        TypeError: `network` is no `Network`; ValueError: `num_classes`, `seed` or `optimize`
        out of range; WeightsError: `weights` that do not fit.

    Example:
        >>> model = incdsl.to_torch(incdsl.load("specs/inception_v4.inc"), num_classes=10, seed=0)
    """
    from .torch.build import to_torch as _to_torch
    return _to_torch(network, num_classes=num_classes, seed=seed, weights=weights, aux=aux,
                     skip_classifier=skip_classifier, strict=strict, optimize=optimize, **kwargs)


def load_weights(module, state_dict, *, aux="strict", skip_classifier=False, strict=True, input_size=None):
    """Copy a reference implementation's weights into a compiled module (imports torch).

    Layers are paired in forward order by kind and tensor shapes, whatever their names.

    Parameters:
        module: a network from `to_torch` or a class written by `incdsl compile`.
        state_dict: the reference's state dict (timm inception_v3/v4/inception_resnet_v2,
            torchvision googlenet/inception_v3, or one of ours), paired in registration order;
            or the reference module itself, paired by the data flow of one forward pass of
            each (for references that register or run layers in another order: timm
            legacy_xception, resnetv2_50).
        input_size: (C, H, W) of those forward passes; by default `module.input_shape`.
        aux: "strict" (both have the same auxiliary heads) or "skip" (load the heads both
            have, keep ours otherwise).
        skip_classifier: keep our classifiers (another class count) and load the rest.
        strict: True: every layer must fit; False: load what fits, keep ours elsewhere.
    Returns:
        a `LoadReport`: our key -> the reference's key for each tensor loaded (a mapping),
        with `skipped` and `aux_heads`; its repr is one line.
    Raises:
        WeightsError: the first layer whose kind or shapes differ, with a hint.

    Example:
        >>> incdsl.load_weights(model, timm.create_model("inception_v4").state_dict())
        <LoadReport: 896 tensors loaded>
    """
    from .torch.weights import load_weights as _load_weights
    return _load_weights(module, state_dict, aux=aux, skip_classifier=skip_classifier, strict=strict,
                         input_size=input_size)


def space(path, **kwargs):
    """The search space of a spec with `choice(...)` points (a path or the text, as for `load`,
    with the same `params`, `input`, `file`, `include_path`, `max_layers`).

    Returns a `Space` with `size`, `choices`, `sample(rng)`, `mutate(point, rng)`,
    `cost(point)`, `network(point)` and `to_spec(point)`; see `incdsl.search.space`.
    """
    from .search import load_space
    return load_space(path, **kwargs)
