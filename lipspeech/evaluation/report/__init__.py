"""The report stage: one self-contained HTML page and a Markdown summary per corpus.

Modules: :mod:`.columns` (the metrics and how rows are named), :mod:`.systems` (each system's
results), :mod:`.figures` (the examples' audio and plots), :mod:`.load` (everything gathered once),
:mod:`.tables` (cells shared by both pages), :mod:`.html` (the page, from the template files in
``lipspeech/resources/report/``), :mod:`.markdown` (report.md and report.json), :mod:`.units`
(the unit-analysis section).

Inputs (under ``results/{corpus}/``)
    ``eval/{system}/summary.json`` and ``eval/{system}/metrics.parquet`` of every
    system (stage evaluate), ``eval/{system}/audio.parquet`` of every vocoded
    system (stage vocode), and for the ground truth the test split's
    ``audio/``, ``mel/`` and ``prosody/`` shards and ``manifest.parquet``.
Systems (the rows of the metrics table, in this order)
    ``ground_truth`` (the decoded audio itself: the ceiling every metric can
    reach with this ASR), ``gt_vocoded`` (ground-truth mels through the
    vocoder: the ceiling of any model that predicts mels for this vocoder),
    then every experiment of the config.
Outputs
    ``report.html``: header, metrics table, what each row is, WER per speaker,
    and for ``report.n_examples`` test utterances each system's audio player
    and ASR transcript beside the reference text, with one PNG of the mel
    spectrograms (ground truth, then each system) and the F0 contours. Audio
    is embedded as 16-bit PCM WAV and images as PNG, both base64 ``data:``
    URIs; the CSS is inline and nothing is fetched from anywhere, so the file
    can be mailed or archived as it is. A few lines of inline JavaScript record
    on each ``<audio>`` its decoded duration (``data-duration``) and on each
    ``<img>`` its decoded width (``data-natural-width``) once the page has
    loaded, so a headless browser can confirm the players and images work.
    ``report.md``: the same metrics table, what each row is, WER per speaker,
    the examples' transcripts, the report config, its hash and the git commit.
Example F0
    Ground truth: the prosody store (25 Hz log-F0 and voiced mask). Systems: the
    same :func:`lipspeech.features.prosody.utterance_prosody` on their audio
    with the same ``prosody`` config, so both curves have one definition.
Example mels
    Ground truth: the mel store. Systems: the mel of the waveform one hears
    (:class:`lipspeech.features.audio.MelSpectrogram`, the targets' definition),
    not the model's predicted mel, so vocoder artefacts show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lipspeech.core.store import write_text_atomic
from lipspeech.evaluation.report.columns import DETAIL, GROUND_TRUTH, GT_VOCODED, HEADLINE, METRICS
from lipspeech.evaluation.report.curves import load_curves
from lipspeech.evaluation.report.figures import data_uri, wav_bytes
from lipspeech.evaluation.report.html import render_html
from lipspeech.evaluation.report.inputs import ReportInputs, SystemFiles
from lipspeech.evaluation.report.load import ReportData, gather
from lipspeech.evaluation.report.markdown import render_markdown, report_numbers
from lipspeech.evaluation.report.systems import SystemResult, select_examples, speaker_wer
from lipspeech.evaluation.report.units import load_units_analysis

__all__ = [
    "DETAIL", "GROUND_TRUTH", "GT_VOCODED", "HEADLINE", "METRICS", "ReportData", "ReportInputs", "SystemFiles",
    "SystemResult", "build_report",
    "data_uri", "gather", "render_html", "render_markdown", "report_numbers", "select_examples", "speaker_wer",
    "wav_bytes",
]


def build_report(
    inputs: ReportInputs | str | Path, cfg: Mapping[str, Any], html_out: Path, md_out: Path,
    systems: Optional[Sequence[str]] = None, progress: bool = False, json_out: Optional[Path] = None,
) -> ReportData:
    """Read the inputs, write report.html, report.md and (``json_out``) report.json atomically;
    returns what was shown. ``inputs``: the files (:class:`ReportInputs`), or a ``results/{corpus}``
    folder read in the workflow's layout."""
    if not isinstance(inputs, ReportInputs):
        names = list(systems) if systems else [GROUND_TRUTH, GT_VOCODED, *(e["name"] for e in cfg.get("experiments", []))]
        inputs = ReportInputs.from_results(inputs, names)
    data = gather(inputs, cfg, systems, progress=progress)
    if inputs.units_analysis is not None:
        data.units = load_units_analysis(inputs.units_analysis)
    data.curves = load_curves(inputs.curves)
    write_text_atomic(html_out, render_html(data))
    write_text_atomic(md_out, render_markdown(data))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report_numbers(data), indent=1, allow_nan=False) + "\n")
    return data
