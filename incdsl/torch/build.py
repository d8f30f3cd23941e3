"""IR -> `torch.nn.Module`: build the network `source.py` writes, in memory.

`to_torch` generates the source of the network and executes it, as torch.fx's `GraphModule`
does with its generated code, so `incdsl compile` files and `to_torch` modules are the same
modules by construction: the source differs from a compiled file only in importing the layer
classes from `incdsl.torch.layers` where the file copies them. The contract (state-dict keys,
forward outputs, the model API) is in `to_torch`'s docstring.

Generated modules stay out of `sys.modules`: networks of one name differ (other parameters,
another optimize level, another spec of that name), so a module name cannot say which source
it holds, and a registered module would live as long as the process. A model pickles instead
by value of its source: every generated class reduces to `rebuild_generated(name, source,
class)` plus the object's usual state, and the layer classes pickle by reference to
`incdsl.torch.layers`. So `torch.save(model)`, `pickle`, `copy.deepcopy` and a 'spawn' worker
rebuild the model in any process that can import incdsl, and each distinct source is
executed once there (see `generated_module`).
"""
from __future__ import annotations

import itertools
import linecache
import pickle
import threading
import types
import weakref

import torch  # the generated code imports it too; fail here with a clear name

from ..ir.names import identifier
from ..ir.network import network_graph
from .memory import build_bytes, check_size
from .rewrite import check_level
from .source import generate_source

_counter = itertools.count()


def load_source(text: str, name: str = "incdsl_model") -> types.ModuleType:
    """Execute generated source as a fresh module (not put in `sys.modules`).

    The text is registered with `linecache` so tracebacks and `inspect` show the code.
    """
    filename = f"<incdsl-generated {name} #{next(_counter)}>"
    module = types.ModuleType(name)
    module.__file__ = filename
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    exec(compile(text, filename, "exec"), module.__dict__)
    return module


# executed generated modules by (module name, source); weak: a module goes when the last
# instance of its classes does, so building or loading many networks leaks nothing
_modules: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_modules_lock = threading.Lock()


def generated_module(text: str, name: str) -> types.ModuleType:
    """The module of generated `text`, executed once per (name, text) while its classes live.

    Each class the text defines gets `reduce_generated` as its `__reduce_ex__` and holds the
    module, so instances pickle by source and keep the cache entry alive.
    """
    key = (name, text)
    with _modules_lock:
        module = _modules.get(key)
        if module is None:
            module = load_source(text, name)
            for value in list(vars(module).values()):
                if isinstance(value, type) and value.__module__ == name:
                    value._incdsl_generated = key
                    value._incdsl_module = module
                    value.__reduce_ex__ = reduce_generated
            _modules[key] = module
    return module


def reduce_generated(self, protocol):
    """`__reduce_ex__` of a generated class: `rebuild_generated` and the object's usual state."""
    key = type(self).__dict__.get("_incdsl_generated")
    if key is None:  # a subclass defined elsewhere, importable: pickled as usual
        return object.__reduce_ex__(self, protocol)
    _newobj, _cls, *state = object.__reduce_ex__(self, max(protocol, 2))
    name, source = key
    return (rebuild_generated, (name, source, type(self).__qualname__), *state)


def rebuild_generated(name: str, source: str, qualname: str):
    """A new, empty instance of the class `qualname` of generated `source` (module `name`),
    for pickle to fill with the instance's state: what a pickled `to_torch` model is loaded by.
    The source is executed once per process while models of it live (`generated_module`).

    Raises:
        pickle.UnpicklingError: the arguments are not those of a generated class.
    """
    if not (isinstance(name, str) and isinstance(source, str) and isinstance(qualname, str)):
        raise pickle.UnpicklingError("rebuild_generated takes the module name, source and class name as text")
    cls = vars(generated_module(source, name)).get(qualname)
    if not (isinstance(cls, type) and "_incdsl_generated" in vars(cls)):
        raise pickle.UnpicklingError(f"the pickled incdsl model's source defines no class {qualname!r}")
    return cls.__new__(cls)


