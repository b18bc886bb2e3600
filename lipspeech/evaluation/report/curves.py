"""The report's learning-curve section: each experiment's ``curve.json`` (stage curve) as a plot of
val WER and DNSMOS P.808 against training steps, and a table (HTML, Markdown, JSON)."""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from lipspeech.core.shards import StageError


def load_curves(paths: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """experiment -> its curve.json (a one-line error for one that is not a curve)."""
    out = {}
    for name, path in paths.items():
        try:
            curve = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise StageError(f"{path}: not a readable curve.json ({exc})") from None
        if not isinstance(curve, dict) or not curve.get("rows"):
            raise StageError(f"{path}: a curve.json without rows")
        out[name] = curve
    return out


def _num(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * scale:.{digits}f}"


def curve_rows(curves: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Header + one row per (experiment, snapshot): step, WER %, CER %, DNSMOS P.808."""
    rows = [["experiment", "step", "val WER (%)", "val CER (%)", "DNSMOS P.808"]]
    for name, curve in curves.items():
        for r in curve["rows"]:
            rows.append([name, str(r["step"]), _num(r["wer"], 100), _num(r["cer"], 100),
                         _num(r.get("dnsmos_p808"), 1, 2)])
    return rows


def temperature_rows(curves: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Header + one row per (experiment, post-net temperature) its best.pt was scored at (curve.temperatures)."""
    rows = [["experiment", "temperature", "step", "val WER (%)", "val CER (%)", "DNSMOS P.808"]]
    for name, curve in curves.items():
        for r in curve.get("temperatures") or []:
            rows.append([name, f"{r['temperature']:g}", str(r["step"]), _num(r["wer"], 100), _num(r["cer"], 100),
                         _num(r.get("dnsmos_p808"), 1, 2)])
    return rows


def _html_table(rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + f"<td>{html.escape(r[0])}</td>" + "".join(f'<td class="num">{html.escape(c)}</td>'
                                                                       for c in r[1:]) + "</tr>" for r in rows[1:])
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]), *("| " + " | ".join(r) + " |"
                                                                            for r in rows[1:])]


def curve_png(curves: Mapping[str, Mapping[str, Any]], dpi: int) -> bytes:
    """WER (left) and DNSMOS P.808 (right, where measured) against the step, one line per experiment."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.6))
    FigureCanvasAgg(fig)
    wer_ax, mos_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, curve in curves.items():
        steps = [r["step"] for r in curve["rows"]]
        wer_ax.plot(steps, [100 * r["wer"] for r in curve["rows"]], marker=".", label=name)
        mos = [r.get("dnsmos_p808") for r in curve["rows"]]
        if all(m is not None for m in mos):
            mos_ax.plot(steps, mos, marker=".", label=name)
    for ax, title in ((wer_ax, "val WER (%)"), (mos_ax, "val DNSMOS P.808")):
        ax.set_title(title, fontsize=7, loc="left", pad=2)
        ax.set_xlabel("step", fontsize=6)
        ax.tick_params(labelsize=6, length=2)
        ax.grid(alpha=0.3)
    if wer_ax.get_legend_handles_labels()[0]:
        wer_ax.legend(fontsize=5, frameon=False)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.17, wspace=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _describe(curves: Mapping[str, Mapping[str, Any]]) -> str:
    first = next(iter(curves.values()))
    return (f"Each snapshot's speech on {first.get('utterances')} val utterances (a seeded choice), through "
            f"{first.get('vocoder', {}).get('kind', 'the vocoder')}, scored by {first.get('asr')}; "
            "the test split is never looked at.")


def curves_html(curves: Mapping[str, Mapping[str, Any]], dpi: int, data_uri: Callable[[bytes, str], str]) -> str:
    img = f'<img class="figure" alt="learning curve" src="{data_uri(curve_png(curves, dpi), "image/png")}">'
    out = (f"<h2>Learning curve</h2><p class='small'>{html.escape(_describe(curves))}</p>{img}"
           + _html_table(curve_rows(curves), "curve"))
    temps = temperature_rows(curves)
    if len(temps) > 1:
        out += ("<h3>Post-net temperature on val (best.pt)</h3>" + _html_table(temps, "curve-temperature"))
    return out


def curves_markdown(curves: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Learning curve", "", _describe(curves), "", *_md_table(curve_rows(curves)), ""]
    temps = temperature_rows(curves)
    if len(temps) > 1:
        lines += ["Post-net temperature on val (best.pt):", "", *_md_table(temps), ""]
    return lines


def curves_numbers(curves: Optional[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    return {name: {"utterances": c.get("utterances"), "rows": c["rows"], "temperatures": c.get("temperatures") or []}
            for name, c in (curves or {}).items()}
