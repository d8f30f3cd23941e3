"""Helpers several test files share: load a spec and lint its IR, catch a spec's error, the
two-step training check of the zoo tests, and the comparison with a reference written by hand."""
import contextlib
import io
import warnings

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


def same_outputs(net, reference, size: int = 32, *, rtol: float = 1e-4, atol: float = 1e-5,
                 count: bool = False, by_flow: bool = False) -> None:
    """Load the reference's weights (batch norms randomised first) into our compiled `net` and
    compare outputs in eval mode. Layers pair in registration order, or with `by_flow` by data
    flow (a reference that registers its layers in another order); `count`: the reference also
    has the spec's parameter count."""
    torch = pytest.importorskip("torch")
    from modellib import randomise_norms

    torch.manual_seed(0)
    reference = randomise_norms(reference).eval()
    if count:
        assert sum(p.numel() for p in reference.parameters()) == incdsl.count_costs(net).total.params
    ours = incdsl.to_torch(net, seed=1).eval()
    report = incdsl.load_weights(ours, reference if by_flow else reference.state_dict())
    assert len(report) == len(reference.state_dict())
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = ours(x), reference(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


# FractalNet's expansion rule as a recursive block, deepest column first (specs/zoo/cifar/fractalnet20.inc
# without its dropout), for the test specs that build small fractal networks
# the fractal rule with a residual sum as its join: one recursive block whose expansion size the
# estimate knows exactly, (2^c - 1) + (2^(c-1) - 1) layers
ADD_FRACTAL_BLOCK = """\
block fractal(c, f):
    if c == 1: conv 3x3 f pad = 1
    else:
        add:
            branch: conv 3x3 f pad = 1
            branch: fractal(c - 1, f) -> fractal(c - 1, f)
"""

FRACTAL_BLOCK = """\
block fractal(c, filters):
    if c == 1:
        conv 3x3 filters
    else:
        mean(flat = yes):
            branch: fractal(c - 1, filters) -> fractal(c - 1, filters)
            branch: fractal(1, filters)
"""


def quiet() -> contextlib.ExitStack:
    """A context that swallows what third-party counters print and warn."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def one_layer(layer: str, shape: str = "6x3x3") -> str:
    """A network of one statement (`layer`, which may chain with `->`) on a `shape` input."""
    return f"network t:\n    input {shape}\n    {layer}\n"


def run_cli(capsys, *argv):
    """`incdsl ARGV` in this process: (exit code, stdout, stderr); argparse's exits give their code."""
    from incdsl.cli import main
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
