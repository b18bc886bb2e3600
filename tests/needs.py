"""What some tests need from the machine (``make test`` installs all of it): one check each,
shared by the test modules (``from needs import ...``; tests/ is on the import path)."""

from __future__ import annotations

import functools
import shutil


@functools.cache
def have_espeak() -> bool:
    """libespeak-ng loads (SynthGRID's speech and phoneme timings)."""
    from lipspeech.data.synth.speech import _load_library

    try:
        _load_library()
    except RuntimeError:
        return False
    return True


def have_ffmpeg() -> bool:
    """ffmpeg and ffprobe are on PATH."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
