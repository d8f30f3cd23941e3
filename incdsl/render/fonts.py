"""Is a font installed? Graphviz substitutes a missing font silently; `draw` warns instead."""
from __future__ import annotations

import shutil
import subprocess


def installed_families(timeout: float = 10) -> set[str] | None:
    """Font family names fontconfig knows, lowercased; None where `fc-list` is missing or fails."""
    if shutil.which("fc-list") is None:
        return None
    try:
        proc = subprocess.run(["fc-list", ":", "family"], capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    families = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        families.update(name.strip().lower() for name in line.split(",") if name.strip())
    return families


def missing_font(name: str, families: set[str] | None) -> bool:
    """True when `families` is known and holds no family `name` names (``Times-Roman`` matches
    ``Times``: PostScript names add a style after a hyphen)."""
    if families is None:
        return False
    wanted = name.strip().lower()
    return wanted not in families and wanted.split("-", 1)[0] not in families
