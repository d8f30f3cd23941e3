"""`incdsl compile SPEC -o model.py`: write standalone PyTorch source (and optionally ONNX).

Writing source needs no torch; `--onnx` and `--weights` import it when the command runs.
"""
from __future__ import annotations

import os
import sys

DESCRIPTION = """\
Compile the spec's network to one Python file that needs only torch: the layer classes, one
class per block configuration, and the network class, with straight-line forward code and
modules named after the spec's scopes. `Model(num_classes=..., seed=...)` builds it; with the
same seed it equals `incdsl.to_torch(net, seed=...)`. --onnx also exports the network, in
eval mode with a dynamic batch size, to ONNX (needs torch, onnx and onnxscript); it first
estimates the memory that takes and refuses above --max-memory."""


def register(sub) -> None:
    from ..cli import ParagraphHelpFormatter, add_spec_arguments
    p = sub.add_parser("compile", help="compile the network to standalone PyTorch source (and ONNX)",
                       description=DESCRIPTION, formatter_class=ParagraphHelpFormatter)
    add_spec_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE.py", help="where the source goes (default or -: standard output)")
    p.add_argument("--class-name", metavar="NAME",
                   help="the network class's name (default: from the network's name); a Python identifier that "
                        "is no keyword, builtin or name the generated module defines (torch, nn, F, Scope, ...)")
    p.add_argument("--optimize", choices=("none", "train", "infer"), default="none",
                   help="graph rewrites for speed, each exact: none (one module per layer, the default); "
                        "train (sibling convolutions that read one tensor run as one); infer (train, and in eval "
                        "mode batch norm folded into the convolutions and, eagerly without autograd, each "
                        "concatenation's branches written into their slices of its output). The state dict is the "
                        "spec's at every level")
    p.add_argument("--onnx", metavar="FILE.onnx", help="also export the network to ONNX")
    from .train import bounded_int
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1, "a seed"),
                   help="weight initialisation seed for --onnx (default 0)")
    p.add_argument("--weights", metavar="FILE.pt",
                   help="for --onnx: a state dict to load (ours, or a timm/torchvision reference's)")
    p.add_argument("--max-memory", metavar="SIZE", type=memory_size,
                   help="for --onnx: refuse a network whose estimated memory is larger, e.g. 8G or 512M "
                        "(default: half this machine's memory)")
    p.set_defaults(func=run)


def memory_size(text: str) -> int:
    """`--max-memory SIZE` (compile, train, eval): bytes, or a usage error."""
    import argparse

    from ..torch.memory import parse_size
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args) -> int:
    from ..torch.source import class_name_problem, generate_source
    from ..cli import UsageError, load_spec
    from ..io import OutputError, check_output, same_file, write_atomic
    if args.class_name is not None:
        problem = class_name_problem(args.class_name)
        if problem:
            raise UsageError(f"--class-name: {problem}")
    for option, value in (("--weights", args.weights), ("--seed", args.seed), ("--max-memory", args.max_memory)):
        if value is not None and not args.onnx:  # the source alone has no weights or memory to bound
            raise UsageError(f"{option} is only used with --onnx")
    if args.output and args.onnx and (args.output == args.onnx or same_file(args.output, args.onnx)):
        raise OutputError(f"cannot write {args.onnx}: -o and --onnx name the same file")
    net = load_spec(args)
    inputs = [*net.sources, *([args.weights] if args.weights else [])]
    text, cls, _ = generate_source(net, args.class_name, optimize=args.optimize)
    if args.onnx:
        check_output(args.onnx, inputs)  # before the export, which takes a while
    onnx = _onnx_bytes(net, args) if args.onnx else None  # before writing anything: it may fail
    if args.output:
        write_atomic(args.output, text, inputs=inputs)
        if args.output != "-":
            print(f"wrote {args.output} (class {cls})", file=sys.stderr)
    elif not args.onnx:
        sys.stdout.write(text)
    if args.onnx:
        write_atomic(args.onnx, onnx, inputs=inputs)
        print(f"wrote {args.onnx}", file=sys.stderr)
    return 0


def _onnx_bytes(net, args) -> bytes:
    from ..torch.memory import check_onnx_size, check_size, export_bytes
    from ..cli import MissingExtra
    # from the cost pass, before torch is imported or anything allocated
    check_onnx_size(net)
    check_size(net, export_bytes(net), args.max_memory, what="exporting", override="--max-memory {gib}G")
    try:
        from ..torch.onnx import MissingDependency, export_onnx
        from ..torch.build import to_torch
    except ImportError as exc:
        raise MissingExtra(f"--onnx needs PyTorch ({exc})", "pip install torch onnx onnxscript") from None
    model = to_torch(net, seed=args.seed or 0, max_bytes=args.max_memory, optimize=args.optimize)
    if args.weights:
        _load_weights_file(model, net, args.weights)
    try:
        return export_onnx(model, net.input_shape)
    except MissingDependency as exc:
        raise MissingExtra(str(exc), exc.install) from None


def _load_weights_file(model, net, path: str) -> None:
    """Load a state-dict file into `model`; any problem with the file is an error (exit 1)."""
    import torch

    from ..torch.weights import WeightsError, load_weights
    from ..diagnostics import error
    if not os.path.isfile(path):
        why = "not a regular file" if os.path.exists(path) else "no such file"
        raise error(f"cannot read weights {path}: {why}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise error(f"cannot read weights {path}: {type(exc).__name__}: {_first_line(exc)}",
                    hint="pass a file written by torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(k, str) for k in state)
            and any(isinstance(v, torch.Tensor) for v in state.values())):
        raise error(f"weights {path} hold no state dict (a dict of names to tensors), but a {type(state).__name__}",
                    hint="pass a file written by torch.save(model.state_dict(), path)")
    try:
        load_weights(model, state)
    except (WeightsError, RuntimeError) as exc:
        raise error(f"weights {path} do not fit `{net.name}`: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "(no message)"
