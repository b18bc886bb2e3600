"""Evaluation of synthesised speech: ASR (WER/CER), intelligibility and quality (STOI,
ESTOI, PESQ), spectral distance (MCD), prosody (F0, voicing, energy), non-intrusive
naturalness (DNSMOS), speaker similarity (GE2E), bootstrap intervals, and the report page.

Modules: :mod:`~lipspeech.evaluation.text` (WER/CER; the normalisation is :mod:`lipspeech.core.transcript`'s),
:mod:`~lipspeech.evaluation.grammar` (slot grammars from a corpus's transcripts),
:mod:`~lipspeech.evaluation.asr` (pocketsphinx, faster-whisper),
:mod:`~lipspeech.evaluation.metrics` (signal metrics),
:mod:`~lipspeech.evaluation.dnsmos` (DNSMOS P.808 / P.835),
:mod:`~lipspeech.evaluation.speaker` (GE2E speaker similarity),
:mod:`~lipspeech.evaluation.families` (the metric families of ``evaluate.metrics``),
:mod:`~lipspeech.evaluation.bootstrap` and :mod:`~lipspeech.evaluation.compare` (intervals,
paired differences, the gap to vocoded speech),
:mod:`~lipspeech.evaluation.stage` (the ``evaluate`` stage) and
:mod:`~lipspeech.evaluation.report` (report.html / report.md).
"""
