"""Decode stage: per shard, audio to 16 kHz mono float32 and the 25 fps frame count.

Store ``audio/{shard}.parquet``: ``utt, n_frames, duration, audio_seconds_raw`` and
the array column ``audio`` (float32, exactly ``n_frames * 640`` samples, see
:func:`lipspeech.core.timing.fit_length`). The video frames themselves are decoded
again by the ROI stage (same :func:`lipspeech.core.media.read_frames`) rather
than stored twice.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.media import MediaError, count_frames, read_audio, read_audio_and_count, require_ffmpeg
from lipspeech.core.settings import DecodeConfig
from lipspeech.core.shards import refuse_rejections
from lipspeech.core.store import Store, StoreMeta, write_rejected, write_store
from lipspeech.core.timing import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, fit_length

STAGE = "decode"


def decode_utterance(video_path: str, audio_path: str, cfg: DecodeConfig) -> tuple[np.ndarray, int, float]:
    """Decode one utterance -> (audio (T*640,) float32, T, raw audio seconds)."""
    damaged = cfg.reject_damaged
    # one ffmpeg process; where it reported anything, the two reads apart (the reason names the stream
    # at fault, and reject_damaged applies)
    both = read_audio_and_count(video_path, audio_path, fps=FPS, sample_rate=SAMPLE_RATE)
    n_frames = both[1] if both else count_frames(video_path, fps=FPS, reject_damaged=damaged)
    if n_frames == 0:
        raise MediaError("video stream has no frames")
    audio = both[0] if both else read_audio(audio_path, sample_rate=SAMPLE_RATE, reject_damaged=damaged)
    if audio.size == 0:
        raise MediaError("audio stream decoded to no samples")
    if not np.all(np.isfinite(audio)):
        raise MediaError("audio has NaN or infinite samples")
    raw_seconds = audio.size / SAMPLE_RATE
    video_seconds = n_frames / FPS
    if abs(raw_seconds - video_seconds) > cfg.max_av_mismatch:
        raise MediaError(
            f"audio is {raw_seconds:.2f} s but video is {video_seconds:.2f} s "
            f"(differ by more than decode.max_av_mismatch = {cfg.max_av_mismatch} s)"
        )
    return fit_length(audio, n_frames, SAMPLES_PER_FRAME, pad="zero"), n_frames, raw_seconds


def decode_shard(
    manifest_path: Path, shard: int, cfg: Mapping[str, Any], out: Path, rejected_out: Path,
    threads: int = 1, progress: bool = True, *, fail_fast: bool,
) -> tuple[int, int]:
    """Decode every utterance of one shard; returns (n_ok, n_rejected).

    ``cfg`` is the validated ``decode`` section, a mapping: the store's config hash is its hash.
    With ``fail_fast`` a rejected utterance fails the stage (StageError) and nothing is written.
    """
    require_ffmpeg()
    decode = DecodeConfig.from_section(cfg)
    df = Store(manifest_path, expect_stage="manifest").df
    rows = df[df["shard"] == shard].sort_values("utt")

    def work(row: Any) -> tuple[str, tuple[np.ndarray, int, float] | str]:
        try:
            return row.utt, decode_utterance(row.video_path, row.audio_path, decode)
        except MediaError as exc:
            return row.utt, str(exc)

    utts, n_frames, raw, audio = [], [], [], []
    rejected: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = pool.map(work, rows.itertuples(index=False))
        for utt, res in tqdm(results, total=len(rows), desc=f"decode {shard:03d}", unit="utt", disable=not progress):
            if isinstance(res, str):
                rejected.append((utt, res))
                continue
            utts.append(utt)
            audio.append(res[0])
            n_frames.append(res[1])
            raw.append(res[2])
    refuse_rejections(STAGE, rejected, fail_fast)
    meta = StoreMeta(STAGE, config_hash(dict(cfg)), extra={"sample_rate": SAMPLE_RATE, "fps": FPS})
    write_store(
        out,
        meta,
        utts,
        {
            "n_frames": pa.array(n_frames, type=pa.int32()),
            "duration": pa.array([n / FPS for n in n_frames], type=pa.float64()),
            "audio_seconds_raw": pa.array(raw, type=pa.float64()),
        },
        {"audio": audio} if audio else {"audio": []},
    )
    write_rejected(rejected_out, STAGE, rejected)
    return len(utts), len(rejected)
