"""`incdsl train SPEC --data DATA`: train the spec's network (imports torch only when run).

Runs the same under torchrun: `torchrun --nproc_per_node=N -m incdsl train ...`.
"""
from __future__ import annotations

import argparse
import os
import signal

from ..train import MAX_SYNTHETIC
from ..train.recipes import RECIPES, recipe_fields

DESCRIPTION = """\
Train the spec's network. --data is an ImageFolder directory (DIR/train/<class>/*.jpg and
DIR/val/<class>/*.jpg), `digits` (scikit-learn's 8x8 handwritten digits, upscaled to the
input size) or `synthetic` (generated images, for speed runs). Images are resized to the
spec's input; --input and --classes change the network instead. --weights starts from a
state dict file or a library model's pretrained weights (timm:NAME, torchvision:NAME);
a classifier of another size keeps its fresh initialisation.

OUT gets last.pt after every epoch (model, optimiser, schedule, weight average, random
states and how the run was started), final.pt at the end, metrics.jsonl (one JSON line an
epoch) and summary.json. `incdsl train --resume OUT` continues exactly, with the spec,
classes, input size, recipe and data from the checkpoint; flags given again override
them. For several processes or GPUs, start it with
`torchrun --nproc_per_node=N -m incdsl train ...`; --batch-size is per process."""

MAX_THREADS = MAX_WORKERS = 1024
MAX_CLASSES = 1_000_000


