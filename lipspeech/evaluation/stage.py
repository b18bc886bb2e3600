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
    absorbed by :func:`lipspeech.core.timing.fit_length`: zero-pad or trim the
    system's audio to the reference's ``T * 640`` samples). Rows of the
    system's store that are not test utterances are rejected too.

Metric families (``evaluate.metrics``)
    ``asr``: the recogniser's transcript, WER and CER; ``signal``: the intrusive metrics of
    :mod:`lipspeech.evaluation.metrics` against the ground truth; ``dnsmos``: the non-intrusive
    MOS predictors of :mod:`lipspeech.evaluation.dnsmos` on the system's audio alone;
    ``speaker``: GE2E cosine similarity (:mod:`lipspeech.evaluation.speaker`) to the ground truth
    of the same utterance (``speaker_sim``) and, as the floor, to the ground truth of the next
    test utterance (in id order, cyclically) spoken by a *different* speaker
    (``speaker_sim_other``). A family that does not run leaves its columns NaN.

Intervals
    Seeded percentile bootstrap over the scored utterances (:mod:`lipspeech.evaluation.bootstrap`,
    ``evaluate.bootstrap_resamples`` draws, ``evaluate.bootstrap_seed``): a 95 % interval of each
    corpus-level figure in ``summary.json`` (``ci95``). Paired differences between systems are
    the report's (they need two systems).

Outputs (``results/{corpus}/eval/{system}/``)
    ``metrics.parquet``: a store (stage ``evaluate``), one row per scored
    utterance: :data:`COLUMNS` after ``utt`` (``ref`` and ``hyp`` normalised by
    :func:`lipspeech.core.transcript.normalize_text`; ``word_edits``/``ref_words`` and
    ``char_edits``/``ref_chars`` are the counts behind ``wer``/``cer``).
    ``summary.json``: ``system, n, n_rejected, wer, cer`` (corpus level),
    the means of every other metric over utterances where it is defined, ``ci95`` (metric ->
    [low, high] or null), ``bootstrap``, ``metrics`` (the families run), ``asr`` (a description
    of the recogniser), and details (``asr_details``, ``nan_counts``, ``failures``,
    ``seconds_per_utt``, ``definitions``).
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

from lipspeech.core.config import RESERVED_SYSTEM_NAMES, config_hash
from lipspeech.core.settings import EvaluateConfig, ProsodyConfig
from lipspeech.core.shards import StageError, audio_problem
from lipspeech.core.store import Store, StoreMeta, write_rejected, write_store, write_text_atomic
from lipspeech.core.timing import SAMPLES_PER_FRAME, fit_length
from lipspeech.evaluation import bootstrap
from lipspeech.evaluation.asr import build_asr
from lipspeech.evaluation.dnsmos import DNSMOS
from lipspeech.evaluation.families import FIGURES, check_families
from lipspeech.evaluation.grammar import random_sentence_wer
from lipspeech.evaluation.metrics import Features, SignalScorer
from lipspeech.evaluation.pool import score_all
from lipspeech.evaluation.speaker import SpeakerScorer
from lipspeech.evaluation.text import char_errors, corpus_rates, normalize_text, transcripts, word_errors

STAGE = "evaluate"
GROUND_TRUTH, GT_VOCODED = RESERVED_SYSTEM_NAMES
SPLIT = "test"
#: seeds the random grammar sentences of the chance level (chance_wer in summary.json)
CHANCE_SEED = 20240101
CHANCE_DRAWS = 100

#: metrics.parquet columns after ``utt``
COUNT_COLUMNS = ("word_edits", "ref_words", "char_edits", "ref_chars")
COLUMNS = ("speaker", "ref", "hyp", *FIGURES, *COUNT_COLUMNS, "n_frames")

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
    "dnsmos_p808": "DNSMOS P.808 MOS (1-5) of the system's audio alone (no reference): the model_v8 network of the "
                   "speechmos wheel on a 120-band log-mel, window scores (9.01 s windows every 1 s, short "
                   "utterances tiled) averaged; mean over utterances",
    "dnsmos_sig": "DNSMOS P.835 speech-signal quality (1-5), sig_bak_ovr network + the published calibration "
                  "polynomial; same windows; mean over utterances",
    "dnsmos_bak": "DNSMOS P.835 background-noise quality (1-5), likewise",
    "dnsmos_ovrl": "DNSMOS P.835 overall quality (1-5), likewise",
    "speaker_sim": "cosine of GE2E embeddings (resemblyzer's pretrained encoder) of the system's utterance and the "
                   "ground truth of the same utterance; mean over utterances",
    "speaker_sim_other": "cosine of GE2E embeddings of the system's utterance and the ground truth of a different "
                         "speaker's test utterance (the next in id order, cyclically): the floor of speaker_sim",
    "ci95": "95 % percentile interval of the figure over {resamples} seeded bootstrap resamples of the scored "
            "utterances (seed {seed}); WER/CER resampled as summed edits over summed reference length",
}


