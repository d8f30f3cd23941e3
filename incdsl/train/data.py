"""Training data: an ImageFolder tree, scikit-learn's digits, or synthetic images.

Every source gives images of the spec's input shape (c, h, w), scaled to [-1, 1] as the
Inception papers' preprocessing does, and integer labels:

- a folder ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg``: the papers'
  augmentation for training (a random crop of 8% to 100% of the area with aspect ratio
  3/4 to 4/3, resized to h x w, and a random horizontal flip), a centre crop for
  evaluation (resize to h / 0.875, crop h x w);
- ``digits``: the 1,797 8x8 handwritten digits bundled with scikit-learn (no download),
  upscaled to h x w, split 80/20 by class with a fixed seed; training shifts them by up to
  h/8 pixels;
- ``synthetic``: class-dependent random patterns plus noise, generated on the fly, for
  speed runs.

Sampling: `make_loaders` shards the training set across processes with a
`DistributedSampler` (also for one process, so one code path shuffles), reshuffled from
(seed, epoch) alone, so a resumed run sees the same order; validation is split without
padding so every image is counted once.
"""
from __future__ import annotations

import functools
import os
import random
import signal
import stat
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ..diagnostics import did_you_mean, error

EVAL_CROP = 0.875  # the Inception papers' central crop: 87.5% of the resized image
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Data:
    """Training and validation sets plus what the run reports about them."""

    train: Dataset
    val: Dataset
    classes: list
    description: str
    workers: int  # suggested loader processes: 0 for data already in memory
    files: bool = False  # images are decoded from files (which may be unreadable)
    notes: list = field(default_factory=list)  # said once when the run starts (e.g. colour conversion)
    collate: object = None  # the loaders' collate_fn, where the default (or `collate` for files) is not it


def open_data(source: str, shape: tuple, *, num_classes: int | None = None, seed: int = 0,
              synthetic_size: int = 1024, workers: int | None = None) -> Data:
    """The data named by `--data`: "digits", "synthetic" or an ImageFolder directory.

    `shape` is the network's (c, h, w) input; `num_classes` sizes the synthetic set.
    Raises IncdslError for a missing folder, no images, or train/val class mismatch.
    """
    if source == "synthetic":
        return _synthetic(shape, num_classes or 10, synthetic_size, seed)
    if shape[0] not in (1, 3):
        raise error(f"the network takes {shape[0]}-channel input, but images have 1 or 3 channels",
                    hint="pass --input 3xHxW (or 1xHxW) to train it on images")
    if source == "digits":
        return _digits(shape, seed)
    return _image_folder(source, shape, workers)


# digits ---------------------------------------------------------------------------------

