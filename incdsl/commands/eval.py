"""`incdsl eval [SPEC] --checkpoint PATH [--data DATA]`: top-1, top-5 and a confusion matrix
of a trained checkpoint on a data set's validation split (imports torch only when run)."""
from __future__ import annotations

import json

DESCRIPTION = """\
Evaluate a checkpoint written by `incdsl train` on the validation split of --data (default:
the data it was trained on): loss, top-1, top-5 (more than five classes only) and a
confusion matrix (rows: true class, columns: predicted). The network is the checkpoint's
own (spec text, parameters, input size, classes) unless SPEC is given. The weight average
is evaluated when the checkpoint keeps one, as training reported it; --raw takes the
trained weights. --column J evaluates one column alone in every `mean(global_path = ...)` join
(FractalNet's single-column subnetworks; 0 is the deepest)."""

MAX_MATRIX_CLASSES = 20  # wider matrices are listed as their largest confusions in text


def register(sub) -> None:
    from ..cli import ParagraphHelpFormatter, add_spec_arguments
    from .train import bounded_int
    p = sub.add_parser("eval", help="accuracy and confusion matrix of a trained checkpoint",
                       description=DESCRIPTION, formatter_class=ParagraphHelpFormatter)
    add_spec_arguments(p, spec_help="the .inc spec file (default: the checkpoint's own copy)")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a checkpoint file, or a run folder (its final.pt, else last.pt)")
    p.add_argument("--data", metavar="DIR|digits|synthetic", help="the data (default: the run's)")
    p.add_argument("--batch-size", type=bounded_int(1, 1 << 20, "a batch size"), default=64, metavar="N",
                   help="images per step (default 64)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when there is one")
    p.add_argument("--workers", type=bounded_int(0, 1024, "a process count"), metavar="N",
                   help="data loading processes (0: load in this process)")
    p.add_argument("--threads", type=bounded_int(1, 1024, "a thread count"), metavar="N", help="CPU threads")
    p.add_argument("--raw", action="store_true", help="evaluate the trained weights, not their average")
    p.add_argument("--column", type=bounded_int(0, 1 << 20, "a column number"), metavar="J",
                   help="column J alone in every `mean(global_path = ...)` join (FractalNet; 0: the deepest)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip image files that cannot be decoded")
    from .compile import memory_size
    p.add_argument("--max-memory", metavar="SIZE", type=memory_size,
                   help="on the CPU: refuse an evaluation whose estimated memory is larger, e.g. 8G "
                        "(default: half this machine's memory)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default), or json with the whole confusion matrix")
    p.set_defaults(func=run)


def _checkpoint_file(path: str) -> str:
    import os
    from ..train import checkpoint as ckpt
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, ckpt.FINAL)):
        return os.path.join(path, ckpt.FINAL)
    return ckpt.find(path, "--checkpoint")


def run(args) -> int:
    from ..cli import UsageError
    from .train import check_dependencies
    for flag, value in (("--checkpoint", args.checkpoint), ("--data", args.data)):
        if value is not None and not value.strip():  # an empty shell variable: not the default
            raise UsageError(f"{flag} is empty")
    check_dependencies(args.data or "", "eval")
    import torch
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _evaluate(args, torch)
    finally:  # as `train` does: a caller of `main` in the same process keeps its thread count
        torch.set_num_threads(threads)


def _evaluate(args, torch) -> int:
    from .train import check_dependencies, resume_network
    from ..diagnostics import error
    from ..train import checkpoint as ckpt
    from ..train.evaluation import ColumnError, evaluate_checkpoint
    from ..train.resume import data_source
    path = _checkpoint_file(args.checkpoint)
    state = ckpt.load(path)
    args.classes = None  # the checkpoint's class count
    network, reset_classes = resume_network(args, state)
    source = data_source(state.get("settings"), args.data)
    check_dependencies(source, "eval")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise error("--device cuda was asked for, but PyTorch finds no CUDA device", hint="use --device cpu")
    from ..cli import UsageError
    try:
        result = evaluate_checkpoint(network, state, source, num_classes=reset_classes, batch_size=args.batch_size,
                                     device=device, workers=args.workers, raw=args.raw,
                                     skip_bad_images=args.skip_bad_images, column=args.column,
                                     max_bytes=args.max_memory)
    except ColumnError as exc:
        raise UsageError(f"--column: {exc}") from None
    if args.format == "json":
        print(json.dumps({"checkpoint": path, **result.as_dict()}, indent=2))
    else:
        print(render_text(result, path))
    return 0


def render_text(r, path: str) -> str:
    """The evaluation as text: a header, the accuracies, and the confusion matrix (or, for many
    classes, its largest off-diagonal entries)."""
    from ..diagnostics import terminal_safe
    alone = f", column {r.column} alone" if r.column is not None else ""
    lines = [terminal_safe(f"{r.network}: {path} (epoch {r.epoch}, {r.weights} weights{alone}) on {r.data}", newlines=False),
             f"{r.images} images  loss {r.loss:.4f}  top-1 {100 * r.top1:.2f}%"
             + (f"  top-5 {100 * r.top5:.2f}%" if r.top5 is not None else "")]
    if r.skipped_images:
        lines.append(f"skipped {r.skipped_images} unreadable image(s)")
    if len(r.classes) <= MAX_MATRIX_CLASSES:
        lines += ["", "confusion matrix (rows: true class, columns: predicted; last column: recall)"]
        lines += confusion_table(r.classes, r.confusion)
    else:
        lines += ["", "most frequent confusions (true -> predicted: images); --format json has the whole matrix"]
        lines += top_confusions(r.classes, r.confusion)
    return "\n".join(lines)


def _class_names(classes: list) -> list:
    """Class names as they print: a data folder's names may hold any character."""
    from ..diagnostics import terminal_safe
    return [terminal_safe(str(c), newlines=False) for c in classes]


def confusion_table(classes: list, matrix: list) -> list:
    names = _class_names(classes)
    width = max([len(n) for n in names] + [len(str(v)) for row in matrix for v in row] + [1])
    label = max(len(n) for n in names)
    out = [" " * label + "  " + " ".join(n[:width].rjust(width) for n in names) + "  recall"]
    for i, (name, row) in enumerate(zip(names, matrix)):
        total = sum(row)
        recall = f"{100 * row[i] / total:6.1f}%" if total else "      -"
        out.append(name.ljust(label) + "  " + " ".join(str(v).rjust(width) for v in row) + "  " + recall)
    return out


def top_confusions(classes: list, matrix: list, count: int = 10) -> list:
    pairs = sorted(((v, i, j) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v),
                   key=lambda t: (-t[0], t[1], t[2]))[:count]
    names = _class_names(classes)
    return [f"  {names[i]} -> {names[j]}: {v}" for v, i, j in pairs] or ["  none"]
