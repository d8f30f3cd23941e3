"""`--data synthetic` loader speed: images per second made one item at a time (what a
DataLoader does with a dataset that only has `__getitem__`) and a batch at a time (what it does
with `SyntheticImages.__getitems__`), side by side, in one process and without workers (as
`incdsl train --data synthetic` loads).

    python3 benchmarks/synthetic_data.py                      # Inception's 3x299x299, batch 256
    python3 benchmarks/synthetic_data.py --shape 3x224x224 --batch 128 --threads 16

A GPU speed run trains Inception-v4 at about 1,800 img/s on an H200 (benchmarks/runtime.py):
the loader must make images faster than that, or `incdsl train` times the data, not the model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from incdsl.train.data import collate_batch, open_data  # noqa: E402


class OneAtATime(Dataset):
    """The same images, fetched item by item and stacked by the default collate."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def rate(loader, images: int) -> float:
    """Images per second over the first `images` images (after one warm-up batch)."""
    it = iter(loader)
    next(it)
    done, start = 0, time.perf_counter()
    for x, _ in it:
        done += x.shape[0]
        if done >= images:
            break
    return done / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="3x299x299", help="CxHxW (default 3x299x299)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--images", type=int, default=1024, help="images timed per way (default 1024)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    data = open_data("synthetic", shape, num_classes=args.classes, seed=0,
                     synthetic_size=args.images + 2 * args.batch)
    per_item = rate(DataLoader(OneAtATime(data.train), batch_size=args.batch), args.images)
    batched = rate(DataLoader(data.train, batch_size=args.batch, collate_fn=collate_batch), args.images)
    print(f"synthetic {args.shape}, batch {args.batch}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"{'fetch':<14}{'img/s':>10}")
    print(f"{'one at a time':<14}{per_item:>10,.0f}")
    print(f"{'by batch':<14}{batched:>10,.0f}")
    print(f"speedup {batched / per_item:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
