"""The cost counters incdsl's `--convention`s mirror (fvcore, ptflops and its aten backend, thop,
torchinfo, torch's flop counter), run on a compiled spec: shared by the test modules that check a
convention against the tool itself."""
from __future__ import annotations

import pytest

import incdsl
from incdsl.report.conventions import count_convention
from speclib import quiet


def load_with_costs(path):
    net = incdsl.load(path)
    return net, incdsl.count_costs(net)


def _fvcore(model, x):
    from fvcore.nn import FlopCountAnalysis
    fa = FlopCountAnalysis(model, x)
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    return fa.total()


def _ptflops(backend):
    def run(model, x):
        from ptflops import get_model_complexity_info
        macs, _ = get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False,
                                            print_per_layer_stat=False, backend=backend)
        return macs
    return run


def _thop(model, x):
    import thop
    return thop.profile(model, inputs=(x,), verbose=False)[0]


def _torchinfo(model, x):
    import torchinfo
    return torchinfo.summary(model, input_size=tuple(x.shape), verbose=0).total_mult_adds


def _flop_counter(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


TOOLS = {"fvcore": ("fvcore", _fvcore), "ptflops": ("ptflops", _ptflops("pytorch")),
         "ptflops-aten": ("ptflops", _ptflops("aten")), "thop": ("thop", _thop),
         "torchinfo": ("torchinfo", _torchinfo), "flop_counter": ("torch", _flop_counter)}


def check_tool(name, path):
    package, run = TOOLS[name]
    pytest.importorskip(package)
    torch = pytest.importorskip("torch")
    net, costs = load_with_costs(path)
    model = incdsl.to_torch(net, seed=0).eval()
    with quiet(), torch.no_grad():
        printed = run(model, torch.zeros(1, *net.input_shape))
    assert int(printed) == printed and int(printed) == count_convention(net, costs, name)
