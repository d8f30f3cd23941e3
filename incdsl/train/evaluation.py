"""`incdsl eval`: a checkpoint's accuracy on a data set's validation split, with a confusion matrix.

Evaluates the weight average when the checkpoint keeps one (the weights training reported),
or the trained weights themselves (`raw=True`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..diagnostics import error
from ..torch.memory import check_size, eval_bytes, is_out_of_memory, out_of_memory_error
from .data import UnreadableImages, held_bytes, make_loaders, open_data, split_batch
from .epoch import has_top5


@dataclass
class Evaluation:
    """What `evaluate_checkpoint` measured; `confusion[true][predicted]` counts images."""

    network: str
    weights: str          # "averaged" or "trained"
    epoch: int
    data: str             # the data's description
    images: int
    classes: list
    loss: float
    top1: float
    top5: float | None    # None for five classes or fewer
    confusion: list
    skipped_images: int = 0
    column: int | None = None  # the one column every global drop-path join kept (`--column`)

    def as_dict(self) -> dict:
        return asdict(self)


class ColumnError(ValueError):
    """`column` names no column of the network (or it has no global drop-path joins)."""


def build_model(network, state: dict, *, num_classes: int | None, raw: bool = False):
    """The checkpoint's network with its weights (the average unless `raw`), in eval mode."""
    from ..torch.build import to_torch
    model = to_torch(network, num_classes=num_classes, seed=0)
    use_average = state["ema"] is not None and not raw
    weights = state["ema"]["module"] if use_average else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        from .checkpoint import spec_note, weights_mismatch
        notes = spec_note(state, network) + (weights_mismatch(model, weights)
                                             or [str(exc).strip().splitlines()[0][:300]])
        raise error("the checkpoint does not fit this network", notes=notes,
                    hint="leave out SPEC, --set and --input to evaluate the checkpoint's own network") from None
    return model.eval(), ("averaged" if use_average else "trained")


@torch.no_grad()
def confusion_matrix(model, loader, classes: int, device, *, skip_bad_images: bool = False,
                     layout=torch.contiguous_format):
    """(confusion [true, predicted] counts, summed loss, top-5 hits, skipped files) over `loader`."""
    confusion = torch.zeros((classes, classes), dtype=torch.int64)
    loss, top5, skipped = 0.0, 0, 0
    for batch in loader:
        images, labels, bad = split_batch(batch)
        if bad and not skip_bad_images:
            raise UnreadableImages([(u.path, u.reason) for u in bad])
        skipped += len(bad)
        if images is None:
            continue
        logits = model(images.to(device, memory_format=layout)).float().cpu()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        top5 += (logits.topk(min(5, classes), dim=1).indices == labels[:, None]).any(dim=1).sum().item()
        confusion += torch.bincount(labels * classes + logits.argmax(dim=1), minlength=classes * classes).view(
            classes, classes)
    return confusion, loss, top5, skipped


def evaluate_checkpoint(network, state: dict, source: str, *, num_classes: int | None = None, batch_size: int = 64,
                        device: str = "cpu", workers: int | None = None, raw: bool = False,
                        skip_bad_images: bool = False, column: int | None = None,
                        max_bytes: int | None = None) -> Evaluation:
    """Evaluate checkpoint `state` (from `checkpoint.load`) of `network` on `source`'s validation split;
    with `column`, that column alone in every `mean(global_path = ...)` join (`IncdslNet.keep_column`).

    Raises IncdslError for data that does not fit the network or an unreadable image, ColumnError
    for a column the network does not have.
    """
    settings = state.get("settings") or {}
    if device == "cpu":  # refused before anything is allocated; CUDA says so itself when it runs out
        check_size(network, eval_bytes(network, batch_size, num_classes) + held_bytes(source, network.input_shape),
                   max_bytes, what="evaluating",
                   override="--max-memory {gib}G, or pass a smaller --batch-size")
    model, which = build_model(network, state, num_classes=num_classes, raw=raw)
    if column is not None:
        try:
            model.keep_column(column)
        except ValueError as exc:
            raise ColumnError(str(exc)) from None
    data = open_data(source, network.input_shape, num_classes=model.num_classes, seed=state["seed"],
                     synthetic_size=settings.get("synthetic_size") or 1024, workers=workers)
    if len(data.classes) != model.num_classes:
        trained_on = settings.get("data")
        raise error(f"the network gives {model.num_classes} outputs, but the data has {len(data.classes)} classes",
                    notes=[f"data: {data.description}"],
                    hint=f"evaluate on data of the checkpoint's {model.num_classes} classes"
                         + (f" (it was trained on {trained_on}: leave out --data)" if trained_on else ""))
    _, _, val = make_loaders(data, batch_size, workers=workers)
    # the layout the run was trained and validated in: its val_top1 comes out again to the last image
    layout = torch.channels_last if settings.get("channels_last") else torch.contiguous_format
    model.to(device, memory_format=layout)
    try:
        confusion, loss, top5, skipped = confusion_matrix(model, val, len(data.classes), device,
                                                          skip_bad_images=skip_bad_images, layout=layout)
    except UnreadableImages as exc:
        path, reason = exc.bad[0]
        raise error(f"cannot read image {path}: {reason}",
                    hint="replace or delete the file, or pass --skip-bad-images to skip unreadable files") from None
    except (RuntimeError, MemoryError) as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, f"evaluating `{network.name}`", batch_size) from None
        raise
    n = int(confusion.sum())
    top1 = int(confusion.diagonal().sum())
    return Evaluation(network.name, which, int(state["epoch"]), data.description, n, list(data.classes),
                      loss / max(n, 1), top1 / max(n, 1), top5 / max(n, 1) if has_top5(len(data.classes)) else None,
                      confusion.tolist(), skipped, column)
