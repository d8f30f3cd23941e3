"""Counting conventions (`incdsl cost --convention`): each counter's number, reproduced from the IR.

The fast tests pin the numbers the tools printed (fvcore 0.1.5, ptflops 0.7.5, thop 0.1.1,
torchinfo 1.8, torch 2.x); the tool tests run each installed tool on the compiled network and
compare to the unit (skipped without the tool; every shipped spec under `-m slow`).
"""
import glob
import os
import subprocess
import sys

import pytest

from incdsl.report.conventions import CONVENTIONS, count_convention, per_node
from counterlib import TOOLS, check_tool, load_with_costs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIX = os.path.join(ROOT, "tests", "data", "conventions", "mix.inc")  # every layer kind, every activation
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "specs", "*.inc")) + glob.glob(os.path.join(ROOT, "specs", "variants", "*.inc")))
# torchvision's families too: standalone BN and ReLU, a linear with ReLU (AlexNet), grouped convs, softmax-free heads
ZOO = [os.path.join(ROOT, "specs", "zoo", f"{n}.inc") for n in ("alexnet", "squeezenet1_0", "densenet", "resnet18",
                                                                   "resnext50_32x4d", "shufflenet_v2",
                                                                   "regnet_y_400mf", "convnext")]

# What each tool printed for the mix spec and for GoogLeNet (batch 1).
PINNED = {
    "mix": {"incdsl": 852_976, "fvcore": 864_496, "ptflops": 923_182, "ptflops-aten": 859_424, "thop": 874_029,
            "torchinfo": 859_104, "flop_counter": 1_705_952},
    "googlenet": {"incdsl": 1_582_671_872, "fvcore": 1_582_671_872, "ptflops": 1_601_439_480,
                  "ptflops-aten": 1_585_899_032, "thop": 1_582_672_896, "torchinfo": 1_585_899_032,
                  "flop_counter": 3_165_343_744},
}


@pytest.mark.parametrize("which,path", [("mix", MIX), ("googlenet", os.path.join(ROOT, "specs", "googlenet.inc"))],
                         ids=["mix", "googlenet"])
def test_pinned_numbers(which, path):
    net, costs = load_with_costs(path)
    assert {name: count_convention(net, costs, name) for name in CONVENTIONS} == PINNED[which]


def test_incdsl_convention_is_the_cost_pass_and_per_node_sums_to_total():
    net, costs = load_with_costs(MIX)
    assert count_convention(net, costs, "incdsl") == costs.total.macs
    for name in CONVENTIONS:
        assert sum(per_node(net, costs, name).values()) == count_convention(net, costs, name)


def test_every_convention_says_what_it_counts():
    for c in CONVENTIONS.values():
        assert c.counts and "\n" not in c.counts and c.tool and c.unit


def test_conventions_do_not_import_torch():
    code = ("import sys, incdsl.report.conventions as c, incdsl; n = incdsl.load(sys.argv[1]); "
            "c.count_convention(n, incdsl.count_costs(n), 'thop'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, MIX], check=True, cwd=ROOT)


# ---- the tools themselves ------------------------------------------------------------------


def test_every_tool_has_a_check():
    assert set(TOOLS) == set(CONVENTIONS) - {"incdsl"}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_agrees_on_every_layer_kind(name):
    check_tool(name, MIX)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED + ZOO, ids=lambda p: os.path.relpath(p, ROOT))
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_agrees_on_shipped_spec(name, path):
    check_tool(name, path)
