"""The train-vocoder and vocode stages: what ``lipspeech train-vocoder`` / ``lipspeech vocode`` run.

train-vocoder (``results/{corpus}/vocoder/``)
    HiFi-GAN (:mod:`lipspeech.vocoder.train`) on the train split's decoded audio
    and mels, validated on val (on train when val is empty, as tiny corpora have).
    Like the acoustic model's stage (:mod:`lipspeech.training.stage`), it trains in
    chunks of ``val_every`` steps and resumes only when ``run.json``'s key (sizes,
    mel definition, training config, data) matches (:mod:`lipspeech.training.rundir`).

vocode (``results/{corpus}/eval/{system}/audio.parquet``)
    One system's test-split log-mels through the configured vocoder: an
    experiment's ``eval/{exp}/mels.parquet`` (its ``post`` mels), or for the
    system ``gt_vocoded`` the ground-truth mels of the mel stage. Store (stage
    ``vocode``): ``utt, n_frames (int32), duration (float64)`` and the array
    ``audio`` (float32, 16 kHz, exactly ``n_frames * 640`` samples); metadata
    extra ``system``, ``vocoder`` (the kind) and ``vocoder_detail`` (its settings).
    Utterances that cannot be vocoded (no mel, a mel of the wrong shape, NaNs) go
    to ``audio.rejected.parquet`` with the reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from lipspeech.core.config import ConfigError, config_hash
from lipspeech.core.settings import VocoderConfig
from lipspeech.core.shards import StageError
from lipspeech.core.store import Store, StoreMeta, write_rejected, write_store, write_text_atomic
from lipspeech.core.timing import FPS, MEL_PER_FRAME, SAMPLES_PER_FRAME
from lipspeech.features.audio import AudioConfig
from lipspeech.training.stage import corpus_stores

STAGE_VOCODE = "vocode"
GT_VOCODED = "gt_vocoded"
#: vocoder.train keys that do not change what is trained (left out of the resume key)
RESULT_NEUTRAL = ("tensorboard", "device", "log_every", "ckpt_every")


def _check_mel_definition(corpus: Any, audio_cfg: AudioConfig) -> None:
    """The mel stores must have been made with the mel section the vocoder is trained for."""
    for store in corpus.opened("mel"):
        made = store.meta.extra.get("audio")
        if made is not None and made != audio_cfg.as_dict():
            diff = sorted(k for k, v in audio_cfg.as_dict().items() if made.get(k) != v)
            raise StageError(f"{store.path}: made with another mel definition (mel.{diff[0]} differs from the config)")


def run_train_vocoder(
    corpus: Any,
    vocoder_section: Mapping[str, Any],
    mel_section: Mapping[str, Any],
    run_dir: Path,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the configured HiFi-GAN preset on a corpus's audio and mel stores; returns a summary (also in run.json).

    Args:
        corpus: a :class:`~lipspeech.training.stores.CorpusStores` with the manifest, audio and mel stores
            (or a ``results/{corpus}`` folder: its stores in the workflow's layout).
        vocoder_section: the validated ``vocoder`` section (``preset``, ``train``).
        mel_section: the ``mel`` section.
        run_dir: ``results/{corpus}/vocoder``.
        threads: torch CPU threads.
        progress: progress bar.
    """
    from lipspeech.training.rundir import open_run, train_in_chunks
    from lipspeech.vocoder.hifigan import hifigan_config
    from lipspeech.vocoder.train import load_items, train_vocoder

    run_dir = Path(run_dir)
    vocoder = VocoderConfig.from_section(vocoder_section)
    preset, train = vocoder.preset, vocoder.train
    gen_cfg = hifigan_config(preset)
    audio_cfg = AudioConfig.from_section(mel_section)
    train_cfg = dict(vocoder_section["train"])  # the mapping the run key hashes and the checkpoints store
    if train.val_every > train.max_steps:
        raise ConfigError(f"config key vocoder.train.val_every: {train.val_every} > max_steps "
                          f"{train.max_steps}, so there would be no validation and no best.pt")
    corpus = corpus_stores(corpus, False)
    train_items, train_skipped = load_items(corpus, "train")
    val_items, val_skipped = load_items(corpus, "val")
    _check_mel_definition(corpus, audio_cfg)

    def line(split: str, n: int, skipped: Mapping[str, int]) -> str:
        text = f"{split}: {n} utterances"
        if skipped:
            text += f", {sum(skipped.values())} skipped (" + ", ".join(f"{r}: {c}" for r, c in sorted(skipped.items())) + ")"
        return text

    lines = [line("train", len(train_items), train_skipped), line("val", len(val_items), val_skipped)]
    if not train_items:
        raise StageError(f"no train utterances with audio and mel in the stores ({lines[0]})")
    val_is_train = not val_items
    if val_is_train:
        val_items = train_items
        lines.append("val split empty: validating on the train utterances")
    for text in lines:
        print(f"train-vocoder: {text}", flush=True)

    def fingerprint(items: Any) -> dict[str, Any]:
        return {"utts": list(items.utts)}

    stores = sorted({s.meta.config_hash for f in ("audio", "mel") for s in corpus.opened(f)})
    kept = {k: v for k, v in train_cfg.items() if k not in RESULT_NEUTRAL}
    key = config_hash(gen_cfg, audio_cfg.as_dict(), kept,
                      {"train": fingerprint(train_items), "val": fingerprint(val_items), "stores": stores})
    ckpt_dir = run_dir / "ckpt"
    run_json = run_dir / "run.json"
    resumed_from = open_run(run_dir, key, "train-vocoder")
    info: dict[str, Any] = {
        "key": key, "preset": preset,
        "train": {"utterances": len(train_items), "skipped": dict(train_skipped)},
        "val": {"utterances": len(val_items), "skipped": dict(val_skipped), "is_train": val_is_train},
        "resumed_from_step": resumed_from,
    }
    write_text_atomic(run_json, json.dumps(info, indent=1, sort_keys=True) + "\n")

    started = time.time()
    result = train_in_chunks(
        lambda stop: train_vocoder(gen_cfg, audio_cfg, train_cfg, train_items, val_items, run_dir, preset=preset,
                                   resume=True, stop_at_step=stop, threads=threads, progress=progress),
        resumed_from or 0, train.max_steps, train.val_every, ckpt_dir)
    summary = {"preset": preset, "steps": result.step, "best_step": result.best_step, "best_mel_l1": result.best_value,
               "seconds": round(time.time() - started, 1), "train_utterances": len(train_items),
               "val_utterances": len(val_items), "run_dir": str(run_dir)}
    info["result"] = summary
    write_text_atomic(run_json, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return summary


def _gt_mels(corpus: Any, split: str) -> tuple[list[tuple[str, int, Optional[np.ndarray]]], str]:
    """(utt, n_frames, mel or None) of the split's utterances from the mel stores, and a hash of those stores."""
    manifest = corpus.manifest
    rows = manifest[manifest["split"] == split]
    out = []
    for utt, shard in zip(rows["utt"], rows["shard"]):
        hit = corpus.rows("mel", int(shard)).get(utt)
        if hit is None:
            out.append((utt, 0, None))
            continue
        mel = corpus.store("mel", int(shard)).array("mel", hit[0])
        out.append((utt, len(mel) // MEL_PER_FRAME, mel))
    hashes = sorted({s.meta.config_hash for s in corpus.opened("mel")})
    return out, config_hash(hashes)


def _experiment_mels(path: Path) -> tuple[list[tuple[str, int, Optional[np.ndarray]]], str]:
    """(utt, n_frames, post mel) of a synthesize store, and its config hash."""
    store = Store(path, expect_stage="synthesize")
    n_frames = [int(n) for n in store.df["n_frames"]] if len(store) else []
    return [(u, n, store.array("post", i)) for i, (u, n) in enumerate(zip(store.utts, n_frames))], store.meta.config_hash


def run_vocode(
    system: str,
    vocoder: Any,
    vocoder_section: Mapping[str, Any],
    mel_section: Mapping[str, Any],
    out: Path,
    rejected_out: Path,
    mels: Optional[Path] = None,
    corpus: Any = None,
    split: str = "test",
    progress: bool = True,
) -> tuple[int, int]:
    """Vocode one system's mels; returns (n_written, n_rejected).

    Args:
        system: an experiment name (reads ``mels``) or ``gt_vocoded`` (reads ``corpus``).
        vocoder: a :class:`~lipspeech.vocoder.api.Vocoder`.
        vocoder_section, mel_section: config sections (hashed into the store metadata).
        out, rejected_out: the store and the rejected table to write.
        mels: an experiment's synthesize store (``eval/{exp}/mels.parquet``).
        corpus: for ``gt_vocoded``, the manifest and the mel stores (a
            :class:`~lipspeech.training.stores.CorpusStores`, or a ``results/{corpus}`` folder).
        split: the split ``gt_vocoded`` reads.
        progress: progress bar.
    """
    from tqdm.auto import tqdm

    if system == GT_VOCODED:
        if corpus is None:
            raise StageError("vocode gt_vocoded: needs the manifest and the mel stores")
        rows, source = _gt_mels(corpus_stores(corpus, False), split)
    else:
        if mels is None:
            raise StageError(f"vocode {system}: needs the experiment's synthesize store (--mels)")
        rows, source = _experiment_mels(Path(mels))
    n_mels = vocoder.audio_cfg.n_mels
    good: list[tuple[str, int, np.ndarray]] = []
    rejected: list[tuple[str, str]] = []
    for utt, n, mel in rows:
        if mel is None:
            rejected.append((utt, "no mel in the mel stage's store (rejected earlier)"))
        elif mel.shape != (n * MEL_PER_FRAME, n_mels) or n == 0:
            rejected.append((utt, f"mel has shape {mel.shape}, expected ({n * MEL_PER_FRAME}, {n_mels})"))
        elif not np.all(np.isfinite(mel)):
            rejected.append((utt, "mel has NaN or infinite values"))
        else:
            good.append((utt, n, mel))
    audio: list[np.ndarray] = []
    bar = tqdm(total=len(good), desc=f"vocode {system}", unit="utt", disable=not progress)
    chunk = 16  # progress per chunk; the vocoder batches within it
    for start in range(0, len(good), chunk):
        part = good[start : start + chunk]
        audio += vocoder.batch([m for _, _, m in part])
        bar.update(len(part))
    bar.close()
    for (utt, n, _), a in zip(good, audio):
        if a.shape != (n * SAMPLES_PER_FRAME,):
            raise RuntimeError(f"{utt}: vocoder gave {a.shape[0]} samples for {n} frames")  # a bug, not bad data
    detail = vocoder.describe()
    section = {k: v for k, v in dict(vocoder_section).items() if k != "train"}
    meta = StoreMeta(
        STAGE_VOCODE, config_hash(section, dict(mel_section), system, split, source, detail),
        extra={"system": system, "vocoder": vocoder.kind, "vocoder_detail": detail, "split": split},
    )
    write_store(
        out, meta, [u for u, _, _ in good],
        {"n_frames": pa.array([n for _, n, _ in good], type=pa.int32()),
         "duration": pa.array([n / FPS for _, n, _ in good], type=pa.float64())},
        {"audio": [np.asarray(a, dtype=np.float32) for a in audio]},
    )
    write_rejected(rejected_out, STAGE_VOCODE, rejected)
    return len(good), len(rejected)