def to_torch(network, *, num_classes: int | None = None, seed: int | None = None, weights=None,
             aux: str = "strict", skip_classifier: bool = False, strict: bool = True,
             max_bytes: int | None = None, optimize: str = "none"):
    """Build a `torch.nn.Module` that computes `network`, optionally with a reference's weights.

    Parameters:
        network: a checked `incdsl.Network`.
        num_classes: replace the classifier (and the aux classifiers that predict the same
            classes) with one for this many classes; `0` makes the main classifier an identity.
            Default: the spec's count.
        seed: initialise deterministically from this seed (see `layers.init_weights`);
            `None` draws from torch's global generator.
        weights: a state dict to load with `load_weights` (timm, torchvision or ours); the
            result, a one-line `LoadReport`, is kept as ``model.weights_report``.
        aux, skip_classifier, strict: passed to `load_weights` with `weights`: "strict" or
            "skip" for auxiliary heads the reference lacks; keep our classifiers (another
            class count); False loads the layers that fit and keeps the rest.
        max_bytes: refuse to build a network whose estimated memory (see `memory.py`) is
            larger; default: half the machine's memory. Not checked when the default device
            is `meta` (nothing is allocated there).
        optimize: "none" (one module per node), "train" (sibling convolutions fused) or
            "infer" (also batch norm folded, in eval mode without autograd); see
            `rewrite.py`. Every level computes the same outputs and has the same state dict.
    Returns:
        an `nn.Module` (on the CPU, float32, in training mode) with:

        * modules named by IR scope: node ``a.2/branch_1/conv_0`` is module
          ``a[2].branch_1.conv_0``; a conv node has state-dict keys ``<path>.conv.weight``
          (``.conv.bias`` when it has a bias) and ``<path>.bn.weight/bias/running_mean/
          running_var/num_batches_tracked``; a linear node ``<path>.weight/bias``;
        * ``num_classes``, ``aux_names``, ``aux_weights`` (lists in spec order),
          ``forward_features(x)`` (the last feature map), ``forward_head(x, pre_logits=False)``,
          ``reset_classifier(num_classes)`` and ``forward(x)``: logits, or in training mode, when
          the spec has aux heads, ``(logits, [aux_logits, ...])``;
        * ``input_shape``: the (C, H, W) it takes, at any batch size; `forward` and
          `forward_features` raise `InputShapeError` (a ValueError) for anything else, saying
          how to build the network for that size (`IncdslNet.check_input`);
        * ``node_paths``: IR node name -> module path.

        It pickles (`torch.save`, `pickle`, `copy.deepcopy`, 'spawn' workers) and loads in any
        process that can import incdsl: see this module's docstring.
    Raises:
        TypeError: `network` is no `Network`.
        ValueError: `num_classes` is no integer >= 0, or is given but the network ends in no
            linear classifier; `seed` or `optimize` is out of range.
        WeightsError: `weights` do not fit (see `load_weights`).
        IncdslError: the network would need more than `max_bytes`; checked before anything
            is built, from the cost pass.

    Example:
        >>> model = to_torch(incdsl.load("specs/inception_v4.inc"), num_classes=10, seed=0)
        >>> model.eval()(torch.randn(1, 3, 299, 299)).shape
        torch.Size([1, 10])
    """
    network_graph(network, "to_torch")
    if num_classes is not None and not (isinstance(num_classes, int) and not isinstance(num_classes, bool)
                                        and num_classes >= 0):
        raise ValueError(f"num_classes must be an integer >= 0 (0: no classifier), got {num_classes!r}")
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < 2**64):  # a torch.Generator's range
        raise ValueError(f"seed must be an integer in 0 .. 2**64 - 1, got {seed!r}")
    if aux not in ("strict", "skip"):  # checked even without weights: a typo should not wait for them
        raise ValueError(f"aux must be 'strict' or 'skip', got {aux!r}")
    if torch.get_default_device().type != "meta":
        check_size(network, build_bytes(network, num_classes), max_bytes, what="building",
                   override="to_torch(..., max_bytes={bytes})")
    check_level(optimize)
    text, cls, paths = generate_source(network, optimize=optimize, standalone=False)
    module = generated_module(text, "incdsl_" + identifier(network.name))
    model = getattr(module, cls)(num_classes=num_classes, seed=seed)
    model.node_paths = dict(paths)
    if weights is not None:
        from .weights import load_weights
        target = model
        if optimize != "none":  # pair layers on the unfused model, whose modules are the spec's
            target = to_torch(network, num_classes=num_classes, seed=seed, max_bytes=max_bytes)
        report = load_weights(target, weights, aux=aux, skip_classifier=skip_classifier, strict=strict)
        if target is not model:
            model.load_state_dict(target.state_dict())
        model.weights_report = report
    return model
