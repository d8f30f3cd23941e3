"""A linear classifier with what the training loop reads of a module, and a gradient hook that
injects infs: the fp16 and non-finite tests drive `train_epoch` with them, no data set needed."""
from __future__ import annotations

import torch

CLASSES, FEATURES, BATCH = 3, 6, 4


class Tiny(torch.nn.Module):
    """A classifier with what the training loop reads of a module: `num_classes`."""

    num_classes = CLASSES

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(FEATURES, CLASSES)

    def forward(self, x):
        return self.fc(x.flatten(1))


class InfOn:
    """A gradient hook that makes the gradient inf on the given backward passes (1-based)."""

    def __init__(self, *passes: int):
        self.passes, self.calls = set(passes), 0

    def __call__(self, grad):
        self.calls += 1
        return grad * float("inf") if self.calls in self.passes else grad
