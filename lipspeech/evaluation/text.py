"""Transcript normalisation and word/character error rates (jiwer).

Reference and hypothesis go through the same :func:`normalize_text`, so case,
punctuation and spacing never count as errors:

* Unicode NFKC, lower case;
* every character that is not a letter, a digit, an apostrophe or white space
  becomes a space (so "f2," -> "f2", "set-up" -> "set up"); apostrophes are kept
  inside words ("don't") and dropped at word edges ('quoted');
* a token that is a single digit 0-9 is spelt out ("2" -> "two"), because GRID's
  transcripts spell digits while some recognisers (Whisper) write numerals;
* runs of white space collapse to one space, ends stripped.

WER = (S + D + I) / N over words; CER the same over characters of the
normalised text, spaces included (jiwer's definition). Corpus-level rates sum
the edit counts of all utterances and divide by the total reference length
(not the mean of per-utterance rates). An empty reference has no defined rate:
NaN for that utterance, left out of the corpus totals.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NOT_WORD = re.compile(r"[^\w\s']|_")
_EDGE_APOSTROPHE = re.compile(r"(?<!\w)'+|'+(?!\w)")


def _missing(text: Any) -> bool:
    """No transcript: None, or pandas' NaN for a missing value."""
    return text is None or (isinstance(text, float) and math.isnan(text))


def transcripts(column: Sequence[Any]) -> list[str | None]:
    """A manifest's ``text`` column as strings, None where there is no transcript (None or NaN)."""
    return [None if _missing(t) else str(t) for t in column]


def normalize_text(text: str | None) -> str:
    """Lower-case, punctuation-free, single-spaced text (see the module docstring)."""
    if _missing(text):
        return ""
    s = unicodedata.normalize("NFKC", str(text)).lower()
    s = _NOT_WORD.sub(" ", s)
    s = _EDGE_APOSTROPHE.sub(" ", s)
    words = [_DIGITS[int(w)] if len(w) == 1 and w.isdigit() and w.isascii() else w for w in s.split()]
    return " ".join(words)


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
