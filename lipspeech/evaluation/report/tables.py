"""Table cells and lines shared by the HTML page and the Markdown summary.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Optional

from lipspeech.evaluation.report.columns import (
    DETAIL,
    GAP_PREFIX,
    GROUND_TRUTH,
    HEADLINE,
    METRIC_BY_KEY,
    MISSING,
    Metric,
    is_number,
)
from lipspeech.evaluation.report.load import ReportData
from lipspeech.evaluation.report.systems import SystemResult


def escape(text: Any) -> str:
    """``text`` as HTML text or attribute value."""
    return html.escape(str(text), quote=True)


def fmt_pct(value: float) -> str:
    """A rate as a percentage with two decimals (MISSING when not a number)."""
    return format(value * 100, ".2f") if is_number(value) else MISSING


def chance_line(data: ReportData) -> Optional[str]:
    """The chance level of the WER column, when the ASR decodes a grammar."""
    if not is_number(data.chance_wer):
        return None
    return (f"chance level: a random sentence of the ASR's grammar scores WER {fmt_pct(data.chance_wer)}% "
            "against these references")


def cell_parts(s: SystemResult, m: Metric, best: Mapping[str, set[str]]) -> tuple[str, str, bool, bool]:
    """(value text, interval text, best experiment?, significantly different from the full model?)."""
    return (m.format(s.figures.get(m.key)), m.interval(s.ci95.get(m.key), signed=m.key.startswith(GAP_PREFIX)),
            s.name in best.get(m.key, ()), m.key in s.significant)


def difference_rows(data: ReportData) -> tuple[list[SystemResult], list[tuple[Metric, list[tuple[str, str, bool]]]]]:
    """The differences table: (experiments after the full model, [(metric, [(difference, interval,
    significant) per experiment])]); empty when there is one experiment or none."""
    diffs = data.comparison.get("vs_baseline") or {}
    exps = [s for s in data.systems if s.name in diffs]
    rows = []
    for key in (*HEADLINE, *DETAIL):
        if key.startswith(GAP_PREFIX):
            continue
        m = METRIC_BY_KEY[key]
        rows.append((m, [(m.format(diffs[s.name][key]["diff"], signed=True),
                          m.interval(diffs[s.name][key]["ci95"], signed=True),
                          bool(diffs[s.name][key]["significant"])) for s in exps]))
    return exps, rows


def floor_line(data: ReportData) -> Optional[str]:
    """The speaker-similarity floor: the ground truth against a different speaker's ground truth."""
    gt = next((s for s in data.systems if s.name == GROUND_TRUTH), None)
    if gt is None or not is_number(gt.figures.get("speaker_sim_other")):
        return None
    m = Metric("speaker_sim_other", "", "higher", 1.0, ".3f")
    ci = m.interval(gt.ci95.get("speaker_sim_other"))
    return (f"speaker sim floor: the ground truth against a different speaker's ground truth scores "
            f"{m.format(gt.figures['speaker_sim_other'])}{' ' + ci if ci else ''}")


def baseline_label(data: ReportData) -> Optional[str]:
    name = data.comparison.get("baseline")
    return next((s.label for s in data.systems if s.name == name), None)


def speakers_table(data: ReportData, fmt_cell, header) -> list[list[str]]:
    """Rows (speaker, n, WER per system) shared by the HTML and the Markdown page."""
    names = [s for s in data.systems if s.name in data.speakers]
    speakers = sorted({spk for s in names for spk in data.speakers[s.name]})
    table = [header(["speaker", "n", *[s.label for s in names]])]
    for spk in speakers:
        n = max((data.speakers[s.name].get(spk, (0.0, 0))[1] for s in names), default=0)
        table.append([spk, str(n), *[fmt_cell(data.speakers[s.name].get(spk, (float("nan"), 0))[0]) for s in names]])
    return table
