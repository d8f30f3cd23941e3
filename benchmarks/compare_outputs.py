"""Every output of every shipped spec, saved or compared: a guard for refactors that must not
change what the commands print.

    python3 benchmarks/compare_outputs.py --save DIR      # write the outputs under DIR
    python3 benchmarks/compare_outputs.py --against DIR   # compare with DIR; exit 1 on a difference

For each spec (specs/**/*.inc and examples/*.inc that define a network): `cost --format json`
by layer, block and stage; `draw --format dot` at network and layer level and at block level
for every block the network uses; `compile`; `check` (which scores a search space's points). Commands run in-process through `incdsl.cli.main`
(`compile` prints source only, so torch is not needed). A spec that fails to load keeps its
error message as its output, so a change in the error is a difference too.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from incdsl import cli  # noqa: E402
from incdsl.ir.network import load  # noqa: E402


def specs() -> list[str]:
    """Shipped specs that define a network, relative to the repository root, sorted."""
    found = glob.glob("specs/**/*.inc", root_dir=ROOT, recursive=True) + glob.glob("examples/*.inc", root_dir=ROOT)
    out = []
    for path in sorted(found):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            if any(line.startswith("network ") for line in f):
                out.append(path)
    return out


def run(argv: list[str]) -> str:
    """Standard output and error of one command, with its exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return f"{out.getvalue()}\n--- stderr (exit {code})\n{err.getvalue()}"


def commands(spec: str) -> dict[str, list[str]]:
    """Output name -> command line, for one spec."""
    cmds = {f"cost_{by}.json": ["cost", spec, "--format", "json", "--by", by] for by in ("layer", "block", "stage")}
    for level in ("network", "layer"):
        cmds[f"draw_{level}.dot"] = ["draw", spec, "--format", "dot", "--level", level]
    try:
        blocks = sorted({i["block"] for i in load(spec).graph.graph.get("instances", {}).values()})
    except Exception:  # a spec that does not load: its commands record the error
        blocks = []
    for block in blocks:
        cmds[f"draw_block_{block}.dot"] = ["draw", spec, "--format", "dot", "--block", block]
    cmds["compile.py"] = ["compile", spec]
    cmds["check.txt"] = ["check", spec]
    return cmds


def outputs() -> dict[str, str]:
    """Relative output path -> text, for every spec and command."""
    os.chdir(ROOT)
    result = {}
    for spec in specs():
        stem = spec.replace("/", "__").removesuffix(".inc")
        for name, argv in commands(spec).items():
            result[f"{stem}/{name}"] = run(argv)
    return result


def save(directory: str) -> None:
    texts = outputs()
    for rel, text in texts.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"saved {len(texts)} outputs of {len(specs())} specs under {directory}")


def compare(directory: str) -> int:
    texts = outputs()
    same, differ, missing = 0, [], []
    for rel, text in texts.items():
        path = os.path.join(directory, rel)
        if not os.path.exists(path):
            missing.append(rel)
            continue
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if old == text:
            same += 1
        else:
            differ.append((rel, old, text))
    print(f"{same} identical / {len(differ)} differ / {len(missing)} new (of {len(texts)} outputs)")
    for rel in missing:
        print(f"new: {rel}")
    for rel, old, new in differ:
        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "before/" + rel, "after/" + rel, n=1, lineterm=""))
        print("\n".join(diff[:12]))
    return 1 if differ or missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="DIR")
    group.add_argument("--against", metavar="DIR")
    args = parser.parse_args()
    if args.save:
        save(args.save)
        return 0
    return compare(args.against)


if __name__ == "__main__":
    sys.exit(main())
