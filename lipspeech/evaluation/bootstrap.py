"""Seeded (paired) bootstrap over test utterances: 95 % intervals of corpus-level figures and of
the difference between two systems.

A figure is a function of per-utterance columns: the corpus-level WER is summed word edits over
summed reference words (:data:`RATIO_METRICS`), every other figure the mean over the utterances
where the metric is defined (NaN values are left out of each resample's mean, as they are left out
of ``summary.json``'s means). One resample draws ``n`` utterances with replacement from the ``n``
scored; the interval is the 2.5th and 97.5th percentile of the figure over the resamples
(percentile bootstrap, Efron & Tibshirani 1993). For a difference between two systems the *same*
draws are applied to both systems' values of the same utterances (paired: Koehn 2004's
significance test for MT, Bisani & Ney 2004's for ASR), so the variation between utterances,
which both systems share, cancels. A difference whose interval excludes 0 is called significant.

The draws depend only on the seed and ``n``: the same seed gives the same intervals.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: figure -> (numerator column, denominator column) of a ratio of sums
RATIO_METRICS: Mapping[str, tuple[str, str]] = {"wer": ("word_edits", "ref_words"), "cer": ("char_edits", "ref_chars")}
LEVEL = 0.95


def draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) utterance indices drawn with replacement; fixed by ``seed``."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def figure_samples(columns: Mapping[str, np.ndarray], metric: str, idx: np.ndarray) -> np.ndarray:
    """(R,) values of ``metric`` over the resamples ``idx`` (R, n) of the per-utterance ``columns``."""
    if metric in RATIO_METRICS:
        num, den = (np.asarray(columns[c], np.float64) for c in RATIO_METRICS[metric])
        total = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, num[idx].sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)
    values = np.asarray(columns[metric], np.float64)[idx]
    ok = np.isfinite(values)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(ok, values, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def figure(columns: Mapping[str, np.ndarray], metric: str) -> float:
    """The figure itself, on all utterances."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        return math.nan
    return float(figure_samples(columns, metric, np.arange(n)[None, :])[0])


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """The central ``level`` interval of the finite samples; None when there are none."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if not s.size:
        return None
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def intervals(columns: Mapping[str, np.ndarray], metrics: Sequence[str], resamples: int, seed: int,
              level: float = LEVEL) -> dict[str, tuple[float, float] | None]:
    """metric -> 95 % percentile-bootstrap interval of one system's figure."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        return {m: None for m in metrics}
    idx = draws(n, resamples, seed)
    return {m: percentile_interval(figure_samples(columns, m, idx), level) for m in metrics}


def paired_difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], metric: str, resamples: int,
                      seed: int, level: float = LEVEL) -> dict[str, object]:
    """Figure of ``b`` minus figure of ``a``, on the same ``n`` utterances (row i of ``a`` is row i of ``b``).

    Returns ``{"diff", "ci95", "significant"}``: the difference on all utterances, its paired
    bootstrap interval (None when undefined) and whether that interval excludes 0.
    """
    n = len(next(iter(a.values()))) if a else 0
    if n == 0:
        return {"diff": None, "ci95": None, "significant": False}
    idx = draws(n, resamples, seed)
    samples = figure_samples(b, metric, idx) - figure_samples(a, metric, idx)
    diff = figure(b, metric) - figure(a, metric)
    ci = percentile_interval(samples, level)
    return {"diff": diff if math.isfinite(diff) else None, "ci95": ci,
            "significant": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}