def other_speaker_reference(utts: Sequence[str], speaker_of: Mapping[str, str]) -> dict[str, str]:
    """utt -> the next utterance of ``utts`` (sorted, cyclically) spoken by another speaker;
    utterances with no other speaker in ``utts`` are left out."""
    order = sorted(utts)
    out = {}
    for i, utt in enumerate(order):
        for j in range(1, len(order)):
            other = order[(i + j) % len(order)]
            if speaker_of[other] != speaker_of[utt]:
                out[utt] = other
                break
    return out


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


def _pair(system: str, test_utts: Sequence[str], reference: dict[str, tuple[int, np.ndarray]],
          sys_audio: dict[str, tuple[int, np.ndarray]], tolerance: int
          ) -> tuple[list[tuple[str, int, np.ndarray, np.ndarray]], list[tuple[str, str]]]:
    """(utt, n_frames, reference audio, system audio fitted to its length) of every scorable test
    utterance, and (utt, reason) of the others (and of system rows that are not test utterances)."""
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
    return todo, rejected


class _Scorers:
    """The configured metric families, timed; :meth:`score` gives one utterance's row values."""

    def __init__(self, system: str, evaluate: EvaluateConfig, prosody_cfg: Mapping[str, Any],
                 mel_cfg: Mapping[str, Any], texts: list[str | None], reference: dict[str, tuple[int, np.ndarray]],
                 speaker_of: Mapping[str, str]):
        self.system = system
        self.families = set(evaluate.metrics)
        self.asr, self.asr_info = (build_asr(evaluate, texts) if "asr" in self.families
                                   else (None, {"description": "none"}))
        self.signal = SignalScorer(mel_cfg, prosody_cfg, evaluate.mcd_order, evaluate.pesq, evaluate.f0_silence_db)
        # one onnxruntime thread: its scores then do not depend on the thread count (two threads moved
        # P.835's SIG/BAK by ~1e-7); the stage's threads are scoring processes (lipspeech.evaluation.pool)
        self.dnsmos = DNSMOS(threads=1) if "dnsmos" in self.families else None
        self.speaker = SpeakerScorer() if "speaker" in self.families else None
        # the floor's references: any usable ground truth of the test split, not only what this system scored
        self.ref_audio_of = {u: a for u, (n, a) in reference.items() if not audio_problem(a, n)}
        self.other_ref = (other_speaker_reference(list(self.ref_audio_of), speaker_of)
                          if self.speaker is not None else {})
        self.ref_embedding: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {"asr": 0.0, "dnsmos": 0.0, "speaker": 0.0}

    def _timed(self, name: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] += time.perf_counter() - t

    def _ref_embed(self, utt: str) -> np.ndarray:
        if utt not in self.ref_embedding:
            self.ref_embedding[utt] = self.speaker.embed(self.ref_audio_of[utt])
        return self.ref_embedding[utt]

    def _similarities(self, utt: str, audio: np.ndarray) -> tuple[float, float]:
        """(to the utterance's ground truth, to a different speaker's ground truth)"""
        emb = self._ref_embed(utt) if self.system == GROUND_TRUTH else self.speaker.embed(audio)
        other = self.other_ref.get(utt)
        return (self.speaker.similarity(emb, self._ref_embed(utt)),
                self.speaker.similarity(emb, self._ref_embed(other)) if other else math.nan)

    def score(self, utt: str, ref_text: str, n_frames: int, ref_audio: np.ndarray, sys_audio: np.ndarray
              ) -> dict[str, Any]:
        """Every metric column of one utterance (NaN where its family does not run)."""
        values: dict[str, Any] = dict.fromkeys(COLUMNS, math.nan)
        values["hyp"] = ""
        if self.asr is not None:
            values["hyp"] = normalize_text(self._timed("asr", self.asr.transcribe, sys_audio))
            words, chars = word_errors(ref_text, values["hyp"]), char_errors(ref_text, values["hyp"])
            values.update(wer=words.rate, cer=chars.rate, word_edits=words.errors, ref_words=words.length,
                          char_edits=chars.errors, ref_chars=chars.length)
        if "signal" in self.families:
            ref_feat: Features = self.signal.features(ref_audio, n_frames)
            sys_feat = ref_feat if self.system == GROUND_TRUTH else self.signal.features(sys_audio, n_frames)
            values.update(self.signal.score(ref_feat, sys_feat))
        if self.dnsmos is not None:
            values.update(self._timed("dnsmos", self.dnsmos, sys_audio))
        if self.speaker is not None:
            values["speaker_sim"], values["speaker_sim_other"] = self._timed("speaker", self._similarities, utt,
                                                                             sys_audio)
        return values


