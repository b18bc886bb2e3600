"""What the per-shard feature stages share: reading the audio store, rejecting bad
audio with a one-line reason, and writing a stage's store plus its rejected table.

Every feature store has the scalar columns ``n_frames`` (video frames, the master
length of :mod:`lipspeech.core.timing`) and ``duration`` (``n_frames / 25`` seconds)
beside its arrays, so the summary and any consumer can check lengths without
opening the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from lipspeech.core.store import Store, StoreError, StoreMeta, StoreUnreadable, one_line, write_rejected, write_store
from lipspeech.core.timing import FPS, SAMPLES_PER_FRAME


class StageError(RuntimeError):
    """A stage cannot run at all (missing model, no training data); the message is one line."""


def refuse_rejections(stage: str, rejected: Sequence[tuple[str, str]], fail_fast: bool) -> None:
    """With ``fail_fast`` (config key fail_fast), any rejected utterance fails the stage.

    Called before anything is written, so a failed job leaves no outputs behind and
    Snakemake stops there; without it, rejections are recorded and the stage goes on.
    """
    if fail_fast and rejected:
        utt, reason = rejected[0]
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        raise StageError(f"fail_fast: {stage} rejected {utt}: {one_line(reason)}{more}")


def shard_of_store(path: Path) -> int | None:
    """The shard number of a per-shard store file ``{folder}/{shard:03d}.parquet`` (None if not one)."""
    stem = Path(path).name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def shard_stores(folder: Path) -> list[Path]:
    """The per-shard store files ``{shard:03d}.parquet`` of a stage folder, sorted (not its rejected
    or QC tables); empty when the folder does not exist. For tools reading a results folder in the
    workflow's layout: stages are given their files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if shard_of_store(p) is not None and p.name.count(".") == 1)


def unreadable_reason(path: Path, exc: Exception) -> str:
    """One line: which store is unreadable, why, and how to get it rebuilt."""
    # the advice first: the error text (with paths) may be cut to fit the one line
    return one_line(f"input store {Path(path).parent.name}/{Path(path).name} is unreadable, delete it and "
                    f"rerun the workflow to rebuild it ({exc})")


def unreadable_input(path: Path, exc: Exception, manifest_path: Path | None) -> list[tuple[str, str]]:
    """Rejections for every utterance of a shard whose input store cannot be read.

    The shard's utterances are named by the manifest; without one (or when the
    manifest itself is unreadable) the stage cannot say whom it lost, so it fails
    (StageError) instead. The reason says how to get the store rebuilt.
    """
    reason = unreadable_reason(path, exc)
    shard = shard_of_store(path)
    if manifest_path is None or shard is None:
        raise StageError(reason)
    try:
        manifest = Store(manifest_path, expect_stage="manifest").df
    except StoreError as mexc:
        raise StageError(f"{reason}; the manifest cannot be read either ({mexc})") from None
    utts = sorted(manifest.loc[manifest["shard"] == shard, "utt"])
    return [(utt, reason) for utt in utts]


def open_input_store(
    path: Path, expect_stage: str, manifest_path: Path | None, fail_fast: bool,
) -> tuple[Store | None, list[tuple[str, str]]]:
    """A stage's per-shard input store, or (None, a rejection per utterance) when it is unreadable.

    A damaged store (a disk error, a copy cut short) then costs that shard's utterances
    a one-line reason each, and the rest of the run goes on; with ``fail_fast`` it stops.
    A missing file or a store of another stage is a wiring mistake, not damage: StoreError.
    """
    try:
        return Store(path, expect_stage=expect_stage), []
    except StoreUnreadable as exc:
        if fail_fast:
            raise StageError(f"fail_fast: {unreadable_reason(path, exc)}") from None
        return None, unreadable_input(path, exc, manifest_path)


def audio_problem(audio: np.ndarray, n_frames: int) -> str | None:
    """Why an utterance's audio cannot be used, or None. Silence is fine (not a rejection)."""
    if n_frames <= 0 or audio.size == 0:
        return "audio is empty"
    if audio.size != n_frames * SAMPLES_PER_FRAME:
        return f"audio has {audio.size} samples, expected n_frames * {SAMPLES_PER_FRAME} = {n_frames * SAMPLES_PER_FRAME}"
    if not np.all(np.isfinite(audio)):
        return "audio has NaN or infinite samples"
    return None


def open_stores(
    paths: Sequence[Path], expect_stage: str, fail_fast: bool, log: Any = print,
) -> list[tuple[Path, Store]]:
    """The readable stores among ``paths`` (a corpus-wide stage's inputs), in order.

    An unreadable one is skipped with one line on ``log`` (its utterances are then
    missing from what the stage computes, e.g. k-means or prosody statistics);
    with ``fail_fast`` it fails the stage instead.
    """
    out = []
    for path in paths:
        try:
            out.append((Path(path), Store(path, expect_stage=expect_stage)))
        except StoreUnreadable as exc:
            if fail_fast:
                raise StageError(f"fail_fast: {unreadable_reason(path, exc)}") from None
            log(f"warning: skipping {unreadable_reason(path, exc)}")
    return out


def read_audio_store(path: Path) -> tuple[list[str], list[int], list[np.ndarray]]:
    """(utts, n_frames, audio arrays (T*640,) float32 views) of one decode store."""
    store = Store(path, expect_stage="decode")
    n_frames = [int(n) for n in store.df["n_frames"]] if len(store) else []
    return store.utts, n_frames, store.arrays("audio") if len(store) else []


def read_audio_input(
    path: Path, manifest_path: Path | None, fail_fast: bool,
) -> tuple[list[str], list[int], list[np.ndarray], list[tuple[str, str]]]:
    """A per-shard stage's audio input: :func:`read_audio_store` plus rejections.

    The rejections are non-empty only when the store is damaged (:func:`open_input_store`):
    then every utterance of the shard, and no audio.
    """
    store, rejected = open_input_store(path, "decode", manifest_path, fail_fast)
    if store is None or not len(store):
        return [], [], [], rejected
    return store.utts, [int(n) for n in store.df["n_frames"]], store.arrays("audio"), rejected


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
        extra: Mapping[str, Any] | None = None, columns: Mapping[str, pa.Array] | None = None, *,
        fail_fast: bool,
    ) -> tuple[int, int]:
        """Write the store and the rejected table (both atomically); returns (n_ok, n_rejected).

        ``columns`` adds stage-specific scalar columns after ``n_frames, duration``. With
        ``fail_fast`` a rejection raises StageError instead and nothing is written.
        """
        refuse_rejections(stage, self.rejected, fail_fast)
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
