"""Phone alignments: which phone is spoken when, for measuring how phonetic units are.

Two sources, both giving ``(phones, starts, ends)`` in seconds of the utterance:

- SynthGRID: the generator writes every phoneme's start and end (espeak-ng's own timing,
  shifted by the leading silence) to ``raw/{speaker}/mouth/{name}.npz``
  (:func:`synthgrid_alignment`).
- Any other corpus: a folder of Praat TextGrid files, as the Montreal Forced Aligner writes
  them (``{folder}/{speaker}/{name}.TextGrid``, or flat ``{folder}/{name}.TextGrid``), read with
  ``praatio`` from the tier that holds the phones (:func:`textgrid_alignment`).

Labels are normalised by :func:`normalise_phone`: silences and pauses of either source (MFA's
empty intervals, ``sil``, ``sp``, ``spn``; espeak-ng's ``_``, ``_:``, ``_!``) become
:data:`lipspeech.features.unit_quality.SILENCE`, and ARPAbet stress digits are dropped when asked
(``AH0`` and ``AH1`` are one phone, as in the HuBERT paper's phone set).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from lipspeech.features.unit_quality import SILENCE

PAUSES = {"", "sil", "sp", "spn", "<eps>", "<sil>", "silence"}
_STRESS = re.compile(r"(?<=[A-Za-z])[012]$")

Alignment = tuple[list[str], np.ndarray, np.ndarray]


class AlignmentError(ValueError):
    """An alignment that cannot be read or used (one line, for the rejected table)."""


def normalise_phone(label: str, strip_stress: bool) -> str:
    """One phone label in the common form (module docstring)."""
    name = str(label).strip()
    if name.lower() in PAUSES or name.startswith("_"):
        return SILENCE
    return _STRESS.sub("", name) if strip_stress else name


def _checked(phones: Sequence[str], starts: Sequence[float], ends: Sequence[float], strip_stress: bool,
             where: str) -> Alignment:
    starts_a = np.asarray(starts, dtype=np.float64)
    ends_a = np.asarray(ends, dtype=np.float64)
    if not (len(phones) == len(starts_a) == len(ends_a)):
        raise AlignmentError(f"{where}: {len(phones)} phones but {len(starts_a)} starts and {len(ends_a)} ends")
    if len(phones) and (not np.all(np.isfinite(starts_a)) or np.any(ends_a < starts_a)):
        raise AlignmentError(f"{where}: phone intervals with negative length or non-finite times")
    labels = [normalise_phone(p, strip_stress) for p in phones]
    if all(label == SILENCE for label in labels):
        raise AlignmentError(f"{where}: no phones, only silence")
    return labels, starts_a, ends_a


def synthgrid_alignment(raw_dir: str | Path, speaker: str, name: str, strip_stress: bool) -> Alignment:
    """The SynthGRID generator's phoneme timing of one utterance (video time, seconds)."""
    path = Path(raw_dir) / speaker / "mouth" / f"{name}.npz"
    if not path.is_file():
        raise AlignmentError(f"no generator timing {path}")
    with np.load(path) as truth:
        return _checked([str(p) for p in truth["phonemes"]], truth["phoneme_start"], truth["phoneme_end"],
                        strip_stress, path.name)


def find_textgrid(folder: str | Path, speaker: str, name: str) -> Path | None:
    """``{folder}/{speaker}/{name}.TextGrid`` (MFA's layout), else ``{folder}/{name}.TextGrid``."""
    folder = Path(folder)
    for path in (folder / speaker / f"{name}.TextGrid", folder / f"{name}.TextGrid"):
        if path.is_file():
            return path
    return None


def textgrid_alignment(path: str | Path, tier: str, strip_stress: bool) -> Alignment:
    """The intervals of one tier of a TextGrid file (praatio reads long and short formats)."""
    try:
        from praatio import textgrid
    except ImportError as exc:
        raise AlignmentError("reading TextGrid alignments needs the praatio package (pip install praatio)") from exc
    path = Path(path)
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    except Exception as exc:  # praatio raises plain Exceptions/ValueErrors of many kinds on malformed files
        raise AlignmentError(f"{path.name}: not a readable TextGrid ({type(exc).__name__}: {exc})") from exc
    if tier not in grid.tierNames:
        raise AlignmentError(f"{path.name}: no tier {tier!r} (tiers: {', '.join(grid.tierNames)})")
    entries = grid.getTier(tier).entries
    if not entries:
        raise AlignmentError(f"{path.name}: tier {tier!r} is empty")
    if len(entries[0]) != 3:
        raise AlignmentError(f"{path.name}: tier {tier!r} is a point tier, phones need intervals")
    return _checked([e[2] for e in entries], [e[0] for e in entries], [e[1] for e in entries], strip_stress,
                    path.name)
