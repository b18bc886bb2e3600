"""Transcript normalisation: one definition for the corpus readers and the scoring.

:func:`normalize_text` is how a transcript is compared: a corpus reader whose
transcripts come in another style (LRS3's upper-case ``Text:`` lines) stores them
normalised, and the evaluation puts reference and hypothesis through it again, so
case, punctuation and spacing never count as errors:

* Unicode NFKC, lower case;
* every character that is not a letter, a digit, an apostrophe or white space
  becomes a space (so "f2," -> "f2", "set-up" -> "set up"); apostrophes are kept
  inside words ("don't") and dropped at word edges ('quoted');
* a token that is a single digit 0-9 is spelt out ("2" -> "two"), because GRID's
  transcripts spell digits while some recognisers (Whisper) write numerals;
* runs of white space collapse to one space, ends stripped.

It is idempotent: normalised text comes back unchanged. It sits in the base layer
because the data readers (below the evaluation) use it too.
"""

from __future__ import annotations

import math
import re
import unicodedata
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
