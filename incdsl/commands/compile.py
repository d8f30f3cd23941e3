"""`incdsl compile SPEC -o model.py`: write standalone PyTorch source (and optionally ONNX).

Writing source needs no torch; `--onnx` and `--weights` import it when the command runs.
"""
from __future__ import annotations

import keyword
import sys

DESCRIPTION = """\
Compile the spec's network to one Python file that needs only torch: the layer classes, one
class per block configuration, and the network class, with straight-line forward code and
modules named after the spec's scopes. `Model(num_classes=..., seed=...)` builds it; with the
same seed it equals `incdsl.to_torch(net, seed=...)`. --onnx also exports the network, in
eval mode with a dynamic batch size, to ONNX (needs torch, onnx and onnxscript)."""


def register(sub) -> None:
    import argparse

    from ..cli import add_spec_arguments
    p = sub.add_parser("compile", help="compile the network to standalone PyTorch source (and ONNX)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE.py", help="where the source goes (default or -: standard output)")
    p.add_argument("--class-name", metavar="NAME", help="the network class's name (default: from the network's name)")
    p.add_argument("--onnx", metavar="FILE.onnx", help="also export the network to ONNX")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed for --onnx (default 0)")
    p.add_argument("--weights", metavar="FILE.pt",
                   help="for --onnx: a state dict to load (ours, or a timm/torchvision reference's)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends.source import generate_source
    from ..cli import UsageError, load_spec
    from ..io import OutputError, check_output, same_file, write_atomic
    if args.class_name is not None and (not args.class_name.isidentifier() or keyword.iskeyword(args.class_name)):
        raise UsageError(f"--class-name must be a Python identifier, got {args.class_name!r}")
    if args.weights and not args.onnx:
        raise UsageError("--weights is only used with --onnx")
    if args.output and args.onnx and (args.output == args.onnx or same_file(args.output, args.onnx)):
        raise OutputError(f"cannot write {args.onnx}: -o and --onnx name the same file")
    net = load_spec(args)
    inputs = [*net.sources, *([args.weights] if args.weights else [])]
    text, cls, _ = generate_source(net, args.class_name)
    if args.onnx:
        check_output(args.onnx, inputs)  # before the export, which takes a while
    if args.output:
        write_atomic(args.output, text, inputs=inputs)
        if args.output != "-":
            print(f"wrote {args.output} (class {cls})", file=sys.stderr)
    elif not args.onnx:
        sys.stdout.write(text)
    if args.onnx:
        write_atomic(args.onnx, _onnx_bytes(net, args), inputs=inputs)
        print(f"wrote {args.onnx}", file=sys.stderr)
    return 0


def _onnx_bytes(net, args) -> bytes:
    from ..cli import UsageError
    try:
        import torch
        from ..backends.onnx import MissingDependency, export_onnx
        from ..backends.torch import to_torch
        from ..backends.weights import WeightsError, load_weights
    except ImportError as exc:
        raise UsageError(f"--onnx needs torch ({exc}): pip install torch onnx onnxscript") from None
    model = to_torch(net, seed=args.seed)
    if args.weights:
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot read weights {args.weights}: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            load_weights(model, state)
        except WeightsError as exc:
            raise UsageError(f"weights {args.weights} do not fit {net.name}: {exc}") from None
    try:
        return export_onnx(model, net.input_shape)
    except MissingDependency as exc:
        raise UsageError(str(exc)) from None