def _bool(text: str) -> bool:
    words = {"yes": True, "on": True, "true": True, "1": True, "no": False, "off": False, "false": False, "0": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return words[text.lower()]


def bounded_int(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high] (bad values are usage errors, exit 2)."""
    def convert(text: str) -> int:
        stripped = text.strip()
        digits = stripped[1:] if stripped[:1] in "+-" else stripped
        if not digits.isascii() or not digits.isdigit() or len(digits) > 20 or not low <= int(stripped) <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high:,}, got {text!r}")
        return int(stripped)
    convert.__name__ = what  # argparse names the type in some messages
    return convert


_positive = bounded_int(1, 2**31 - 1, "an integer")


def _recipe_type(name: str, kind):
    """An argparse type for recipe field `name`: converts, then checks the range the recipe allows."""
    from ..train.recipes import check_value

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        try:
            check_value(name, value)
        except (ValueError, OverflowError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    return convert


def _int(text: str) -> int:
    stripped = text.strip()
    if len(stripped) > 20:
        raise ValueError(text)
    return int(stripped)


_int.__name__ = "int"


def _recipes_epilog() -> str:
    import textwrap
    lines = ["recipes (--recipe NAME; each value can be overridden by its option):"]
    for name, (summary, _) in RECIPES.items():
        lines += textwrap.wrap(summary, 78, initial_indent=f"  {name:<14}", subsequent_indent=" " * 16,
                               break_on_hyphens=False)
    return "\n".join(lines)


def register(sub) -> None:
    from ..cli import ParagraphHelpFormatter, add_spec_arguments
    p = sub.add_parser("train", help="train the network on images, digits or synthetic data",
                       description=DESCRIPTION, epilog=_recipes_epilog(),
                       formatter_class=ParagraphHelpFormatter)
    add_spec_arguments(p, spec_help="the .inc spec file (with --resume DIR: default the run's own copy)")
    p.add_argument("--data", metavar="DIR|digits|synthetic", help="the training data (with --resume: the run's)")
    p.add_argument("--out", metavar="DIR", help="where checkpoints and metrics go (default: runs/NETWORK, "
                   "or the --resume folder)")
    p.add_argument("--classes", type=bounded_int(1, MAX_CLASSES, "a class count"), metavar="N",
                   help="train for N classes: sets the spec's `classes` parameter, or replaces its classifier")
    p.add_argument("--recipe", metavar="NAME", help=f"hyper-parameters: {', '.join(RECIPES)} (default: default)")
    p.add_argument("--resume", nargs="?", const="", metavar="PATH",
                   help="continue from a checkpoint file or run folder (alone: the --out folder's last.pt)")
    p.add_argument("--weights", metavar="FILE|timm:NAME|torchvision:NAME",
                   help="start from these weights (fine-tuning): a state dict or checkpoint file, or a library "
                        "model's pretrained weights (downloaded by timm or torchvision)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip image files that cannot be decoded (counted in each epoch's record) instead of stopping")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when there is one")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision (fp16 needs CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout, faster convolutions on GPUs and for most networks on the CPU "
                        "(default: on, off with --deterministic; benchmarks/layout.py compares)")
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    p.add_argument("--optimize", choices=("none", "train", "infer"),
                   help="graph rewrites for speed, each exact (see `incdsl compile --help`): train fuses sibling "
                        "convolutions; infer also folds batch norm and writes concatenations in place for validation "
                        "(default: none, or the checkpoint's)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only, so a resumed run equals an uninterrupted one")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1, "a seed"),
                   help="random seed (default 0; on --resume, the run's)")
    p.add_argument("--workers", type=bounded_int(0, MAX_WORKERS, "a process count"), metavar="N",
                   help="data loading processes per training process (0: load in the training process)")
    p.add_argument("--threads", type=bounded_int(1, MAX_THREADS, "a thread count"), metavar="N",
                   help="CPU threads per process (default: torch's; 1 is faster on a busy machine)")
    p.add_argument("--stop-after", type=_positive, metavar="EPOCHS",
                   help="stop after this many epochs, as if interrupted (continue with --resume)")
    p.add_argument("--synthetic-size", type=bounded_int(1, MAX_SYNTHETIC, "an image count"), metavar="N",
                   help="training images of --data synthetic (validation: N/4; default 1024)")
    from .compile import memory_size
    p.add_argument("--max-memory", metavar="SIZE", type=memory_size,
                   help="on the CPU: refuse a run whose estimated memory (the network, its optimiser state and "
                        "one batch's activations) is larger, e.g. 8G (default: half this machine's memory)")
    g = p.add_argument_group("recipe overrides", "each replaces one value of the chosen recipe")
    for f in recipe_fields():
        kind, metavar = {"bool": (_bool, "yes|no"), "int": (_int, "N"), "float": (float, "X"),
                         "str": (str, "NAME")}[f.type]  # annotations are strings
        g.add_argument("--" + f.name.replace("_", "-"), dest="recipe_" + f.name, type=_recipe_type(f.name, kind),
                       metavar=metavar, help=f.metadata["help"])
    p.set_defaults(func=run)


def _print_warnings(net) -> None:
    import sys
    from ..diagnostics import render
    for w in net.warnings:
        print(render(w, net.sources), file=sys.stderr)


def _load_network(args):
    """The spec's network, with --set, --input and --classes applied; (network, classes to reset)."""
    from ..cli import UsageError, overrides, spec_text
    from ..ir.network import load
    params = overrides(args)
    net = load(spec_text(args), params=params, input=args.input, include_path=args.include_path,
               max_layers=args.max_layers)
    reset_classes = None
    if args.classes is not None:
        if "classes" in params:
            raise UsageError("give the number of classes once: --classes or --set classes=")
        if "classes" in net.params:
            net = load(spec_text(args), params={**params, "classes": args.classes}, input=args.input,
                       include_path=args.include_path, max_layers=args.max_layers)
        else:
            reset_classes = args.classes
    _print_warnings(net)
    return net, reset_classes


def resume_network(args, state: dict):
    """The network to resume: the checkpoint's spec (or SPEC), parameters, input and classes, with
    the flags given again on top; (network, classes to reset)."""
    from ..cli import UsageError, overrides, spec_text
    from ..ir.network import load
    from ..train.resume import classes_to_reset, load_checkpoint_spec, spec_params
    saved = state["spec"]
    params = overrides(args)
    if args.classes is not None and "classes" in params:
        raise UsageError("give the number of classes once: --classes or --set classes=")
    input = args.input or tuple(saved["input"])
    inherited = {}
    if args.spec is None:
        net = load_checkpoint_spec(saved, params=params, input=input)
    else:
        same = spec_text(args).text == saved["sources"][saved["file"]]
        inherited = spec_params(saved["params"]) if same else {}  # parameter names fit the same text only
        net = load(spec_text(args), params={**inherited, **params}, input=input, include_path=args.include_path)
    classes = args.classes or state["num_classes"]
    if "classes" in net.params and "classes" not in params and net.params["classes"] != classes:
        net = (load_checkpoint_spec(saved, params={**params, "classes": classes}, input=input) if args.spec is None
               else load(spec_text(args), params={**inherited, **params, "classes": classes}, input=input,
                         include_path=args.include_path))
    _print_warnings(net)
    if "classes" in params:  # --set classes=N given again: the network's own count, as asked
        return net, None
    return net, classes_to_reset(net, classes)


def check_dependencies(data: str, command: str = "train") -> None:
    """PyTorch and torchvision importable (and scikit-learn for `--data digits`), or a clean error."""
    from ..cli import MissingExtra
    try:
        import torch  # noqa: F401  (only to word the error when it is missing)
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(f"`incdsl {command}` needs PyTorch and torchvision: {exc}",
                           "pip install 'incdsl[train]'") from None
    if data == "digits":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise MissingExtra("--data digits needs scikit-learn", "pip install scikit-learn") from None


def _resume_target(args) -> str:
    """The folder or file `--resume` names (alone: --out, or runs/NETWORK of the spec)."""
    from ..cli import UsageError, spec_text
    from ..ir.network import load
    if args.resume:
        return args.resume
    if args.out:
        return args.out
    if args.spec:
        return os.path.join("runs", load(spec_text(args), params=None, input=args.input,
                                         include_path=args.include_path).name)
    raise UsageError("--resume needs the run folder: --resume DIR")


def _check_weights_library(source: str | None) -> None:
    """`--weights timm:NAME` or `torchvision:NAME` needs that library: a missing extra (exit 69),
    said before anything is loaded or written."""
    import importlib.util
    from ..cli import MissingExtra
    library, colon, _ = (source or "").partition(":")
    if colon and library in ("timm", "torchvision") and not os.path.exists(source) \
            and importlib.util.find_spec(library) is None:
        raise MissingExtra(f"--weights {source} needs {library}", f"pip install {library}")


def _check_outputs(out: str, net, weights: str | None, resume: str | None) -> None:
    """The files training writes in `out` are none of its inputs (the spec and its includes,
    --weights), whatever they are named; a resumed checkpoint is replaced by design."""
    from ..io import check_not_inputs, same_file
    from ..train import checkpoint as ckpt
    outputs = [os.path.join(out, name) for name in (ckpt.LAST, ckpt.FINAL, "metrics.jsonl", "summary.json")]
    check_not_inputs([p for p in outputs if not (resume and same_file(p, resume))],
                     [*net.sources, *([weights] if weights else [])])


def _same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _check_no_earlier_run(out: str) -> None:
    """A run does not overwrite the checkpoints of another in its --out folder (the default
    `runs/NETWORK` included; a run resumed into another folder too): they would be lost."""
    from ..diagnostics import error
    from ..train import checkpoint as ckpt
    from ..train.loop import resume_command
    found = [name for name in (ckpt.LAST, ckpt.FINAL) if os.path.isfile(os.path.join(out, name))]
    if found:
        raise error(f"{out} already holds a run ({' and '.join(found)}): this one would overwrite it",
                    hint=f"continue it with `{resume_command(out)}`, pass another --out, "
                         f"or delete its {' and '.join(found)} to start over")


def run(args) -> int:
    import sys
    from ..cli import UsageError
    for flag, value in (("--out", args.out), ("--data", args.data)):
        if value is not None and not value.strip():  # an empty shell variable: not the default
            raise UsageError(f"{flag} is empty")
    if args.resume is None and (args.spec is None or args.data is None):
        raise UsageError("give a spec and --data (or --resume DIR to continue a run)")
    if args.resume is not None and args.weights:
        raise UsageError("--weights starts a new run; --resume continues one with its own weights")
    check_dependencies(args.data or "")
    _check_weights_library(args.weights)
    if args.weights:  # a missing file is said before the data are opened and --out is made
        from ..train.pretrained import check_source
        check_source(args.weights)
    from ..io import prepare_output_dir
    from ..train import checkpoint as ckpt
    from ..train.loop import TrainConfig, resume_command, train
    from ..train.resume import data_source

    settings, resume = {}, None
    if args.resume is None:
        net, reset_classes = _load_network(args)
        out = args.out or os.path.join("runs", net.name)
    else:
        resume = ckpt.find(_resume_target(args))
        state = ckpt.load(resume)
        settings = state.get("settings") or {}
        net, reset_classes = resume_network(args, state)
        out = args.out or os.path.dirname(resume) or "."
        args.data = data_source(settings, args.data)
        check_dependencies(args.data)
        del state  # `train` reads the checkpoint again; do not hold two copies
    if args.synthetic_size is not None and args.data != "synthetic":
        print(f"incdsl: warning: --synthetic-size sizes --data synthetic only; ignored for --data {args.data}",
              file=sys.stderr)
    # a bad --out is a one-line error now, not after the first epoch; the folder itself is made
    # once the data has opened, so a bad --data leaves none behind
    prepare_output_dir(out, create=False)
    _check_outputs(out, net, args.weights, resume)
    if resume is None or not _same_folder(out, os.path.dirname(resume) or "."):
        _check_no_earlier_run(out)  # resuming in its own folder replaces its checkpoints by design
    overrides = {f.name: getattr(args, "recipe_" + f.name) for f in recipe_fields()}
    config = TrainConfig(
        data=args.data, out=out, recipe=args.recipe, overrides={k: v for k, v in overrides.items() if v is not None},
        device=args.device, amp=args.amp or settings.get("amp"),
        channels_last=args.channels_last if args.channels_last is not None else settings.get("channels_last"),
        compile=args.compile or bool(settings.get("compile")),
        optimize=args.optimize or settings.get("optimize") or "none",
        deterministic=args.deterministic or bool(settings.get("deterministic")), seed=args.seed,
        workers=args.workers, threads=args.threads, num_classes=reset_classes, resume=resume,
        stop_after=args.stop_after, synthetic_size=args.synthetic_size or settings.get("synthetic_size") or 1024,
        weights=args.weights, skip_bad_images=args.skip_bad_images or bool(settings.get("skip_bad_images")),
        max_memory=args.max_memory)
    from ..train.stop import Terminated, sigterm_stops_training
    try:
        from ..diagnostics import terminal_safe  # the log quotes data folder and image names
        with sigterm_stops_training():
            train(net, config, log=lambda line: print(terminal_safe(line), flush=True))
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        if os.path.isfile(os.path.join(out, ckpt.LAST)):
            print(f"incdsl: {what}; continue with: {resume_command(out, int(os.environ.get('WORLD_SIZE', 1)))}",
                  file=sys.stderr)
        else:
            print(f"incdsl: {what} before the first epoch ended; there is nothing to resume", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130
    return 0

