"""Word and character error rates (jiwer) of normalised transcripts.

Reference and hypothesis go through the same
:func:`lipspeech.core.transcript.normalize_text` (re-exported here with
:func:`~lipspeech.core.transcript.transcripts`; it lives in the base layer because the
corpus readers normalise with it too), so case, punctuation and spacing never
count as errors.

WER = (S + D + I) / N over words; CER the same over characters of the
normalised text, spaces included (jiwer's definition). Corpus-level rates sum
the edit counts of all utterances and divide by the total reference length
(not the mean of per-utterance rates). An empty reference has no defined rate:
NaN for that utterance, left out of the corpus totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from lipspeech.core.transcript import normalize_text, transcripts

__all__ = ["ErrorCounts", "char_errors", "corpus_rates", "normalize_text", "transcripts", "word_errors"]


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one or more utterances: errors = S + D + I, length = reference tokens."""

    errors: int
    length: int

    @property
    def rate(self) -> float:
        return self.errors / self.length if self.length else math.nan

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.errors + other.errors, self.length + other.length)


def word_errors(ref: str, hyp: str) -> ErrorCounts:
    """Word edit counts of one normalised pair (length 0 for an empty reference)."""
    import jiwer

    if not ref.split():
        return ErrorCounts(0, 0)
    out = jiwer.process_words(ref, hyp)
    return ErrorCounts(out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits)


def char_errors(ref: str, hyp: str) -> ErrorCounts:
    """Character edit counts of one normalised pair (spaces are characters)."""
    import jiwer

    if not ref:
        return ErrorCounts(0, 0)
    out = jiwer.process_characters(ref, hyp)
    return ErrorCounts(out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits)


def corpus_rates(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, float]:
    """Corpus-level (WER, CER) of normalised pairs: summed edits / summed reference length."""
    w, c = ErrorCounts(0, 0), ErrorCounts(0, 0)
    for r, h in zip(refs, hyps, strict=True):
        w = w + word_errors(r, h)
        c = c + char_errors(r, h)
    return w.rate, c.rate
