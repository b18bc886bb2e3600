"""The learning curve: WER (and DNSMOS) of a run's snapshots on a val subset (stage ``curve``).

Training with ``train.snapshot_every`` keeps the weights inference would use every N steps
(``models/{exp}/ckpt/snapshots/step_N.pt``). This stage puts a seeded choice of val
utterances through each snapshot, the configured vocoder and the evaluation's recogniser
(and DNSMOS P.808 when ``curve.dnsmos``), so a user sees where the figures that matter stop
improving, which the training losses alone do not show. With ``curve.temperatures``, the run's
``best.pt`` is also scored at each post-net temperature on the same utterances: the temperature
chosen on val, not on test. Written to ``eval/{exp}/curve.json``: one row per snapshot (``step``,
``wer``, ``cer``, ``dnsmos_p808``, ``n``), one per temperature, and what was measured and how.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lipspeech.core.settings import CurveConfig, EvaluateConfig, VocoderConfig
from lipspeech.core.shards import StageError
from lipspeech.core.store import write_text_atomic
from lipspeech.evaluation.asr import build_asr
from lipspeech.evaluation.text import corpus_rates, normalize_text, transcripts

__all__ = ["learning_curve", "snapshot_paths", "val_subset"]

_STEP = re.compile(r"^step_(\d+)\.pt$")


def snapshot_paths(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_N.pt`` in ``folder``, by step."""
    found = []
    for path in Path(folder).glob("step_*.pt"):
        m = _STEP.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def val_subset(utts: Sequence[str], n: int, seed: int) -> list[str]:
    """A seeded choice of ``n`` of ``utts`` (all when ``n`` is 0 or more than there are), in their order."""
    if n <= 0 or n >= len(utts):
        return list(utts)
    keep = set(np.random.default_rng(seed).choice(len(utts), size=n, replace=False).tolist())
    return [u for i, u in enumerate(utts) if i in keep]


def learning_curve(
    snapshots_dir: Path,
    manifest: Path,
    roi: Sequence[Path],
    curve_cfg: Mapping[str, Any] | CurveConfig,
    eval_cfg: Mapping[str, Any] | EvaluateConfig,
    vocoder_cfg: Mapping[str, Any] | VocoderConfig,
    mel_cfg: Mapping[str, Any],
    out: Path,
    vocoder_checkpoint: Optional[Path] = None,
    threads: int = 1,
    progress: bool = True,
    best: Optional[Path] = None,
) -> dict[str, Any]:
    """Score every snapshot in ``snapshots_dir`` (and ``best`` at each of ``curve.temperatures``) on the val
    subset; writes and returns ``curve.json``'s content."""
    from tqdm.auto import tqdm

    from lipspeech.features.audio import AudioConfig
    from lipspeech.training.bundle import load_model
    from lipspeech.training.stores import VIDEO_STORES, CorpusStores, StoreDataset
    from lipspeech.training.synthesis import synthesize
    from lipspeech.vocoder.api import load_vocoder

    curve = CurveConfig.from_section(curve_cfg)
    snaps = snapshot_paths(snapshots_dir)
    if not snaps:
        raise StageError(f"{snapshots_dir}: no snapshots (train with train.snapshot_every > 0)")
    corpus = CorpusStores(manifest, {"roi": list(roi)})
    texts = transcripts(corpus.manifest["text"])
    text_of = dict(zip(corpus.manifest["utt"], texts))
    asr, asr_info = build_asr(eval_cfg, texts)
    if asr is None:
        raise StageError("curve: evaluate.asr is none, so there is no WER to draw")
    dnsmos = None
    if curve.dnsmos:
        from lipspeech.evaluation.dnsmos import DNSMOS

        dnsmos = DNSMOS(threads=threads)
    vocoder = load_vocoder(vocoder_cfg, AudioConfig.from_section(mel_cfg), "cpu", vocoder_checkpoint)

    # one run's snapshots share its speakers, so the val items (and their references) are read once
    data = StoreDataset(corpus, "val", VIDEO_STORES, load_model(snaps[-1][1]).speakers)
    keep = set(val_subset(list(data.utts), int(curve.max_utterances), int(curve.seed)))
    items = [data[i] for i, u in enumerate(data.utts) if u in keep]
    if not items:
        raise StageError("curve: the val split has no utterance with mouth crops")
    refs = [normalize_text(text_of.get(it.utt)) for it in items]

    def score(bundle: Any, temperature: Optional[float]) -> dict[str, Any]:
        mels = synthesize(bundle.model, items, temperature=temperature)
        audio = vocoder.batch([m.post for m in mels])
        hyps = [normalize_text(asr.transcribe(a)) for a in audio]
        wer, cer = corpus_rates(refs, hyps)
        row = {"step": bundle.step, "n": len(items), "wer": wer, "cer": cer}
        if dnsmos is not None:
            row["dnsmos_p808"] = float(np.mean([dnsmos(a)["dnsmos_p808"] for a in audio]))
        print(f"curve: step {bundle.step}" + ("" if temperature is None else f", temperature {temperature:g}")
              + f": WER {wer:.3f} CER {cer:.3f}"
              + (f" DNSMOS P.808 {row['dnsmos_p808']:.2f}" if "dnsmos_p808" in row else ""), flush=True)
        return row

    rows = [score(load_model(path), curve.temperature)
            for _step, path in tqdm(snaps, desc="curve", unit="snapshot", disable=not progress)]
    temperatures = []
    if curve.temperatures and best is not None:
        best_bundle = load_model(best)
        temperatures = [{"temperature": float(t), **score(best_bundle, float(t))} for t in curve.temperatures]
    result = {"split": "val", "utterances": rows[0]["n"], "rows": rows, "asr": asr_info["description"],
              "vocoder": vocoder.describe(), "temperature": curve.temperature,
              "temperatures": temperatures}
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    return result
