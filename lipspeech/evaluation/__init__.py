"""Evaluation of synthesised speech: ASR (WER/CER), intelligibility and quality (STOI,
ESTOI, PESQ), spectral distance (MCD) and prosody (F0, voicing, energy), and the report page.

Modules: :mod:`~lipspeech.evaluation.text` (normalisation, WER/CER),
:mod:`~lipspeech.evaluation.grammar` (slot grammars from a corpus's transcripts),
:mod:`~lipspeech.evaluation.asr` (pocketsphinx, faster-whisper),
:mod:`~lipspeech.evaluation.metrics` (signal metrics),
:mod:`~lipspeech.evaluation.stage` (the ``evaluate`` stage) and
:mod:`~lipspeech.evaluation.report` (report.html / report.md).
"""
