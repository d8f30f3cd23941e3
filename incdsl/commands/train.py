"""`incdsl train SPEC --data DATA`: train the spec's network (imports torch only when run).

Runs the same under torchrun: `torchrun --nproc_per_node=N -m incdsl train ...`.
"""
from __future__ import annotations

import argparse
import os

from ..train.recipes import RECIPES, recipe_fields

DESCRIPTION = """\
Train the spec's network. --data is an ImageFolder directory (DIR/train/<class>/*.jpg and
DIR/val/<class>/*.jpg), `digits` (scikit-learn's 8x8 handwritten digits, upscaled to the
input size) or `synthetic` (generated images, for speed runs). Images are resized to the
spec's input; --input and --classes change the network instead.

OUT gets last.pt after every epoch (model, optimiser, schedule, weight average and random
states: --resume continues exactly), final.pt at the end, metrics.jsonl (one JSON line an
epoch) and summary.json. For several processes or GPUs, start it with
`torchrun --nproc_per_node=N -m incdsl train ...`; --batch-size is per process."""


def _bool(text: str) -> bool:
    words = {"yes": True, "on": True, "true": True, "1": True, "no": False, "off": False, "false": False, "0": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return words[text.lower()]


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _recipes_epilog() -> str:
    import textwrap
    lines = ["recipes (--recipe NAME; each value can be overridden by its option):"]
    for name, (summary, _) in RECIPES.items():
        lines += textwrap.wrap(summary, 92, initial_indent=f"  {name:<14}", subsequent_indent=" " * 16,
                               break_on_hyphens=False)
    return "\n".join(lines)


def register(sub) -> None:
    from ..cli import add_spec_arguments
    p = sub.add_parser("train", help="train the network on images, digits or synthetic data",
                       description=DESCRIPTION, epilog=_recipes_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(p)
    p.add_argument("--data", required=True, metavar="DIR|digits|synthetic", help="the training data")
    p.add_argument("--out", metavar="DIR", help="where checkpoints and metrics go (default: runs/NETWORK)")
    p.add_argument("--classes", type=_positive, metavar="N",
                   help="train for N classes: sets the spec's `classes` parameter, or replaces its classifier")
    p.add_argument("--recipe", metavar="NAME", help=f"hyper-parameters: {', '.join(RECIPES)} (default: default)")
    p.add_argument("--resume", nargs="?", const="", metavar="PATH",
                   help="continue from a checkpoint file or run folder (alone: the --out folder's last.pt)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when there is one")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision (fp16 needs CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout (faster convolutions on GPUs)")
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only, so a resumed run equals an uninterrupted one")
    p.add_argument("--seed", type=int, help="random seed (default 0; on --resume, the run's)")
    p.add_argument("--workers", type=int, metavar="N", help="data loading processes per training process")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="CPU threads per process (default: torch's; 1 is faster on a busy machine)")
    p.add_argument("--stop-after", type=_positive, metavar="EPOCHS",
                   help="stop after this many epochs, as if interrupted (continue with --resume)")
    p.add_argument("--synthetic-size", type=_positive, default=1024, metavar="N",
                   help="training images of --data synthetic (validation: N/4)")
    g = p.add_argument_group("recipe overrides", "each replaces one value of the chosen recipe")
    for f in recipe_fields():
        kind, metavar = {"bool": (_bool, "yes|no"), "int": (int, "N"), "float": (float, "X"),
                         "str": (str, "NAME")}[f.type]  # annotations are strings
        g.add_argument("--" + f.name.replace("_", "-"), dest="recipe_" + f.name, type=kind, metavar=metavar,
                       help=f.metadata["help"])
    p.set_defaults(func=run)


def _load_network(args):
    """The spec's network, with --set, --input and --classes applied; (network, classes to reset)."""
    import sys
    from ..cli import UsageError, overrides
    from ..diagnostics import render
    from ..network import load
    params = overrides(args)
    net = load(args.spec, params=params, input=args.input, max_layers=args.max_layers)
    reset_classes = None
    if args.classes is not None:
        if "classes" in params:
            raise UsageError("give the number of classes once: --classes or --set classes=")
        if "classes" in net.params:
            net = load(args.spec, params={**params, "classes": args.classes}, input=args.input,
                       max_layers=args.max_layers)
        else:
            reset_classes = args.classes
    for w in net.warnings:
        print(render(w, net.sources), file=sys.stderr)
    return net, reset_classes


def run(args) -> int:
    from ..diagnostics import error
    try:
        import torch  # noqa: F401  (only to word the error when it is missing)
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise error(f"`incdsl train` needs PyTorch and torchvision: {exc}",
                    hint="pip install 'incdsl[train]'") from None
    if args.data == "digits":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise error("--data digits needs scikit-learn", hint="pip install scikit-learn") from None
    from ..train.loop import TrainConfig, train

    net, reset_classes = _load_network(args)
    out = args.out or os.path.join("runs", net.name)
    resume = out if args.resume == "" else args.resume  # `--resume` alone: this run's folder
    overrides = {f.name: getattr(args, "recipe_" + f.name) for f in recipe_fields()}
    config = TrainConfig(
        data=args.data, out=out, recipe=args.recipe, overrides={k: v for k, v in overrides.items() if v is not None},
        device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        deterministic=args.deterministic, seed=args.seed, workers=args.workers, threads=args.threads,
        num_classes=reset_classes, resume=resume, stop_after=args.stop_after, synthetic_size=args.synthetic_size)
    train(net, config, log=lambda line: print(line, flush=True))
    return 0

