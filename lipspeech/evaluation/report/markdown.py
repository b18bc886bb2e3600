"""report.md and report.json: the tables as Markdown and as numbers.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from lipspeech.evaluation.compare import GAP_METRICS
from lipspeech.evaluation.families import FIGURES
from lipspeech.evaluation.report.columns import (
    DETAIL,
    DIFF_LEGEND,
    GAP_PREFIX,
    HEADLINE,
    LEGEND,
    METRIC_BY_KEY,
    METRIC_NOTES,
    MISSING,
    is_number,
)
from lipspeech.evaluation.report.curves import curves_markdown, curves_numbers
from lipspeech.evaluation.report.load import ReportData
from lipspeech.evaluation.report.systems import best_rows
from lipspeech.evaluation.report.tables import (
    baseline_label,
    cell_parts,
    chance_line,
    difference_rows,
    floor_line,
    fmt_pct,
    speakers_table,
)
from lipspeech.evaluation.report.units import units_markdown, units_numbers


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    head, *body = rows
    sep = ["---" if i < align_right_from else "---:" for i in range(len(head))]
    lines = [head, sep, *body]
    return "\n".join("| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines)


def _table_md(data: ReportData, keys: Sequence[str]) -> str:
    best = best_rows(data.systems)
    metrics = [METRIC_BY_KEY[k] for k in keys]
    rows = [["system", "n", *[m.header for m in metrics]]]
    for s in data.systems:
        n = s.summary.get("n", len(s.metrics) if s.metrics is not None else None)
        cells = []
        for m in metrics:
            value, ci, is_best, sig = cell_parts(s, m, best)
            text = (f"**{value}**" if is_best else value) + ("*" if sig else "")
            cells.append(f"{text} {ci}" if ci else text)
        rows.append([s.label, str(n if n is not None else MISSING), *cells])
    return _md_table(rows)


def _differences_md(data: ReportData) -> list[str]:
    exps, rows = difference_rows(data)
    if not exps:
        return []
    table = [["metric", *[s.label for s in exps]]]
    for m, cells in rows:
        table.append([m.header, *[(f"**{d}***" if sig else d) + (f" {ci}" if ci else "") for d, ci, sig in cells]])
    return ["", f"## Differences to the full model: {baseline_label(data)}", "", DIFF_LEGEND.format(**data.bootstrap),
            "", _md_table(table)]


def render_markdown(data: ReportData) -> str:
    """The Markdown summary: metrics tables, differences, rows, WER per speaker, example transcripts, config."""
    chance = chance_line(data)
    floor = floor_line(data)
    lines = [
        f"# lipspeech report: {data.corpus}", "",
        f"- test utterances: {data.n_test} ({data.n_speakers} speakers)",
        f"- ASR: {'; '.join(data.asr) or MISSING}",
        f"- lipspeech {data.version}, git commit `{data.git}`",
        f"- generated {data.date}; audio players and plots: report.html", "",
        "## Metrics", "", _table_md(data, HEADLINE), "",
        LEGEND.format(**data.bootstrap) + (f" The {chance}." if chance else "") + (f" The {floor}." if floor else ""),
        "", "Signal, prosody and DNSMOS components:", "", _table_md(data, DETAIL),
        *_differences_md(data), *(units_markdown(data.units, _md_table) if data.units else []),
        *(["", *curves_markdown(data.curves)] if data.curves else []), "",
        "## What each row is", "",
    ]
    for s in data.systems:
        commit = data.model_commits.get(s.name)
        lines.append(f"- **{s.label}**: {s.description}." + (f" Trained at commit `{commit[:12]}`." if commit else ""))
    lines += ["", "Columns:", ""]
    lines += [f"- **{m.label}** {m.arrow}: {METRIC_NOTES[m.key]}" for m in (METRIC_BY_KEY[k] for k in (*HEADLINE, *DETAIL))]
    sp_rows = speakers_table(data, fmt_pct, lambda h: h)
    if len(sp_rows) > 1:
        lines += ["", "## WER per speaker (%)", "", _md_table(sp_rows)]
    if data.examples:
        lines += ["", "## Examples (ASR transcripts)", ""]
        for ex in data.examples:
            lines += [f"### {ex.utt} (speaker {ex.speaker})", "", f"- reference: {ex.text}"]
            for t in ex.tracks:
                wer = f"WER {fmt_pct(t.wer)}%" if t.wer is not None else f"WER {MISSING}"
                lines.append(f"- {t.label}: {t.hyp if t.hyp is not None else MISSING} ({wer})")
            lines.append("")
    if data.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in data.notes]
    lines += ["", "## Configuration", "",
              f"report config hash `{data.cfg_hash}` (report, mel and prosody sections):", "",
              "```json", json.dumps(data.report.as_dict(), indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def report_numbers(data: ReportData) -> dict[str, Any]:
    """The tables as numbers (report.json): every system's figures and intervals, the gaps to vocoded
    speech and the differences to the full model, with their intervals and significance."""
    def number(v: Any) -> Any:
        return float(v) if is_number(v) else None

    def interval(ci: Any) -> Any:
        return [number(ci[0]), number(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None

    systems = []
    for s in data.systems:
        keys = [k for k in (*FIGURES, *(GAP_PREFIX + g for g in GAP_METRICS)) if k in s.figures]
        systems.append({"name": s.name, "label": s.label, "kind": s.kind, "n": s.summary.get("n"),
                        "figures": {k: number(s.figures[k]) for k in keys},
                        "ci95": {k: interval(s.ci95.get(k)) for k in keys}})
    return {"corpus": data.corpus, "n_test": data.n_test, "bootstrap": data.bootstrap,
            "baseline": data.comparison.get("baseline"), "systems": systems,
            "gap_to_vocoded": data.comparison.get("gap_to_vocoded", {}),
            "vs_baseline": data.comparison.get("vs_baseline", {}),
            "chance_wer": number(data.chance_wer), "git_commit": data.git, "version": data.version,
            "units_analysis": units_numbers(data.units) if data.units else None,
            "learning_curve": curves_numbers(data.curves)}
