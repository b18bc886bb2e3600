"""The ``evaluate`` stage: one system's test-split audio against the ground truth.

Systems
    ``ground_truth``: the decoded audio itself (``audio/{shard}.parquet``, test
    split); scored against itself it gives the ceiling (STOI 1, MCD 0, ...) and
    the recogniser's own WER on real speech. ``gt_vocoded`` and every experiment:
    their ``eval/{system}/audio.parquet`` (stage ``vocode``; utt, n_frames,
    duration, array ``audio`` float32 16 kHz of ``n_frames * 640`` samples).

What is scored
    Every test utterance of the manifest. An utterance that cannot be scored is
    written to the rejected table with a one-line reason: no ground-truth
    audio (rejected by decode), no audio from the system, an unusable signal
    (empty, NaN), or a length differing from the ground truth's by more than
    ``evaluate.max_length_mismatch`` video frames (smaller differences are
    absorbed by :func:`lipspeech.timing.fit_length`: zero-pad or trim the
    system's audio to the reference's ``T * 640`` samples). Rows of the
    system's store that are not test utterances are rejected too.

Outputs (``results/{corpus}/eval/{system}/``)
    ``metrics.parquet``: a store (stage ``evaluate``), one row per scored
    utterance: ``utt, speaker, ref, hyp, wer, cer`` + the signal metrics of
    :mod:`lipspeech.evaluation.metrics` + ``n_frames``; ``ref`` and ``hyp``
    are normalised (:func:`lipspeech.evaluation.text.normalize_text`).
    ``summary.json``: ``system, n, n_rejected, wer, cer`` (corpus level),
    the means of the signal metrics over utterances where they are defined,
    ``asr`` (a description of the recogniser), and details (``asr_details``,
    ``nan_counts``, ``failures``, ``seconds_per_utt``, ``definitions``).
    ``metrics.rejected.parquet``: ``utt, stage, reason``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from lipspeech.config import RESERVED_SYSTEM_NAMES, config_hash
from lipspeech.evaluation.asr import build_asr
from lipspeech.evaluation.grammar import random_sentence_wer
from lipspeech.evaluation.metrics import SIGNAL_METRICS, Features, SignalScorer
from lipspeech.evaluation.text import char_errors, corpus_rates, normalize_text, word_errors
from lipspeech.features.common import StageError, audio_problem
from lipspeech.store import Store, StoreMeta, write_rejected, write_store, write_text_atomic
from lipspeech.timing import SAMPLES_PER_FRAME, fit_length

STAGE = "evaluate"
GROUND_TRUTH, GT_VOCODED = RESERVED_SYSTEM_NAMES
SPLIT = "test"
#: seeds the random grammar sentences of the chance level (chance_wer in summary.json)
CHANCE_SEED = 20240101
CHANCE_DRAWS = 100

#: metrics.parquet columns after ``utt``
COLUMNS = ("speaker", "ref", "hyp", "wer", "cer", *SIGNAL_METRICS, "n_frames")

DEFINITIONS = {
    "wer": "corpus level: word edits / reference words over all scored utterances (normalised text)",
    "cer": "corpus level: character edits / reference characters (spaces included)",
    "stoi": "pystoi at 16 kHz; mean over utterances",
    "estoi": "pystoi extended at 16 kHz; mean over utterances",
    "pesq_nb": "ITU-T P.862 narrow band (8 kHz, MOS-LQO); mean over utterances",
    "mcd": "dB; mel-cepstra c1..c{order} of the shared log-mel, frame-aligned (no DTW), mean over frames then utterances",
    "f0_mean": "Hz, mean of the system's voiced WORLD F0 (10 ms frames)",
    "f0_std": "Hz, std of the system's voiced F0",
    "f0_skew": "skewness of the system's voiced F0",
    "f0_kurt": "excess kurtosis of the system's voiced F0 (normal = 0)",
    "vuv_error": "fraction of 10 ms frames whose voicing differs from the ground truth",
    "f0_rmse_cents": "RMS of 1200 log2(F0_sys / F0_gt) over frames voiced in both",
    "energy_mae": "mean |energy_sys - energy_gt| per video frame (25 Hz), prosody-stage energy units ({energy})",
}


def evaluate_hash(eval_cfg: Mapping[str, Any], prosody_cfg: Mapping[str, Any], mel_cfg: Mapping[str, Any]) -> str:
    """The evaluation depends on its own section and on the F0/energy/mel definitions."""
    return config_hash(dict(eval_cfg), dict(prosody_cfg), dict(mel_cfg))


def _read_reference(paths: Sequence[Path], wanted: set[str]) -> dict[str, tuple[int, np.ndarray]]:
    """utt -> (n_frames, audio view) of the decode stores, for the ``wanted`` utterances only."""
    out: dict[str, tuple[int, np.ndarray]] = {}
    for path in paths:
        store = Store(path, expect_stage="decode")
        if not len(store):
            continue
        for i, (utt, n) in enumerate(zip(store.utts, store.df["n_frames"])):
            if utt in wanted:
                out[utt] = (int(n), store.array("audio", i))
    return out


def _read_system(path: Path, system: str) -> tuple[dict[str, tuple[int, np.ndarray]], dict[str, Any]]:
    """utt -> (n_frames, audio) of a system's ``vocode`` store, and its metadata."""
    store = Store(path, expect_stage="vocode")
    meta = store.meta_dict
    named = (meta.get("extra") or {}).get("system")
    if named is not None and named != system:
        raise StageError(f"{path}: holds system {named!r}, not {system!r}")
    if not len(store):
        return {}, meta
    return {u: (int(n), store.array("audio", i)) for i, (u, n) in enumerate(zip(store.utts, store.df["n_frames"]))}, meta


