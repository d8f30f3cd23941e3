"""incdsl: describe, check, cost, draw and train Inception-family networks.

    >>> import incdsl
    >>> net = incdsl.load("specs/inception_v4.inc")
    >>> incdsl.count_costs(net).total.params
    42679816
"""
from .diagnostics import Diagnostic, IncdslError, Span
from .network import Network, load

__version__ = "0.1.0"

__all__ = ["Diagnostic", "IncdslError", "Network", "Span", "load", "__version__", "count_costs", "to_torch",
           "load_weights", "space"]


def count_costs(network, **kwargs):
    """Parameters, multiply-adds and memory per layer; see `incdsl.passes.cost.count_costs`."""
    from .passes.cost import count_costs as _count
    return _count(network, **kwargs)


def to_torch(network, **kwargs):
    """Build a `torch.nn.Module` from a network (imports torch)."""
    from .backends.torch import to_torch as _to_torch
    return _to_torch(network, **kwargs)


def load_weights(module, state_dict, **kwargs):
    """Map a reference implementation's state dict onto a compiled module (imports torch)."""
    from .backends.weights import load_weights as _load_weights
    return _load_weights(module, state_dict, **kwargs)


def space(path, **kwargs):
    """A search space: a spec with `choice(...)` points; see `incdsl.search.load_space`."""
    from .search import load_space
    return load_space(path, **kwargs)
