"""Helpers several test files share: load a spec and lint its IR, catch a spec's error, and the
two-step training check of the zoo tests."""
import pytest

import incdsl
from incdsl import IncdslError
from incdsl.ir.graph import lint


def load(text: str, **kwargs):
    """`incdsl.load`, with the IR's invariants checked."""
    net = incdsl.load(text, **kwargs)
    lint(net.graph)
    return net


def failure(text: str) -> IncdslError:
    """The error a spec gives."""
    with pytest.raises(IncdslError) as info:
        incdsl.load(text)
    return info.value


def assert_two_steps_learn(model, x, y) -> None:
    """Two SGD steps: finite losses that change, and every parameter gets a gradient (nothing in
    the network is cut off from the loss)."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[0] != losses[1]
