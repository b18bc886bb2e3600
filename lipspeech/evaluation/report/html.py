"""report.html: one self-contained page from the template ``lipspeech/resources/report/page.html``.
"""

from __future__ import annotations

import json
import string
from importlib import resources
from typing import Sequence

from lipspeech.evaluation.report.columns import DETAIL, DIFF_LEGEND, HEADLINE, LEGEND, METRIC_BY_KEY, METRIC_NOTES, MISSING
from lipspeech.evaluation.report.curves import curves_html
from lipspeech.evaluation.report.figures import Example, data_uri, wav_bytes
from lipspeech.evaluation.report.load import ReportData
from lipspeech.evaluation.report.systems import best_rows
from lipspeech.evaluation.report.tables import (
    baseline_label,
    cell_parts,
    chance_line,
    difference_rows,
    escape,
    floor_line,
    fmt_pct,
    speakers_table,
)
from lipspeech.evaluation.report.units import units_html


def resource_text(name: str) -> str:
    """A file of the page's template folder, ``lipspeech/resources/report/`` (package data)."""
    return (resources.files("lipspeech") / "resources" / "report" / name).read_text(encoding="utf-8")


def page_template() -> string.Template:
    """The page's skeleton (``page.html``): ``$name`` placeholders for the header, the tables and the
    sections; the CSS (``report.css``) and the media check script (``check.js``) are inlined."""
    return string.Template(resource_text("page.html"))


