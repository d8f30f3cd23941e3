"""The package's layering: data flows one way, and no module reaches into another's privates.

Every module under incdsl/ is read with `ast` (nothing is imported): a module below the
command line (anything but `cli.py`, `__main__.py` and `commands/`) must not import the
command line, the commands or the package root, and no module imports a name that starts
with `_` from another module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "incdsl"
TOP = {"cli", "__main__", "commands"}  # the command-line layer


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, names) of every `import` and `from ... import` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
SUBMODULES = {module_name(p) for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path):
    name = module_name(path)
    if name.split(".")[1:2] and name.split(".")[1] in TOP or name == "incdsl":
        return
    for line, target, names in imports(path):
        assert target.split(".")[:2] not in (["incdsl", "cli"], ["incdsl", "commands"]), \
            f"{path.name}:{line} imports the command line ({target})"
        if target == "incdsl":  # the package root: only its submodules, never its own names
            assert all(f"incdsl.{n}" in SUBMODULES for n in names), f"{path.name}:{line} imports the package root"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_imported_from_another_module(path):
    for line, target, names in imports(path):
        if target.startswith("incdsl"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.name}:{line} imports {private} from {target}"


def test_the_pipeline_has_its_packages():
    for package in ("lang", "ir", "ops", "passes", "report", "render", "torch", "search", "train", "io", "commands"):
        assert (PACKAGE / package / "__init__.py").is_file(), package