class ShiftedImages(Dataset):
    """In-memory images, each shifted by a random offset of up to `shift` pixels.

    Draws from torch's global generator (loaders for in-memory data run no worker
    processes), which checkpoints save and restore.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int, fill: float = -1.0):
        self.images, self.labels, self.shift, self.fill = images, labels, shift, fill

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        image, s = self.images[i], self.shift
        if s:
            dy, dx = torch.randint(0, 2 * s + 1, (2,)).tolist()
            padded = F.pad(image, (s, s, s, s), value=self.fill)
            image = padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]
        return image, self.labels[i]


DIGITS_IMAGES = 1797  # scikit-learn's digits


def held_bytes(source: str, shape: tuple) -> int:
    """Bytes the data set `source` holds in memory at the network's input size: the digits are
    upscaled once, all of them (the images, then the train and val copies); folders and synthetic
    images are made one at a time."""
    if source != "digits":
        return 0
    c, h, w = shape
    return 2 * DIGITS_IMAGES * c * h * w * 4


def _digits(shape: tuple, seed: int) -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    c, h, w = shape
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..16 -> 0..1
    images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False).clamp_(0, 1)
    images = (images * 2 - 1).expand(-1, c, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=seed,
                                          stratify=digits.target)
    train_idx, val_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
    train = ShiftedImages(images[train_idx], labels[train_idx], shift=max(h, w) // 8)
    val = TensorDataset(images[val_idx], labels[val_idx])
    notes = ["the digits are grayscale: each is copied to the network's 3 input channels"] if c == 3 else []
    return Data(train, val, [str(d) for d in range(10)],
                f"digits: {len(train)} training and {len(val)} validation images, 10 classes, {c}x{h}x{w}", 0,
                notes=notes)


# synthetic ------------------------------------------------------------------------------

class SyntheticImages(Dataset):
    """`size` images: a coarse random pattern per class plus one of a few noise images.

    Item i has label i % classes; images are made on demand, so any input size fits. A loader
    fetches a whole batch at once (`__getitems__`): each class's pattern is drawn once, and
    each image is written straight into its row of the batch, with no stacking afterwards
    (1.1-1.2x the images per second of item by item: benchmarks/synthetic_data.py).
    """

    NOISE_POOL = 4

    def __init__(self, size: int, shape: tuple, classes: int, seed: int):
        self.size, self.shape, self.classes, self.seed = size, shape, classes, seed
        g = torch.Generator().manual_seed(seed)
        self.noise = 0.3 * torch.randn((self.NOISE_POOL, *shape), generator=g)
        self.patterns = {}  # label -> its (1, c, 4, 4) pattern, drawn from (seed, label) alone

    def __len__(self) -> int:
        return self.size

    def pattern(self, label: int):
        if label not in self.patterns:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + label)
            self.patterns[label] = torch.randn((1, self.shape[0], 4, 4), generator=g)
        return self.patterns[label]

    def __getitem__(self, i):
        images, labels = self.__getitems__([i])
        return images[0], int(labels[0])

    def __getitems__(self, indices):
        """(images, labels) of a batch of indices, already collated (see `collate_batch`)."""
        labels = [int(i) % self.classes for i in indices]
        images = torch.empty((len(indices), *self.shape))
        for row, (i, label) in enumerate(zip(indices, labels)):  # image by image: each stays in cache
            up = F.interpolate(self.pattern(label), size=self.shape[1:], mode="nearest")[0]
            torch.add(up, self.noise[int(i) % self.NOISE_POOL], out=images[row]).clamp_(-1, 1)
        return images, torch.tensor(labels)


def collate_batch(batch):
    """The collate of a dataset whose `__getitems__` returns the batch itself."""
    return batch


def _synthetic(shape: tuple, classes: int, size: int, seed: int) -> Data:
    train = SyntheticImages(size, shape, classes, seed)
    val = SyntheticImages(max(size // 4, 1), shape, classes, seed)
    c, h, w = shape
    return Data(train, val, [str(k) for k in range(classes)],
                f"synthetic: {len(train)} training and {len(val)} validation images, {classes} classes, "
                f"{c}x{h}x{w}", 0, collate=collate_batch)


# image folders --------------------------------------------------------------------------

class UnreadableImages(Exception):
    """Images that could not be decoded: [(path, reason), ...] (raised in the main process)."""

    def __init__(self, bad: list):
        super().__init__(f"{len(bad)} unreadable image(s), the first {bad[0][0]}: {bad[0][1]}")
        self.bad = bad


class Unreadable:
    """What `ImageFiles` yields for a file PIL cannot decode: its path and why (picklable)."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason


