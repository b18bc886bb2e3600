import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """The bad-input zoo (tests/zoo.py), built once per session (~10 s of one core)."""
    import shutil

    from lipspeech.data.synth.speech import _load_library

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("needs ffmpeg")
    try:
        _load_library()
    except RuntimeError:
        pytest.skip("needs libespeak-ng")
    from zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))