def _table_html(data: ReportData, keys: Sequence[str], table_id: str) -> str:
    best = best_rows(data.systems)
    metrics = [METRIC_BY_KEY[k] for k in keys]
    head = "".join(f"<th>{escape(m.header)}</th>" for m in metrics)
    body = []
    for s in data.systems:
        cells = []
        for m in metrics:
            value, ci, is_best, sig = cell_parts(s, m, best)
            text = f"<b>{value}</b>" if is_best else value
            text += "<sup class='sig'>*</sup>" if sig else ""
            text += f"<span class='ci'>{escape(ci)}</span>" if ci else ""
            cells.append(f'<td class="num" data-metric="{m.key}">{text}</td>')
        n = s.summary.get("n", len(s.metrics) if s.metrics is not None else None)
        body.append(f'<tr class="{s.kind}" data-system="{escape(s.name)}"><td class="sys">{escape(s.label)}</td>'
                    f'<td class="num">{escape(n if n is not None else MISSING)}</td>{"".join(cells)}</tr>')
    return (f'<table id="{table_id}"><thead><tr><th>system</th><th>n</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _differences_html(data: ReportData) -> str:
    exps, rows = difference_rows(data)
    if not exps:
        return ""
    head = "".join(f"<th>{escape(s.label)}</th>" for s in exps)
    body = []
    for m, cells in rows:
        tds = "".join(f'<td class="num" data-system="{escape(s.name)}">{"<b>" if sig else ""}{escape(d)}'
                      f'{"*</b>" if sig else ""}<span class="ci">{escape(ci)}</span></td>'
                      for s, (d, ci, sig) in zip(exps, cells))
        body.append(f'<tr data-metric="{m.key}"><td>{escape(m.header)}</td>{tds}</tr>')
    return (f"<h2>Differences to the full model: {escape(baseline_label(data))}</h2>"
            f"<p class='legend'>{escape(DIFF_LEGEND.format(**data.bootstrap))}</p>"
            f'<table id="differences"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table>")


def _rows_html(data: ReportData) -> str:
    items = []
    for s in data.systems:
        commit = data.model_commits.get(s.name)
        extra = f" Trained at commit <code>{escape(commit[:12])}</code>." if commit else ""
        items.append(f"<dt><b>{escape(s.label)}</b></dt><dd>{escape(s.description)}.{extra}</dd>")
    cols = "".join(f"<li><b>{escape(m.label)}</b> {escape(m.arrow)}: {escape(METRIC_NOTES[m.key])}</li>"
                   for m in (METRIC_BY_KEY[k] for k in (*HEADLINE, *DETAIL)))
    return f"<dl>{''.join(items)}</dl><p class='small'>Columns:</p><ul class='small'>{cols}</ul>"


def _example_html(ex: Example) -> str:
    cards = []
    for t in ex.tracks:
        if t.audio is not None:
            player = (f'<audio controls preload="metadata" data-system="{escape(t.system)}" data-utt="{escape(ex.utt)}" '
                      f'src="{data_uri(wav_bytes(t.audio), "audio/wav")}"></audio>')
        else:
            player = f'<p class="small">no audio{": " + escape(t.note) if t.note else ""}</p>'
        hyp = escape(t.hyp) if t.hyp is not None else MISSING
        wer = f"WER {fmt_pct(t.wer)}%" if t.wer is not None else f"WER {MISSING}"
        cards.append(f'<div class="track"><b>{escape(t.label)}</b>{player}'
                     f'<div class="hyp">ASR: {hyp}</div><div class="small">{wer}</div></div>')
    img = ""
    if ex.png is not None:
        img = (f'<img class="figure" alt="mel spectrograms and F0 of {escape(ex.utt)}" '
               f'src="{data_uri(ex.png, "image/png")}">')
    return (f'<section class="example" data-utt="{escape(ex.utt)}"><h3>{escape(ex.utt)} '
            f'<span class="small">(speaker {escape(ex.speaker)})</span></h3>'
            f'<div>reference: <span class="hyp">{escape(ex.text)}</span></div>'
            f'<div class="tracks">{"".join(cards)}</div>{img}</section>')


def render_html(data: ReportData) -> str:
    """The whole self-contained page."""
    meta = [
        ("corpus", data.corpus), ("test utterances", f"{data.n_test} ({data.n_speakers} speakers)"),
        ("ASR", "; ".join(data.asr) or MISSING), ("lipspeech", data.version), ("git commit", data.git),
        ("generated", data.date),
    ]
    if chance_line(data):
        meta.insert(3, ("chance WER", f"{fmt_pct(data.chance_wer)}% (random sentences of the ASR's grammar)"))
    meta_html = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in meta)
    sp_rows = speakers_table(data, fmt_pct, lambda h: h)
    speakers_html = ""
    if len(sp_rows) > 1:
        head = "".join(f"<th>{escape(h)}</th>" for h in sp_rows[0])
        body = "".join("<tr>" + f"<td>{escape(r[0])}</td>" + "".join(f'<td class="num">{escape(c)}</td>' for c in r[1:])
                       + "</tr>" for r in sp_rows[1:])
        speakers_html = (f"<h2>WER per speaker (%)</h2><table id='speakers'><thead><tr>{head}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
    examples_html = "".join(_example_html(ex) for ex in data.examples)
    if data.examples:
        how = ("closest to the median WER of the experiments" if data.report.selection == "median_wer"
               else "first by id")
        examples_html = (f"<h2>Examples</h2><p class='small'>{len(data.examples)} test utterances ({how}). Mels of "
                         "each system's waveform; F0 of the ground truth from the prosody store, of the systems from "
                         "their audio (same WORLD settings).</p>" + examples_html)
    notes_html = ""
    if data.notes:
        notes_html = "<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in data.notes) + "</ul>"
    floor = floor_line(data)
    legend = LEGEND.format(**data.bootstrap) + (f" {floor[0].upper()}{floor[1:]}." if floor else "")
    return page_template().substitute(
        corpus=escape(data.corpus), css=resource_text("report.css"), meta=meta_html,
        metrics=_table_html(data, HEADLINE, "metrics"), legend=escape(legend),
        detail=_table_html(data, DETAIL, "metrics-detail"), differences=_differences_html(data),
        units=units_html(data.units, int(data.report.dpi), data_uri) if data.units else "",
        curve=curves_html(data.curves, int(data.report.dpi), data_uri) if data.curves else "",
        rows=_rows_html(data), speakers=speakers_html, examples=examples_html, notes=notes_html,
        report_cfg=escape(json.dumps(data.report.as_dict(), sort_keys=True)), cfg_hash=escape(data.cfg_hash),
        script=resource_text("check.js"),
    )