def _mean(values: Sequence[float]) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _json_number(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def run_evaluate(
    system: str,
    manifest_path: Path,
    reference_paths: Sequence[Path],
    system_audio: Path | None,
    eval_cfg: Mapping[str, Any],
    prosody_cfg: Mapping[str, Any],
    mel_cfg: Mapping[str, Any],
    out: Path,
    summary_out: Path,
    rejected_out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Score one system on the test split; writes the table, the summary and the rejected table.

    Args:
        system: ``ground_truth``, ``gt_vocoded`` or an experiment name.
        manifest_path: ``manifest.parquet`` (text, speaker, split of every utterance).
        reference_paths: every ``audio/{shard}.parquet`` (the ground truth).
        system_audio: the system's ``eval/{system}/audio.parquet``; None for ``ground_truth``.
        eval_cfg, prosody_cfg, mel_cfg: the config sections.
        out, summary_out, rejected_out: ``metrics.parquet``, ``summary.json``, ``metrics.rejected.parquet``.
        progress: progress bar.

    Returns:
        The summary (also written to ``summary_out``).
    """
    started = time.perf_counter()
    manifest = Store(manifest_path, expect_stage="manifest").df
    texts = [None if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in manifest["text"]]
    test = manifest[manifest["split"] == SPLIT]
    test_utts = list(test["utt"])
    speaker_of = dict(zip(test["utt"], test["speaker"]))
    text_of = dict(zip(manifest["utt"], texts))

    reference = _read_reference([Path(p) for p in reference_paths], set(test_utts))
    if system == GROUND_TRUTH:
        if system_audio is not None:
            raise StageError("system ground_truth is the decoded audio itself: give no --audio")
        sys_audio, sys_meta = reference, {}
    else:
        if system_audio is None:
            raise StageError(f"system {system!r} needs its audio store (eval/{system}/audio.parquet, stage vocode)")
        sys_audio, sys_meta = _read_system(Path(system_audio), system)

    tolerance = int(eval_cfg["max_length_mismatch"])
    rejected: list[tuple[str, str]] = []
    todo: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    for utt in test_utts:
        if utt not in reference:
            rejected.append((utt, "no ground-truth audio (rejected by decode)"))
            continue
        if utt not in sys_audio:
            rejected.append((utt, f"no audio from system {system} (not synthesised or vocoded)"))
            continue
        n_ref, ref = reference[utt]
        n_sys, deg = sys_audio[utt]
        problem = audio_problem(ref, n_ref)
        if problem:
            rejected.append((utt, f"ground truth: {problem}"))
            continue
        problem = audio_problem(deg, n_sys)
        if problem:
            rejected.append((utt, f"system {system}: {problem}"))
            continue
        if abs(n_sys - n_ref) > tolerance:
            rejected.append((utt, f"system has {n_sys} frames, ground truth {n_ref} "
                                  f"(more than evaluate.max_length_mismatch = {tolerance} apart)"))
            continue
        todo.append((utt, n_ref, ref, fit_length(np.asarray(deg, np.float32), n_ref, SAMPLES_PER_FRAME, pad="zero")))
    test_set = set(test_utts)
    for utt in sys_audio:
        if utt not in test_set:
            rejected.append((utt, f"not a {SPLIT}-split utterance of the manifest"))

    asr, asr_info = build_asr(eval_cfg, texts)
    scorer = SignalScorer(mel_cfg, prosody_cfg, eval_cfg["mcd_order"], eval_cfg["pesq"], eval_cfg["f0_silence_db"])
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    utts: list[str] = []
    asr_seconds = 0.0
    bar = tqdm(todo, desc=f"evaluate {system}", unit="utt", disable=not progress)
    for utt, n_frames, ref_audio, sys_audio_i in bar:
        ref_text = normalize_text(text_of.get(utt))
        hyp = ""
        if asr is not None:
            t = time.perf_counter()
            hyp = normalize_text(asr.transcribe(sys_audio_i))
            asr_seconds += time.perf_counter() - t
        ref_feat: Features = scorer.features(ref_audio, n_frames)
        sys_feat = ref_feat if system == GROUND_TRUTH else scorer.features(sys_audio_i, n_frames)
        signal = scorer.score(ref_feat, sys_feat)
        utts.append(utt)
        rows["speaker"].append(str(speaker_of[utt]))
        rows["ref"].append(ref_text)
        rows["hyp"].append(hyp)
        rows["wer"].append(word_errors(ref_text, hyp).rate if asr is not None else math.nan)
        rows["cer"].append(char_errors(ref_text, hyp).rate if asr is not None else math.nan)
        for k, v in signal.items():
            rows[k].append(v)
        rows["n_frames"].append(n_frames)

    cfg_hash = evaluate_hash(eval_cfg, prosody_cfg, mel_cfg)
    columns = {
        "speaker": pa.array(rows["speaker"], type=pa.string()),
        "ref": pa.array(rows["ref"], type=pa.string()),
        "hyp": pa.array(rows["hyp"], type=pa.string()),
        **{k: pa.array(rows[k], type=pa.float64()) for k in ("wer", "cer", *SIGNAL_METRICS)},
        "n_frames": pa.array(rows["n_frames"], type=pa.int32()),
    }
    extra = {"system": system, "split": SPLIT, "asr": asr_info["description"]}
    if sys_meta:
        extra["source"] = {k: sys_meta.get(k) for k in ("stage", "config_hash")} | {
            "vocoder": (sys_meta.get("extra") or {}).get("vocoder")}
    write_store(out, StoreMeta(STAGE, cfg_hash, extra=extra), utts, columns)
    write_rejected(rejected_out, STAGE, rejected)

    if asr is not None:
        wer, cer = corpus_rates(rows["ref"], rows["hyp"])
    else:
        wer = cer = math.nan
    # what a recogniser confined to the grammar scores on these references by guessing
    grammar = getattr(asr, "grammar", None)
    chance = (random_sentence_wer(grammar, rows["ref"], np.random.default_rng(CHANCE_SEED), CHANCE_DRAWS)
              if grammar is not None and rows["ref"] else math.nan)
    n = len(utts)
    definitions = dict(DEFINITIONS)
    definitions["mcd"] = definitions["mcd"].format(order=eval_cfg["mcd_order"])
    definitions["energy_mae"] = definitions["energy_mae"].format(energy=prosody_cfg["energy"])
    seconds = {"asr": asr_seconds, **dict(scorer.seconds)}
    summary: dict[str, Any] = {
        "system": system,
        "split": SPLIT,
        "n": n,
        "n_rejected": len(rejected),
        "wer": _json_number(wer),
        "cer": _json_number(cer),
        "chance_wer": _json_number(chance),
        **{k: _json_number(_mean(rows[k])) for k in SIGNAL_METRICS},
        "asr": asr_info["description"],
        "asr_details": asr_info,
        "nan_counts": {k: int(np.sum(~np.isfinite(np.asarray(rows[k], np.float64)))) for k in ("wer", "cer", *SIGNAL_METRICS)},
        "failures": dict(scorer.failures),
        "seconds_per_utt": {k: round(v / n, 5) for k, v in seconds.items()} if n else {},
        "seconds_total": round(time.perf_counter() - started, 2),
        "config_hash": cfg_hash,
        "definitions": definitions,
    }
    write_text_atomic(summary_out, json.dumps(summary, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return summary
