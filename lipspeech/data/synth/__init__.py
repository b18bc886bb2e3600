"""SynthGRID: a synthetic talking-face corpus in the GRID corpus's layout.

speech.py (espeak-ng via ctypes, phoneme/word timing), face.py (per-speaker face
preparation), render.py (visemes, coarticulation, mouth drawing, head motion),
corpus.py (the generator: :func:`generate_corpus`).
"""
from __future__ import annotations


def generate_corpus(cfg, out_dir, threads: int = 1, progress: bool = True) -> dict:
    """See :func:`lipspeech.data.synth.corpus.generate_corpus`."""
    from .corpus import generate_corpus as _gen
    return _gen(cfg, out_dir, threads=threads, progress=progress)


__all__ = ["generate_corpus"]
