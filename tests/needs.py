"""What some tests need from the machine (``make test`` installs all of it): one check each,
shared by the test modules (``from needs import ...``; tests/ is on the import path), the
espeak-ng sentences several modules score, and a free local port."""

from __future__ import annotations

import functools
import shutil
import socket

import numpy as np
import pytest


@functools.cache
def have_espeak() -> bool:
    """libespeak-ng loads (SynthGRID's speech and phoneme timings)."""
    from lipspeech.data.synth.speech import load_library

    try:
        load_library()
    except RuntimeError:
        return False
    return True


def have_ffmpeg() -> bool:
    """ffmpeg and ffprobe are on PATH."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


needs_espeak = pytest.mark.skipif(not have_espeak(), reason="needs libespeak-ng")
needs_ffmpeg = pytest.mark.skipif(not have_ffmpeg(), reason="needs ffmpeg and ffprobe")
#: what a SynthGRID clip is made with (data.synth: espeak-ng speaks, ffmpeg encodes)
needs_synthgrid = pytest.mark.skipif(not have_ffmpeg() or not have_espeak(), reason="needs ffmpeg/ffprobe and libespeak-ng")

#: four GRID sentences and the espeak-ng voices (voice, pitch, range, rate) that speak them:
#: conftest's ``speech`` fixture
SENTENCES = ["bin blue at f two now", "place red by m five again", "set white with z nine please",
             "lay green in q seven soon"]
VOICES = [("en-us", 35, 40, 160), ("en-us+f2", 65, 60, 170), ("en-gb", 45, 50, 150), ("en-us+f4", 55, 70, 175)]


def spoken_sentences() -> list[np.ndarray]:
    """SENTENCES spoken by VOICES: 16 kHz float32, 0.3 s of silence each side, a whole number of video
    frames long."""
    from lipspeech.core.timing import SAMPLES_PER_FRAME
    from lipspeech.data.synth.speech import synthesize
    from lipspeech.evaluation.asr import resample

    out = []
    for text, voice in zip(SENTENCES, VOICES):
        syn = synthesize(text.split(), *voice)
        x = resample(syn.audio.astype(np.float32) / 32768, syn.sample_rate, 16_000)
        n = -(-(len(x) + 9600) // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
        y = np.zeros(n, np.float32)
        y[4800 : 4800 + len(x)] = x
        out.append(y)
    return out


def chromium_binary() -> str | None:
    """Debian's chromium (or Ubuntu's chromium-browser) on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_chromium = pytest.mark.skipif(chromium_binary() is None, reason="needs chromium (headless) for the browser "
                                    "test: apt-get install chromium (make deps installs it)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
