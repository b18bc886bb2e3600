"""Comparisons between evaluated systems: the DNSMOS gap to vocoded speech and every experiment's
difference to the first (the full model), each with a paired bootstrap 95 % interval.

Both are paired over the test utterances the two systems have in common (each system's
``metrics.parquet``), with the draws of :mod:`lipspeech.evaluation.bootstrap` (seed and count from
the ``evaluate`` section), so the report's significance marks are deterministic for a seed.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lipspeech.evaluation import bootstrap
from lipspeech.evaluation.families import FIGURES

#: the paper's headline "gap to vocoded speech", measured by the DNSMOS predictors
GAP_METRICS = ("dnsmos_p808", "dnsmos_ovrl")


def utterance_columns(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per-utterance columns the figures are computed from, indexed by utt.

    Tables written before the evaluate stage stored edit counts get them back from the rate and
    the reference text (words: split on spaces; characters: the normalised text's length).
    """
    df = metrics.copy()
    if "utt" in df.columns:
        df = df.set_index("utt", drop=False)
    ref = df["ref"].fillna("").astype(str) if "ref" in df.columns else pd.Series("", index=df.index)
    if "ref_words" not in df.columns:
        df["ref_words"] = ref.str.split().str.len().astype(float)
        df["word_edits"] = pd.to_numeric(df.get("wer"), errors="coerce") * df["ref_words"]
    if "ref_chars" not in df.columns:
        df["ref_chars"] = ref.str.len().astype(float)
        df["char_edits"] = pd.to_numeric(df.get("cer"), errors="coerce") * df["ref_chars"]
    for col in FIGURES:
        if col not in df.columns:
            df[col] = np.nan
    return df


def _columns(df: pd.DataFrame, utts: Sequence[str]) -> dict[str, np.ndarray]:
    cols = (*FIGURES, "word_edits", "ref_words", "char_edits", "ref_chars")
    return {c: pd.to_numeric(df.loc[list(utts), c], errors="coerce").to_numpy(np.float64) for c in cols}


def paired(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str], resamples: int, seed: int) -> dict[str, Any]:
    """metric -> ``{"diff", "ci95", "significant", "n"}`` of system ``b`` minus system ``a``
    (tables from :func:`utterance_columns`), over their common utterances."""
    common = sorted(set(a.index) & set(b.index))
    ca, cb = _columns(a, common), _columns(b, common)
    out = {}
    for m in metrics:
        res = bootstrap.paired_difference(ca, cb, m, resamples, seed) if common else \
            {"diff": None, "ci95": None, "significant": False}
        out[m] = {**res, "n": len(common)}
    return out


def compare_systems(tables: Mapping[str, pd.DataFrame], experiments: Sequence[str], vocoded: str | None,
                    resamples: int, seed: int) -> dict[str, Any]:
    """The comparisons of the report.

    Args:
        tables: system -> its metrics table (any columns of ``metrics.parquet``).
        experiments: experiment names, the full model first (the baseline of the differences).
        vocoded: the ground-truth-mels-through-the-vocoder system (``gt_vocoded``), if evaluated.
        resamples, seed: the bootstrap.

    Returns:
        ``{"baseline", "gap_to_vocoded": {exp: {metric: ...}}, "vs_baseline": {exp: {metric: ...}}}``;
        each entry as :func:`paired` gives it (``diff`` = experiment minus the other system).
    """
    cols = {name: utterance_columns(t) for name, t in tables.items() if t is not None}
    exps = [e for e in experiments if e in cols]
    baseline = exps[0] if exps else None
    gap = {e: paired(cols[vocoded], cols[e], GAP_METRICS, resamples, seed) for e in exps
           if vocoded is not None and vocoded in cols}
    diffs = {e: paired(cols[baseline], cols[e], FIGURES, resamples, seed) for e in exps[1:]}
    return {"baseline": baseline, "gap_to_vocoded": gap, "vs_baseline": diffs}
