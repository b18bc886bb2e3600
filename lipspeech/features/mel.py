"""Mel stage: per shard, the log-mel spectrogram of every decoded utterance.

Store ``mel/{shard}.parquet``: ``utt, n_frames, duration`` and the array column
``mel`` (float32, ``(T * 4, n_mels)``). Framing and padding are defined in
:mod:`lipspeech.features.audio` (exactly ``N / 160`` frames for ``N`` samples);
the result is then passed through :func:`lipspeech.core.timing.fit_length` with
``per_frame = 4`` (edge padding), the one length rule of the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.shards import ShardResult, audio_problem, read_audio_input
from lipspeech.core.timing import MEL_PER_FRAME, fit_length
from lipspeech.features.audio import AudioConfig, MelSpectrogram

STAGE = "mel"


def utterance_mel(audio: np.ndarray, n_frames: int, module: MelSpectrogram) -> np.ndarray:
    """(T * 640,) audio -> (T * 4, n_mels) float32 log-mel."""
    with torch.inference_mode():
        # torch.tensor copies: store arrays are read-only views torch must not alias
        mel = module(torch.tensor(audio, dtype=torch.float32)).numpy()
    return np.ascontiguousarray(fit_length(mel, n_frames, MEL_PER_FRAME, pad="edge"), dtype=np.float32)


def mel_shard(
    audio_path: Path, mel_cfg: Mapping[str, Any], out: Path, rejected_out: Path, progress: bool = True,
    manifest: Path | None = None, *, fail_fast: bool,
) -> tuple[int, int]:
    """Compute the log-mel of every utterance of one audio store; returns (n_ok, n_rejected).

    ``manifest`` names the shard's utterances should the audio store be unreadable;
    ``fail_fast``: any rejection fails the stage instead (config key fail_fast).
    """
    acfg = AudioConfig.from_section(mel_cfg)
    module = MelSpectrogram(acfg)
    utts, n_frames, audio, unreadable = read_audio_input(audio_path, manifest, fail_fast)
    res = ShardResult(rejected=unreadable)
    bar = tqdm(zip(utts, n_frames, audio), total=len(utts), desc=f"mel {audio_path.stem}", unit="utt", disable=not progress)
    for utt, n, x in bar:
        problem = audio_problem(x, n)
        if problem:
            res.reject(utt, problem)
            continue
        res.add(utt, n, mel=utterance_mel(x, n, module))
    return res.write(out, rejected_out, STAGE, config_hash(dict(mel_cfg)), ["mel"], extra={"audio": acfg.as_dict()},
                     fail_fast=fail_fast)
