"""Slot grammars for GRID-style corpora, built from the corpus's own transcripts.

A GRID sentence is six words, one per slot (command colour preposition letter
digit adverb). A speech recogniser told this structure can only answer with a
well-formed sentence, which is how the GRID literature scores WER. Rather than
hard-coding GRID's word lists, :func:`grammar_from_transcripts` takes the words
seen at each position of the corpus's transcripts (all splits: the vocabulary of
a closed-vocabulary corpus is a property of the corpus, not of a split), so the
same code serves SynthGRID, real GRID and any other fixed-form corpus.

When is a slot grammar used (``evaluate.grammar``)?
    ``grid``: always; every transcript must have the same number of words.
    ``none``: never (the recogniser's general language model).
    ``auto``: exactly when every transcript of the manifest, normalised, is a
    valid GRID sentence (six words, each from its slot's GRID vocabulary,
    :mod:`lipspeech.data.gridgrammar`). Equal length alone is not enough
    evidence of a closed vocabulary (a handful of free sentences can share a
    length), while GRID's own vocabulary is known; other fixed-form corpora opt
    in with ``grid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from lipspeech.data import gridgrammar
from lipspeech.evaluation.text import ErrorCounts, normalize_text, word_errors

GRAMMAR_MODES = ("auto", "grid", "none")


class GrammarError(ValueError):
    """The transcripts cannot make a slot grammar; the message says why in one line."""


@dataclass(frozen=True)
class SlotGrammar:
    """A fixed-length sentence grammar: one word from each slot, in order.

    Attributes:
        slots: per position, the words allowed there (sorted, distinct).
    """

    slots: tuple[tuple[str, ...], ...]

    @property
    def words(self) -> list[str]:
        """Every distinct word of the grammar, sorted."""
        return sorted({w for slot in self.slots for w in slot})

    @property
    def n_sentences(self) -> int:
        return int(np.prod([len(s) for s in self.slots], dtype=np.float64))

    def describe(self) -> str:
        sizes = "/".join(str(len(s)) for s in self.slots)
        return f"{len(self.slots)} slots of {sizes} words ({self.n_sentences} sentences)"

    def without(self, words: Iterable[str]) -> "SlotGrammar":
        """The grammar with ``words`` removed from every slot (GrammarError if a slot empties)."""
        drop = set(words)
        slots = tuple(tuple(w for w in slot if w not in drop) for slot in self.slots)
        empty = [i for i, s in enumerate(slots) if not s]
        if empty:
            raise GrammarError(f"slot {empty[0] + 1} has no word left once {sorted(drop)} are removed")
        return SlotGrammar(slots)

    def jsgf(self, name: str = "corpus") -> str:
        """The grammar in JSGF (what pocketsphinx compiles to a finite-state grammar).

        The public rule is not called ``<s>``: pocketsphinx reserves ``<s>``/``</s>``
        as sentence markers and a rule of that name never reaches its final state.
        """
        rules = [f"<slot{i}> = {' | '.join(slot)} ;" for i, slot in enumerate(self.slots)]
        sentence = " ".join(f"<slot{i}>" for i in range(len(self.slots)))
        return "\n".join(["#JSGF V1.0;", f"grammar {name};", *rules, f"public <sentence> = {sentence} ;", ""])

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` sentences uniform over the grammar (each slot drawn independently)."""
        picks = [rng.integers(0, len(slot), size=n) for slot in self.slots]
        return [" ".join(slot[p[i]] for slot, p in zip(self.slots, picks)) for i in range(n)]


def grammar_from_transcripts(texts: Iterable[str | None]) -> SlotGrammar:
    """Slot grammar of the words seen at each position of the (normalised) transcripts.

    Raises:
        GrammarError: no transcript, an empty one, or transcripts of different lengths.
    """
    sentences = [normalize_text(t).split() for t in texts]
    if not sentences:
        raise GrammarError("no transcripts to build a grammar from")
    lengths = sorted({len(s) for s in sentences})
    if lengths[0] == 0:
        raise GrammarError(f"{sum(1 for s in sentences if not s)} transcripts are empty")
    if len(lengths) > 1:
        raise GrammarError(f"transcripts have different word counts ({', '.join(map(str, lengths[:6]))}), "
                           "a slot grammar needs one length")
    slots = tuple(tuple(sorted({s[i] for s in sentences})) for i in range(lengths[0]))
    return SlotGrammar(slots)


def is_grid_sentence(text: str | None) -> bool:
    """True when the normalised text is a sentence of GRID's grammar."""
    words = normalize_text(text).split()
    return len(words) == len(gridgrammar.SLOTS) and all(
        w in gridgrammar.VOCAB[slot] for slot, w in zip(gridgrammar.SLOTS, words)
    )


def choose_grammar(mode: str, texts: Sequence[str | None]) -> tuple[SlotGrammar | None, str]:
    """The grammar ``evaluate.grammar`` asks for, and why (one line).

    Args:
        mode: ``auto``, ``grid`` or ``none`` (module docstring).
        texts: every transcript of the manifest (all splits).
    """
    if mode not in GRAMMAR_MODES:
        raise ValueError(f"grammar mode must be one of {GRAMMAR_MODES}, got {mode!r}")
    if mode == "none":
        return None, "grammar: none (configured)"
    if mode == "auto":
        bad = sum(1 for t in texts if not is_grid_sentence(t))
        if not texts or bad:
            why = "no transcripts" if not texts else f"{bad} of {len(texts)} transcripts are not GRID sentences"
            return None, f"grammar auto -> none ({why})"
        return grammar_from_transcripts(texts), f"grammar auto -> grid (all {len(texts)} transcripts are GRID sentences)"
    return grammar_from_transcripts(texts), f"grammar: grid (configured, from {len(texts)} transcripts)"


def random_sentence_wer(grammar: SlotGrammar, refs: Sequence[str], rng: np.random.Generator, draws: int = 1) -> float:
    """Corpus WER of sentences drawn at random from ``grammar`` against ``refs`` (chance level).

    Each reference is scored against ``draws`` independent random sentences.
    """
    total = ErrorCounts(0, 0)
    for _ in range(draws):
        for ref, hyp in zip(refs, grammar.sample(rng, len(refs))):
            total = total + word_errors(normalize_text(ref), hyp)
    return total.rate