def _open_regular(path: str):
    """`path` opened for reading, if it is a regular file (after links): a FIFO in a data folder
    would block the loader forever, a link to /dev/zero would never end.

    Raises:
        OSError: it cannot be opened, or is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens without a writer
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file (a FIFO, a device or a socket)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load_image(path: str, mode: str):
    from PIL import Image
    with _open_regular(path) as f:
        return Image.open(f).convert(mode)  # convert() decodes the whole file: truncation shows here


def _reason(exc: Exception) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ImageFiles(Dataset):
    """An ImageFolder whose items are `Unreadable` for files that do not decode.

    PIL raises many kinds for a damaged file (OSError for truncation, SyntaxError or
    ValueError from some decoders, DecompressionBombError), so any exception while decoding
    marks the file; `collate` then drops it from the batch and the main process decides
    whether that is an error (`UnreadableImages`) or a skip. A module-level wrapper (not a
    subclass made on demand) so worker processes can unpickle it.
    """

    def __init__(self, folder):
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index):
        path, target = self.folder.samples[index]
        try:
            image = self.folder.loader(path)
        except Exception as exc:  # see the docstring: the decoders' exceptions are not one kind
            return Unreadable(path, _reason(exc)), target
        return self.folder.transform(image), target


def collate(batch):
    """Like the default collate, but (images, labels, [Unreadable, ...]): unreadable files are dropped."""
    from torch.utils.data import default_collate
    good = [item for item in batch if not isinstance(item[0], Unreadable)]
    bad = [item[0] for item in batch if isinstance(item[0], Unreadable)]
    if not good:
        return None, None, bad
    images, labels = default_collate(good)
    return images, labels, bad


def split_batch(batch):
    """(images, labels, unreadable files) of any loader's batch (only image folders have the third)."""
    return batch if len(batch) == 3 else (batch[0], batch[1], [])


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def _has_image(folder: str) -> bool:
    return any(_is_image(name) for _, _, names in os.walk(folder) for name in names)


def _class_dirs(split_dir: str) -> list:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _check_folder(root: str) -> list:
    """The class names, after checking the train/val layout; raises IncdslError."""
    layout = "expected DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg"
    if os.path.exists(root) and not os.path.isdir(root):
        raise error(f"--data {root} is a file, not a folder", notes=[layout])
    if not os.path.isdir(root):
        raise error(f"no such data folder: {root}",
                    hint=did_you_mean(root, ("digits", "synthetic"))
                    or "pass an ImageFolder directory, `digits` or `synthetic` to --data")
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise error(f"data folder {root} has no `{split}` folder", notes=[layout], hint=_split_hint(root))
    train, val = _class_dirs(os.path.join(root, "train")), _class_dirs(os.path.join(root, "val"))
    if not train:
        raise error(f"{os.path.join(root, 'train')} has no class folders", notes=[layout])
    if train != val:
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        notes = [f"only in {split}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                 for split, names in (("train", only_train), ("val", only_val)) if names]
        raise error(f"the train and val folders of {root} hold different classes "
                    f"({len(train)} and {len(val)} class folders)", notes=notes,
                    hint="both need the same <class> folder names")
    return train


def _check_links(class_dir: str) -> None:
    """Raise IncdslError where symbolic links reach a directory of a class folder twice:
    torchvision's walk follows links, so a loop never ends, and links that fork at every level
    make it exponential."""
    seen = {}
    for folder, _, _ in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise error(f"{folder} is {seen[real]} again, through symbolic links",
                        hint="remove the link that loops back or repeats a folder")
        seen[real] = folder


def _split_hint(root: str) -> str | None:
    """`--data DIR/train` (or val) for `--data DIR`: say so."""
    parent = os.path.dirname(os.path.abspath(root))
    if os.path.basename(os.path.normpath(root)) in ("train", "val") and \
            all(os.path.isdir(os.path.join(parent, split)) for split in ("train", "val")):
        return f"pass the folder that holds `train` and `val`: --data {os.path.dirname(os.path.normpath(root)) or '.'}"
    return None


def _image_folder(root: str, shape: tuple, workers: int | None) -> Data:
    from torchvision import datasets, transforms

    classes = _check_folder(root)
    c, h, w = shape
    normalise = transforms.Normalize([0.5] * c, [0.5] * c)  # [0, 1] -> [-1, 1]
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop((h, w), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), normalise])
    val_tf = transforms.Compose([
        transforms.Resize((round(h / EVAL_CROP), round(w / EVAL_CROP))),
        transforms.CenterCrop((h, w)),
        transforms.ToTensor(), normalise])
    loader = functools.partial(_load_image, mode="L" if c == 1 else "RGB")
    splits = {}
    for split, tf in (("train", train_tf), ("val", val_tf)):
        path = os.path.join(root, split)
        for name in classes:
            _check_links(os.path.join(path, name))
        try:
            splits[split] = ImageFiles(datasets.ImageFolder(path, transform=tf, loader=loader,
                                                            is_valid_file=_is_image))
        except FileNotFoundError:  # ImageFolder found a class without images; say which
            empty = [name for name in classes if not _has_image(os.path.join(path, name))]
            raise error(f"{path} holds a class folder with no images: {', '.join(empty[:5]) or '?'}"
                        f"{' ...' if len(empty) > 5 else ''}",
                        notes=[f"image files end in {', '.join(IMAGE_SUFFIXES)}"]) from None
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    notes = [note] if (note := _depth_note([path for path, _ in splits["train"].folder.samples[:8]], c)) else []
    return Data(splits["train"], splits["val"], classes,
                f"{root}: {len(splits['train'])} training and {len(splits['val'])} validation images, "
                f"{len(classes)} classes, {c}x{h}x{w}", workers, files=True, notes=notes)


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _depth_note(paths: list, channels: int) -> str | None:
    """A note when the images' colour depth differs from the network's input (judged by the first
    of `paths` whose header reads: unreadable ones are reported when they are loaded)."""
    from PIL import Image
    for path in paths:
        try:
            with _open_regular(path) as f, Image.open(f) as image:  # reads the header only
                mode = image.mode
            break
        except Exception:  # noqa: BLE001  (PIL's exceptions are not one kind)
            continue
    else:
        return None
    gray = mode in GRAY_MODES
    if channels == 1 and not gray:
        return (f"the images are in colour ({mode}, e.g. {path}); they are converted to grayscale "
                "for the network's 1-channel input (--input 3xHxW keeps the colour)")
    if channels == 3 and gray:
        return (f"the images are grayscale ({mode}, e.g. {path}); each is copied to the network's "
                "3 input channels (--input 1xHxW takes one)")
    return None


