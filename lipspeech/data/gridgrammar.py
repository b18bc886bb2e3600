"""The GRID corpus sentence grammar and its utterance ids.

A GRID sentence has six words, one from each slot:
``command colour preposition letter digit adverb`` (e.g. "bin blue at f two now").
The corpus names each utterance by a six-character id made of the first letter of
each word, except that the letter slot contributes the letter itself and the digit
slot its numeral (zero is written ``z``): "bin blue at f two now" -> ``bbaf2n``.
"""
from __future__ import annotations

import numpy as np

SLOTS = ("command", "colour", "preposition", "letter", "digit", "adverb")

VOCAB: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple(c for c in "abcdefghijklmnopqrstuvxyz"),  # no 'w' in GRID
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}

_DIGIT_CHAR = {w: ("z" if i == 0 else str(i)) for i, w in enumerate(VOCAB["digit"])}
_CHAR_DIGIT = {c: w for w, c in _DIGIT_CHAR.items()}

N_SENTENCES = int(np.prod([len(VOCAB[s]) for s in SLOTS]))


def all_words() -> list[str]:
    """Every word of the grammar, slot by slot (51 words)."""
    return [w for s in SLOTS for w in VOCAB[s]]


def _check(words) -> list[str]:
    words = [str(w).lower() for w in words]
    if len(words) != len(SLOTS):
        raise ValueError(f"a GRID sentence has 6 words, got {len(words)}: {words}")
    for slot, w in zip(SLOTS, words):
        if w not in VOCAB[slot]:
            raise ValueError(f"{w!r} is not a GRID {slot}")
    return words


def utt_id(words) -> str:
    """GRID utterance id of a 6-word sentence: 'bin blue at f two now' -> 'bbaf2n'."""
    if isinstance(words, str):
        words = words.split()
    c, col, prep, let, dig, adv = _check(words)
    return c[0] + col[0] + prep[0] + let + _DIGIT_CHAR[dig] + adv[0]


def words_from_utt_id(uid: str) -> list[str]:
    """Inverse of :func:`utt_id`: 'swwzzp' -> ['set', 'white', 'with', 'z', 'zero', 'please']."""
    uid = str(uid).strip().lower()
    if len(uid) != 6:
        raise ValueError(f"GRID utterance id must have 6 characters: {uid!r}")
    out = []
    for slot, ch in zip(SLOTS, uid):
        if slot == "letter":
            cand = [w for w in VOCAB[slot] if w == ch]
        elif slot == "digit":
            cand = [_CHAR_DIGIT[ch]] if ch in _CHAR_DIGIT else []
        else:
            cand = [w for w in VOCAB[slot] if w[0] == ch]
        if len(cand) != 1:
            raise ValueError(f"bad {slot} character {ch!r} in GRID id {uid!r}")
        out.append(cand[0])
    return out


def sentence_from_index(i: int) -> list[str]:
    """The i-th sentence (0 <= i < N_SENTENCES) in mixed-radix slot order."""
    if not 0 <= i < N_SENTENCES:
        raise IndexError(i)
    out = []
    for slot in reversed(SLOTS):
        n = len(VOCAB[slot])
        out.append(VOCAB[slot][i % n])
        i //= n
    return out[::-1]


def sample_sentences(rng: np.random.Generator, n: int) -> list[list[str]]:
    """n distinct random GRID sentences (uniform over the 64000 of the grammar)."""
    if not 0 <= n <= N_SENTENCES:
        raise ValueError(f"can draw at most {N_SENTENCES} distinct sentences, asked {n}")
    idx = rng.choice(N_SENTENCES, size=n, replace=False)
    return [sentence_from_index(int(i)) for i in idx]
