"""How much memory building (or exporting) a network takes, known before anything is allocated.

A spec that `check` accepts in a fraction of a second can describe billions of parameters;
`to_torch`, `compile --onnx` and `train` estimate the bytes from the cost pass first and refuse,
with the figure, when it is over a limit, instead of being killed by the kernel halfway through.

The estimate (float32 on the CPU; measured peaks are below it, see the numbers):

* 4 bytes per parameter (aux heads included) and per batch-norm running statistic, and the
  classifiers `num_classes` asks for on top (the old ones are alive while the new ones are made);
* `TRUNC_NORMAL_COPIES` more copies of the largest linear weight: `nn.init.trunc_normal_`
  makes temporaries of its size (measured: a 574 MiB weight peaks at 2.4 GiB, torch 2.14);
* 40 bytes per output cell of an average pool, for the divisor table padded pools compute;
* `LAYER_BYTES` per layer: the generated source, its bytecode and one `nn.Module` (measured at
  about 20 KiB with CPython 3.11 and torch 2), and `BASE_BYTES` once (torch's own first
  allocations: 30-75 MiB measured for the shipped specs);
* for ONNX export, also the activations of the example batch of 2 and a second copy of the
  weights (the serialised model).

The default limit, `default_max_bytes()`, is half the machine's memory (or of the cgroup's
limit, when that is lower); `to_torch(..., max_bytes=...)` and `--max-memory SIZE` change it.
No torch here.
"""
from __future__ import annotations

import os
import re

from ..diagnostics import error
from ..passes.cost import count_costs

FLOAT_BYTES = 4
LAYER_BYTES = 24 * 1024
BASE_BYTES = 128 * 2**20
TRUNC_NORMAL_COPIES = 4
DIVISOR_BYTES = 40  # a Python float in a list, then a float32 tensor cell
FALLBACK_MAX_BYTES = 8 * 2**30  # when the machine's memory cannot be read
ONNX_MAX_BYTES = 2 * 2**30  # one protobuf: ONNX without external data cannot hold more
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def build_bytes(network, num_classes: int | None = None) -> int:
    """Bytes `to_torch(network, num_classes=...)` needs, estimated as the module docstring says."""
    g = network.graph
    costs = count_costs(network)
    floats = costs.total_with_aux.params
    extra = largest_linear = 0
    for name, node in g.nodes(data=True):
        op, attrs = node["op"], node.get("attrs", {})
        if op == "conv" and attrs.get("bn") is not None:
            floats += 2 * attrs["filters"]
        elif op == "bn":
            floats += 2 * g.nodes[next(iter(g.predecessors(name)))]["shape"][0]
        elif op == "avgpool" and len(node["shape"]) == 3:
            extra += DIVISOR_BYTES * node["shape"][1] * node["shape"][2]
        elif op == "linear":
            n_in = g.nodes[next(iter(g.predecessors(name)))]["shape"][0]
            largest_linear = max(largest_linear, n_in * max(attrs["units"], num_classes or 0))
            if num_classes:
                floats += (n_in + 1) * num_classes
    return (FLOAT_BYTES * (floats + TRUNC_NORMAL_COPIES * largest_linear) + extra
            + LAYER_BYTES * g.number_of_nodes() + BASE_BYTES)


def export_bytes(network) -> int:
    """Bytes an ONNX export of `network` needs: the module, one forward of 2 images, the file."""
    costs = count_costs(network)
    return (build_bytes(network) + 2 * FLOAT_BYTES * costs.total_with_aux.activations
            + FLOAT_BYTES * costs.total_with_aux.params)


ACTIVATION_COPIES = 3  # training keeps every layer's output for the backward pass, makes its gradient, and temporaries
STATE_COPIES = 4  # per parameter: its gradient, two optimiser moments (AdamW's), a weight average


def train_bytes(network, batch_size: int, num_classes: int | None = None) -> int:
    """Bytes training `network` on the CPU in batches of `batch_size` takes, about: the built
    module, a gradient and optimiser state per parameter, and the activations of one batch
    kept for the backward pass with their gradients (measured peaks, float32, torch 2.14: 0.65
    to 0.7 times it for resnet18 at 16 images, googlenet at 8, mini_inception at 256; 1.4
    times it for a 2000x2000 upsample at 2)."""
    costs = count_costs(network).total_with_aux
    return (build_bytes(network, num_classes) + FLOAT_BYTES * STATE_COPIES * costs.params
            + FLOAT_BYTES * ACTIVATION_COPIES * batch_size * costs.activations)


def eval_bytes(network, batch_size: int, num_classes: int | None = None) -> int:
    """Bytes evaluating `network` in batches of `batch_size` takes at least: the built module and,
    with autograd off, a few of the largest layer outputs of one batch alive at once."""
    largest = max((n.activations for n in count_costs(network).nodes), default=0)
    return build_bytes(network, num_classes) + FLOAT_BYTES * ACTIVATION_COPIES * batch_size * largest


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed: Python's MemoryError, torch's CUDA
    `OutOfMemoryError`, or the CPU allocator's RuntimeError (torch raises no type of its own)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def out_of_memory_error(exc: BaseException, what: str, batch_size: int):
    """The one-line error for an allocation that failed while `what` ("training `n`")."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return error(f"out of memory while {what} in batches of {batch_size:,}", notes=[first[:300]],
                 hint="pass a smaller --batch-size, or shrink the network (--input, --set)")


def default_max_bytes() -> int:
    """Half the memory of this machine, or of this process's cgroup where that is less."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_MAX_BYTES
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read(64).strip()
        except (OSError, ValueError):
            continue
        if text.isdigit():
            total = min(total, int(text))
    return max(total // 2, 1)


def parse_size(text: str) -> int:
    """`8G`, `512M`, `1.5T`, `4096` (bytes); K, M, G, T are powers of 1024, `iB`/`B` may follow.

    Raises:
        ValueError: not such a size.
    """
    m = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"expected a size such as 8G or 512M, got {text!r}")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def format_bytes(n: float) -> str:
    """`1536` -> `1.5 KiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_size(network, needed: int, max_bytes: int | None, *, what: str, override: str, notes=()) -> None:
    """Raise an IncdslError when `needed` bytes exceed `max_bytes` (None: `default_max_bytes()`).

    Parameters:
        what: the work, for the message ("building", "exporting").
        override: how to allow more, for the hint, with `{gib}` (whole GiB) or `{bytes}` for
            a limit that fits: "--max-memory {gib}G".
    """
    limit = default_max_bytes() if max_bytes is None else max_bytes
    if needed <= limit:
        return
    params = count_costs(network).total_with_aux.params
    default = " (half this machine's memory)" if max_bytes is None else ""
    spare = needed * 5 // 4  # a quarter to spare
    raise error(f"{what} `{network.name}` needs about {format_bytes(needed)} ({params:,} parameters, "
                f"{network.graph.number_of_nodes():,} layers), over the limit of {format_bytes(limit)}{default}",
                notes=list(notes), hint="allow more with " + override.format(gib=-(-spare // 2**30), bytes=spare))


def check_onnx_size(network) -> None:
    """Raise an IncdslError when the weights cannot fit in one ONNX file (2 GiB, one protobuf)."""
    weights = FLOAT_BYTES * count_costs(network).total_with_aux.params
    if weights > ONNX_MAX_BYTES:
        raise error(f"`{network.name}` has {format_bytes(weights)} of weights; an ONNX file holds at most "
                    f"{format_bytes(ONNX_MAX_BYTES)}", hint="export a smaller network (e.g. --set to shrink it)")
