"""Prosody stage: per shard, log-F0 (WORLD) and energy at the 25 Hz video rate,
and (stage prosody-stats) per-speaker normalisation statistics.

F0
    pyworld DIO or Harvest (``prosody.f0_method``) refined by StoneMask, at 10 ms
    frames. WORLD places frame ``k`` at time ``k * 10 ms``; our mel frames are
    centred at ``k * 160 + 80`` samples (:mod:`lipspeech.features.audio`), so the
    first 80 samples are dropped before analysis: WORLD then returns exactly
    ``floor((N - 80) / 160) + 1 = 4T`` frames for ``N = 640 T``, each aligned with
    a mel frame.
Energy
    Per 10 ms frame, the L2 norm over frequency of the linear STFT magnitude
    (``prosody.energy: magnitude``, FastSpeech 2's definition) or of the
    linear-scale mel frame before log compression (``prosody.energy: mel``), both
    from :class:`lipspeech.features.audio.MelSpectrogram`, so energy and mel share
    one framing.
25 Hz
    Energy: the mean of the 4 frames of each video frame. F0: ``lf0`` is the mean
    log-F0 of the *voiced* 10 ms frames of each video frame; video frames with no
    voiced frame get log-F0 linearly interpolated between their voiced neighbours
    (held constant before the first and after the last), so ``lf0`` is continuous
    and ``voiced`` (1 when at least one of the 4 frames is voiced) is the mask. An
    utterance with no voiced frame at all (silence) is kept, not rejected:
    ``voiced`` is all zero and ``lf0`` is ``log(f0_floor)`` throughout.
Lengths
    Both 100 Hz streams are brought to ``4T`` frames by
    :func:`lipspeech.core.timing.fit_length` (edge padding) before averaging, so the
    outputs have exactly ``T`` values.

Store ``prosody/{shard}.parquet``: ``utt, n_frames, duration, voiced_ratio`` and
arrays ``lf0`` float32 ``(T,)``, ``voiced`` uint8 ``(T,)``, ``energy`` float32 ``(T,)``.
Statistics ``prosody/stats.json``: per speaker of the train split, mean/std of
``lf0`` over voiced frames and of ``energy`` over all frames, plus the same over
all train speakers (``global``) for speakers the train split does not have.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.settings import ProsodyConfig
from lipspeech.core.shards import ShardResult, audio_problem, open_stores, read_audio_input
from lipspeech.core.store import Store, write_text_atomic
from lipspeech.core.timing import HOP_LENGTH, MEL_PER_FRAME, SAMPLE_RATE, fit_length
from lipspeech.features.audio import AudioConfig, MelSpectrogram

STAGE = "prosody"
STAGE_STATS = "prosody-stats"
FRAME_PERIOD_MS = 1000 * HOP_LENGTH / SAMPLE_RATE  # 10 ms
STD_FLOOR = 1e-4  # a speaker with constant values must not divide by zero downstream


def prosody_hash(prosody_cfg: Mapping[str, Any], mel_cfg: Mapping[str, Any]) -> str:
    """Energy uses the mel section's STFT, so both sections decide the prosody store."""
    return config_hash(dict(prosody_cfg), dict(mel_cfg))


