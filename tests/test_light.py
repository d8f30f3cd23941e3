"""`check`, `cost` and `draw` stay light: they never import torch, even indirectly."""
import subprocess
import sys

import pytest

SPEC = "network t:\n    input 3x32x32\n    conv 3x3 8 S -> gap -> flatten -> linear 10\n"

PROBE = """
import sys
from incdsl.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision", "timm", "numpy") if m in sys.modules)
print("HEAVY", *heavy)
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["check"], ["cost", "--format", "json"], ["cost", "--by", "layer"],
                                  ["draw", "--format", "dot", "-o", "{tmp}/t.dot"]])
def test_light_commands_do_not_import_torch(tmp_path, argv):
    spec = tmp_path / "t.inc"
    spec.write_text(SPEC)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-c", PROBE, argv[0], str(spec), *argv[1:]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    heavy = next(l for l in proc.stdout.splitlines() if l.startswith("HEAVY")).split()[1:]
    assert "torch" not in heavy and "torchvision" not in heavy and "timm" not in heavy
