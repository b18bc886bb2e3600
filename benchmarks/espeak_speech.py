"""Real speech for the benchmarks, offline: GRID-style sentences spoken by espeak-ng.

Sentences follow GRID's grammar (command, colour, preposition, letter, digit,
adverb); voices, pitch and rate vary per sentence, all drawn from a seeded RNG,
so every run measures the same audio. Audio is resampled to 16 kHz and trimmed
to whole video frames (640 samples), as the decode stage leaves it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

WORDS = [
    ["bin", "lay", "place", "set"],
    ["blue", "green", "red", "white"],
    ["at", "by", "in", "with"],
    list("abcdefghijklmnopqrstuvxyz"),
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    ["again", "now", "please", "soon"],
]
VOICES = ["en-us", "en-gb", "en-us+f2", "en-us+f4", "en-gb+m3", "en-029"]


def espeak_corpus(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``n`` sentences -> [(text, (N,) float32 audio at 16 kHz, N a multiple of 640)]."""
    import librosa
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            text = " ".join(str(rng.choice(w)) for w in WORDS)
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(
                ["espeak-ng", "-v", str(rng.choice(VOICES)), "-p", str(int(rng.integers(25, 75))),
                 "-s", str(int(rng.integers(140, 190))), "-w", str(wav), text],
                check=True, capture_output=True,
            )
            x, sr = sf.read(wav, dtype="float32")
            x = librosa.resample(x, orig_sr=sr, target_sr=16000)
            out.append((text, np.ascontiguousarray(x[: len(x) // 640 * 640])))
    return out
