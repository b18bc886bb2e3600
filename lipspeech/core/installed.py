"""Files that ship inside an installed package, found without importing it (a package's ``__init__`` may
pull in heavy or absent dependencies: speechmos imports requests and librosa, resemblyzer webrtcvad)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_folder(name: str, missing: Exception) -> Path:
    """The folder of the installed package ``name`` (the first of its search locations), located by
    :func:`importlib.util.find_spec` alone; raises ``missing`` where ``name`` is not installed or is not a
    package."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise missing
    return Path(list(spec.submodule_search_locations)[0])