def _summary(system: str, rows: dict[str, list[Any]], n_rejected: int, scorers: _Scorers,
             evaluate: EvaluateConfig, prosody: ProsodyConfig, cfg_hash: str, started: float) -> dict[str, Any]:
    """summary.json's content (see the module docstring)."""
    asr = scorers.asr
    if asr is not None:
        wer, cer = corpus_rates(rows["ref"], rows["hyp"])
    else:
        wer = cer = math.nan
    # what a recogniser confined to the grammar scores on these references by guessing
    grammar = getattr(asr, "grammar", None)
    chance = (random_sentence_wer(grammar, rows["ref"], np.random.default_rng(CHANCE_SEED), CHANCE_DRAWS)
              if grammar is not None and rows["ref"] else math.nan)
    n = len(rows["ref"])
    definitions = dict(DEFINITIONS)
    definitions["mcd"] = definitions["mcd"].format(order=evaluate.mcd_order)
    definitions["energy_mae"] = definitions["energy_mae"].format(energy=prosody.energy)
    seconds = {**scorers.seconds, **scorers.signal.seconds}
    resamples, seed = int(evaluate.bootstrap_resamples), int(evaluate.bootstrap_seed)
    ci = bootstrap.intervals({k: np.asarray(rows[k], np.float64) for k in (*FIGURES, *COUNT_COLUMNS)},
                             FIGURES, resamples, seed)
    definitions["ci95"] = definitions["ci95"].format(resamples=resamples, seed=seed)
    return {
        "system": system,
        "split": SPLIT,
        "n": n,
        "n_rejected": n_rejected,
        "wer": _json_number(wer),
        "cer": _json_number(cer),
        "chance_wer": _json_number(chance),
        **{k: _json_number(_mean(rows[k])) for k in FIGURES if k not in ("wer", "cer")},
        "ci95": {k: None if v is None else [_json_number(v[0]), _json_number(v[1])] for k, v in ci.items()},
        "bootstrap": {"resamples": resamples, "seed": seed, "level": bootstrap.LEVEL},
        "metrics": list(evaluate.metrics),
        "asr": scorers.asr_info["description"],
        "asr_details": scorers.asr_info,
        "nan_counts": {k: int(np.sum(~np.isfinite(np.asarray(rows[k], np.float64)))) for k in FIGURES},
        "failures": dict(scorers.signal.failures),
        "seconds_per_utt": {k: round(v / n, 5) for k, v in seconds.items() if v} if n else {},
        "seconds_total": round(time.perf_counter() - started, 2),
        "config_hash": cfg_hash,
        "definitions": definitions,
    }


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
    threads: int = 1,
) -> dict[str, Any]:
    """Score one system on the test split; writes the table, the summary and the rejected table.

    Args:
        system: ``ground_truth``, ``gt_vocoded`` or an experiment name.
        manifest_path: ``manifest.parquet`` (text, speaker, split of every utterance).
        reference_paths: every ``audio/{shard}.parquet`` (the ground truth).
        system_audio: the system's ``eval/{system}/audio.parquet``; None for ``ground_truth``.
        eval_cfg, prosody_cfg, mel_cfg: the config sections (hashed into the store's metadata).
        out, summary_out, rejected_out: ``metrics.parquet``, ``summary.json``, ``metrics.rejected.parquet``.
        progress: progress bar.
        threads: processes that score the utterances (:mod:`lipspeech.evaluation.pool`; the same
            table for any number).

    Returns:
        The summary (also written to ``summary_out``).
    """
    started = time.perf_counter()
    evaluate = EvaluateConfig.from_section(eval_cfg)
    try:
        check_families(evaluate)
    except RuntimeError as exc:
        raise StageError(str(exc)) from None
    manifest = Store(manifest_path, expect_stage="manifest").df
    texts = transcripts(manifest["text"])
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
    todo, rejected = _pair(system, test_utts, reference, sys_audio, int(evaluate.max_length_mismatch))

    scorers = _Scorers(system, evaluate, prosody_cfg, mel_cfg, texts, reference, speaker_of)
    items = [(utt, normalize_text(text_of.get(utt)), n_frames, ref_audio, sys_audio_i)
             for utt, n_frames, ref_audio, sys_audio_i in todo]
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    utts = [item[0] for item in items]
    for (utt, ref_text, n_frames, _, _), values in zip(items, score_all(scorers, items, threads, progress,
                                                                        f"evaluate {system}")):
        values.update(speaker=str(speaker_of[utt]), ref=ref_text, n_frames=n_frames)
        for c in COLUMNS:
            rows[c].append(values[c])

    cfg_hash = evaluate_hash(eval_cfg, prosody_cfg, mel_cfg)
    columns = {
        "speaker": pa.array(rows["speaker"], type=pa.string()),
        "ref": pa.array(rows["ref"], type=pa.string()),
        "hyp": pa.array(rows["hyp"], type=pa.string()),
        **{k: pa.array(rows[k], type=pa.float64()) for k in (*FIGURES, *COUNT_COLUMNS)},
        "n_frames": pa.array(rows["n_frames"], type=pa.int32()),
    }
    extra = {"system": system, "split": SPLIT, "asr": scorers.asr_info["description"]}
    if sys_meta:
        extra["source"] = {k: sys_meta.get(k) for k in ("stage", "config_hash")} | {
            "vocoder": (sys_meta.get("extra") or {}).get("vocoder")}
    write_store(out, StoreMeta(STAGE, cfg_hash, extra=extra), utts, columns)
    write_rejected(rejected_out, STAGE, rejected)
    summary = _summary(system, rows, len(rejected), scorers, evaluate, ProsodyConfig.from_section(prosody_cfg),
                       cfg_hash, started)
    write_text_atomic(summary_out, json.dumps(summary, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return summary