# loaders --------------------------------------------------------------------------------

class ShardSampler(Sampler):
    """Every `world`-th index from `rank`: each item on exactly one process, no padding."""

    def __init__(self, size: int, rank: int, world: int):
        self.indices = list(range(rank, size, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; give numpy and random the same
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # A scheduler's SIGTERM reaches the whole process group: the training process ends (saying how
    # to resume) and shuts its workers down itself; killed under it, they were reported as failures.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loaders(data: Data, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0,
                 workers: int | None = None, pin_memory: bool = False):
    """(train loader, its sampler, validation loader). Call `reseed(loader, sampler, seed, epoch)`
    before each epoch."""
    if workers is None:  # the data's suggestion, shared among the processes of this machine
        workers = min(data.workers, max(1, (os.cpu_count() or 1) // world)) if data.workers else 0
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=order_seed(seed))
    common = dict(num_workers=workers, pin_memory=pin_memory, worker_init_fn=_seed_worker if workers else None,
                  collate_fn=collate if data.files else data.collate)
    train = DataLoader(data.train, batch_size=batch_size, sampler=sampler, drop_last=True,
                       generator=torch.Generator(), **common)
    val = DataLoader(data.val, batch_size=batch_size, sampler=ShardSampler(len(data.val), rank, world),
                     **common)
    return train, sampler, val


ORDER_STRIDE = 1_000_003  # a prime far above any epoch count


def order_seed(seed: int) -> int:
    """The sampler's seed for run seed `seed`. The sampler draws epoch e's order from its seed + e,
    so with the run's seed itself seeds s and s + 1 saw the same orders one epoch apart, which
    correlates the runs of a seed study; spread by `ORDER_STRIDE`, two seeds share no order
    within a million epochs."""
    return seed * ORDER_STRIDE


def reseed(loader: DataLoader, sampler: DistributedSampler, seed: int, epoch: int) -> None:
    """Make epoch `epoch`'s order and worker seeds depend on (seed, epoch) only."""
    sampler.set_epoch(epoch)
    loader.generator.manual_seed(seed * 100_003 + epoch)
