"""Whether this code runs from a checkout of the project (a git clone with its pyproject.toml)
or from an installed copy. Only a checkout has a repository around it: `../shared` beside it,
relative paths of its experiment files, its git commit. An installed copy derives no path
from where its files happen to lie."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

PROJECT_NAME = "cloce-study"


def is_this_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and re.search(
        rf'^name\s*=\s*"{PROJECT_NAME}"', pyproject.read_text(), re.MULTILINE) is not None


@lru_cache(maxsize=1)
def checkout_root() -> Path | None:
    """The checkout's root folder, or None for an installed copy."""
    root = Path(__file__).resolve().parents[1]  # .../<repo>/cloce/checkout.py
    return root if is_this_checkout(root) else None