def world_f0(audio: np.ndarray, method: str, f0_floor: float, f0_ceil: float) -> np.ndarray:
    """F0 in Hz per 10 ms frame (0 = unvoiced), frame k centred on sample 160 k + 80.

    Args:
        audio: (N,) float waveform at 16 kHz.
        method: "dio" or "harvest" (each refined by StoneMask).

    Returns:
        (floor((N - 80) / 160) + 1,) float64.
    """
    import pyworld

    x = np.ascontiguousarray(audio[HOP_LENGTH // 2 :], dtype=np.float64)
    if method == "dio":
        f0, t = pyworld.dio(x, SAMPLE_RATE, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=FRAME_PERIOD_MS)
    elif method == "harvest":
        f0, t = pyworld.harvest(x, SAMPLE_RATE, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=FRAME_PERIOD_MS)
    else:
        raise ValueError(f"f0 method must be dio or harvest, got {method!r}")
    return pyworld.stonemask(x, f0, t, SAMPLE_RATE)


def frame_energy(audio: np.ndarray, module: MelSpectrogram, kind: str) -> np.ndarray:
    """(N,) audio -> (N // 160,) float32 L2 norm of each linear magnitude ("magnitude") or mel ("mel") frame."""
    with torch.inference_mode():
        mag = module.magnitude(torch.tensor(audio, dtype=torch.float32))
        frames = module.linear_mel(mag) if kind == "mel" else mag
        return torch.linalg.vector_norm(frames, dim=-1).numpy()


def interpolate_gaps(values: np.ndarray, known: np.ndarray, fill: float) -> np.ndarray:
    """Linear interpolation of ``values`` where ``known`` is False (ends held); ``fill`` if nothing is known."""
    if not known.any():
        return np.full(values.shape, fill, dtype=values.dtype)
    idx = np.arange(len(values))
    return np.interp(idx, idx[known], values[known]).astype(values.dtype)


def to_video_rate(
    f0: np.ndarray, energy: np.ndarray, n_frames: int, f0_floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """100 Hz F0 (Hz, 0 = unvoiced) and energy -> 25 Hz (lf0, voiced, energy).

    Args:
        f0: (~4T,) Hz.
        energy: (~4T,) frame energy.
        n_frames: video frame count T.

    Returns:
        lf0 (T,) float32 continuous log-F0, voiced (T,) uint8, energy (T,) float32.
    """
    f0 = fit_length(np.asarray(f0, dtype=np.float64), n_frames, MEL_PER_FRAME, pad="edge").reshape(n_frames, MEL_PER_FRAME)
    energy = fit_length(np.asarray(energy, dtype=np.float32), n_frames, MEL_PER_FRAME, pad="edge")
    voiced4 = f0 > 0
    n_voiced = voiced4.sum(axis=1)
    log_sum = np.where(voiced4, np.log(np.where(voiced4, f0, 1.0)), 0.0).sum(axis=1)
    voiced = n_voiced > 0
    lf0 = np.where(voiced, log_sum / np.maximum(n_voiced, 1), 0.0)
    lf0 = interpolate_gaps(lf0, voiced, math.log(f0_floor))
    energy = energy.reshape(n_frames, MEL_PER_FRAME).mean(axis=1)
    return lf0.astype(np.float32), voiced.astype(np.uint8), energy.astype(np.float32)


def utterance_prosody(
    audio: np.ndarray, n_frames: int, prosody_cfg: ProsodyConfig | Mapping[str, Any], module: MelSpectrogram,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T * 640,) audio -> 25 Hz (lf0 (T,), voiced (T,), energy (T,)); ``prosody_cfg``: the
    ``prosody`` section, typed or as its mapping."""
    prosody = ProsodyConfig.from_section(prosody_cfg)
    f0 = world_f0(audio, prosody.f0_method, float(prosody.f0_floor), float(prosody.f0_ceil))
    energy = frame_energy(audio, module, prosody.energy)
    return to_video_rate(f0, energy, n_frames, float(prosody.f0_floor))


def prosody_shard(
    audio_path: Path, prosody_cfg: Mapping[str, Any], mel_cfg: Mapping[str, Any], out: Path, rejected_out: Path,
    threads: int = 1, progress: bool = True, manifest: Path | None = None, *, fail_fast: bool,
) -> tuple[int, int]:
    """F0 and energy of every utterance of one audio store; returns (n_ok, n_rejected).

    ``prosody_cfg``, ``mel_cfg``: the validated sections' mappings (the store records their hash);
    ``manifest`` and ``fail_fast`` as for :func:`lipspeech.features.mel.mel_shard`.
    """
    prosody = ProsodyConfig.from_section(prosody_cfg)
    module = MelSpectrogram(AudioConfig.from_section(mel_cfg))
    utts, n_frames, audio, unreadable = read_audio_input(audio_path, manifest, fail_fast)

    def work(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
        problem = audio_problem(audio[i], n_frames[i])
        return problem if problem else utterance_prosody(audio[i], n_frames[i], prosody, module)

    res = ShardResult(rejected=unreadable)
    ratios: list[float] = []
    # pyworld releases the GIL, so threads give real parallelism here
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = pool.map(work, range(len(utts)))
        bar = tqdm(results, total=len(utts), desc=f"prosody {audio_path.stem}", unit="utt", disable=not progress)
        for i, out_i in enumerate(bar):
            if isinstance(out_i, str):
                res.reject(utts[i], out_i)
                continue
            lf0, voiced, energy = out_i
            res.add(utts[i], n_frames[i], lf0=lf0, voiced=voiced, energy=energy)
            ratios.append(float(voiced.mean()))
    return res.write(
        out, rejected_out, STAGE, prosody_hash(prosody_cfg, mel_cfg), ["lf0", "voiced", "energy"],
        extra={"f0_method": prosody.f0_method, "energy": prosody.energy},
        columns={"voiced_ratio": pa.array(ratios, type=pa.float32())}, fail_fast=fail_fast,
    )


def _mean_std(values: Sequence[np.ndarray]) -> dict[str, Any]:
    x = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values else np.zeros(0)
    if x.size == 0:
        return {"mean": None, "std": None, "frames": 0}
    return {"mean": float(x.mean()), "std": max(float(x.std()), STD_FLOOR), "frames": int(x.size)}


def prosody_stats(
    prosody_paths: Sequence[Path], manifest_path: Path, prosody_cfg: Mapping[str, Any], mel_cfg: Mapping[str, Any],
    out: Path, *, fail_fast: bool, log: Any = print,
) -> dict[str, Any]:
    """Per-speaker mean/std of lf0 (voiced frames) and energy (all frames) over the train split.

    ``lf0`` is null for a speaker without a single voiced train frame; consumers
    fall back to ``global`` then, as for speakers absent from the train split.
    Unreadable prosody stores are skipped with a warning on ``log`` (fail with ``fail_fast``).
    ``prosody_cfg``, ``mel_cfg``: the validated sections' mappings (the json records their hash).
    """
    energy_kind = ProsodyConfig.from_section(prosody_cfg).energy
    manifest = Store(manifest_path, expect_stage="manifest").df
    speaker_of = dict(zip(manifest["utt"], manifest["speaker"]))
    train = set(manifest.loc[manifest["split"] == "train", "utt"])
    lf0: dict[str, list[np.ndarray]] = {}
    energy: dict[str, list[np.ndarray]] = {}
    for _, store in open_stores(prosody_paths, STAGE, fail_fast, log):
        for i, utt in enumerate(store.utts):
            if utt not in train:
                continue
            spk = speaker_of[utt]
            voiced = store.array("voiced", i).astype(bool)
            lf0.setdefault(spk, []).append(store.array("lf0", i)[voiced])
            energy.setdefault(spk, []).append(store.array("energy", i))
    speakers = {
        spk: {"lf0": _mean_std(lf0[spk]), "energy": _mean_std(energy[spk]), "utterances": len(energy[spk])}
        for spk in sorted(energy)
    }
    stats = {
        "stage": STAGE_STATS,
        "config_hash": prosody_hash(prosody_cfg, mel_cfg),
        "split": "train",
        "lf0_definition": "natural log of F0 in Hz; mean/std over voiced frames",
        "energy_definition": f"L2 norm of the {energy_kind} frame, mean over 4 frames; mean/std over all frames",
        "global": {
            "lf0": _mean_std([v for vs in lf0.values() for v in vs]),
            "energy": _mean_std([v for vs in energy.values() for v in vs]),
            "utterances": sum(len(v) for v in energy.values()),
        },
        "speakers": speakers,
    }
    write_text_atomic(out, json.dumps(stats, indent=1, sort_keys=True) + "\n")
    return stats
