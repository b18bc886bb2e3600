"""What the per-shard feature stages share: reading the audio store, rejecting bad
audio with a one-line reason, and writing a stage's store plus its rejected table.

Every feature store has the scalar columns ``n_frames`` (video frames, the master
length of :mod:`lipspeech.timing`) and ``duration`` (``n_frames / 25`` seconds)
beside its arrays, so the summary and any consumer can check lengths without
opening the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from lipspeech.store import Store, StoreMeta, write_rejected, write_store
from lipspeech.timing import FPS, SAMPLES_PER_FRAME


class StageError(RuntimeError):
    """A stage cannot run at all (missing model, no training data); the message is one line."""


def audio_problem(audio: np.ndarray, n_frames: int) -> str | None:
    """Why an utterance's audio cannot be used, or None. Silence is fine (not a rejection)."""
    if n_frames <= 0 or audio.size == 0:
        return "audio is empty"
    if audio.size != n_frames * SAMPLES_PER_FRAME:
        return f"audio has {audio.size} samples, expected n_frames * {SAMPLES_PER_FRAME} = {n_frames * SAMPLES_PER_FRAME}"
    if not np.all(np.isfinite(audio)):
        return "audio has NaN or infinite samples"
    return None


def read_audio_store(path: Path) -> tuple[list[str], list[int], list[np.ndarray]]:
    """(utts, n_frames, audio arrays (T*640,) float32 views) of one decode store."""
    store = Store(path, expect_stage="decode")
    n_frames = [int(n) for n in store.df["n_frames"]] if len(store) else []
    return store.utts, n_frames, store.arrays("audio") if len(store) else []


@dataclass
class ShardResult:
    """The rows a stage produced for one shard, in order, and what it rejected."""

    utts: list[str] = field(default_factory=list)
    n_frames: list[int] = field(default_factory=list)
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, utt: str, n_frames: int, **arrays: np.ndarray) -> None:
        self.utts.append(utt)
        self.n_frames.append(n_frames)
        for name, value in arrays.items():
            self.arrays.setdefault(name, []).append(value)

    def reject(self, utt: str, reason: str) -> None:
        self.rejected.append((utt, reason))

    def write(
        self, out: Path, rejected_out: Path, stage: str, cfg_hash: str, array_names: Sequence[str],
        extra: Mapping[str, Any] | None = None, columns: Mapping[str, pa.Array] | None = None,
    ) -> tuple[int, int]:
        """Write the store and the rejected table (both atomically); returns (n_ok, n_rejected).

        ``columns`` adds stage-specific scalar columns after ``n_frames, duration``.
        """
        arrays = {name: self.arrays.get(name, []) for name in array_names}
        write_store(
            out,
            StoreMeta(stage, cfg_hash, extra=dict(extra or {})),
            self.utts,
            {
                "n_frames": pa.array(self.n_frames, type=pa.int32()),
                "duration": pa.array([n / FPS for n in self.n_frames], type=pa.float64()),
                **dict(columns or {}),
            },
            arrays,
        )
        write_rejected(rejected_out, stage, self.rejected)
        return len(self.utts), len(self.rejected)
