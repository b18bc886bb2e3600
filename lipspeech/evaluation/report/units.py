"""The report's unit-analysis section: the units-analysis stage's table as a layer x k heat map of
PNMI, a table of every measurement, and the experiments' val unit accuracy (HTML, Markdown, JSON)."""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow.parquet as pq

from lipspeech.core.shards import StageError
from lipspeech.core.store import one_line
from lipspeech.evaluation.units_analysis import MFCC_LAYER, SCHEMA, STAGE

KIND_ORDER = {"grid": 0, "pipeline": 1, "model": 2}


@dataclass
class UnitsAnalysis:
    """The rows of ``units_analysis/quality.parquet`` and the split they were scored on."""

    rows: list[dict[str, Any]]
    split: str

    @property
    def grid(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "grid"]

    @property
    def models(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "model"]


def load_units_analysis(path: str | Path) -> UnitsAnalysis:
    """Read the stage's table (a one-line error when it is not one)."""
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: not a readable units-analysis table ({one_line(exc)})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("lipspeech.stage") != STAGE or not set(SCHEMA.names) <= set(table.column_names):
        raise StageError(f"{path}: not a units-analysis table (stage {meta.get('lipspeech.stage')!r})")
    rows = sorted(table.to_pylist(), key=lambda r: (KIND_ORDER.get(r["kind"], 9), r["layer"] or 0, r["k"] or 0))
    return UnitsAnalysis(rows, meta.get("lipspeech.split", "test"))


def layer_name(layer: Optional[int]) -> str:
    return "MFCC" if layer is None or layer == MFCC_LAYER else f"layer {layer}"


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def heatmap_png(ua: UnitsAnalysis, dpi: int) -> Optional[bytes]:
    """PNMI per (layer, k) as an annotated heat map; None without grid rows."""
    grid = ua.grid
    if not grid:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted({r["layer"] for r in grid})
    ks = sorted({r["k"] for r in grid})
    values = np.full((len(layers), len(ks)), np.nan)
    for r in grid:
        values[layers.index(r["layer"]), ks.index(r["k"])] = r["pnmi"]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(ks), 0.9 + 0.45 * len(layers)), dpi=dpi)
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=max(1e-6, float(np.nanmax(values))), aspect="auto")
    for i in range(len(layers)):
        for j in range(len(ks)):
            if not np.isnan(values[i, j]):
                dark = values[i, j] < 0.6 * np.nanmax(values)
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(layers)), [layer_name(x) for x in layers])
    ax.set_xlabel("k (clusters)")
    ax.set_title("PNMI of the units against phones", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def table_rows(ua: UnitsAnalysis) -> list[list[str]]:
    """Header + one row per grid / pipeline measurement."""
    rows = [["units", "k", "phone purity", "cluster purity", "PNMI", "frames"]]
    for r in ua.rows:
        if r["kind"] == "model":
            continue
        name = layer_name(r["layer"]) + (" (the pipeline's units store)" if r["kind"] == "pipeline" else "")
        rows.append([f"{r['source']} {name}", str(r["k"]), _num(r["phone_purity"]), _num(r["cluster_purity"]),
                     _num(r["pnmi"]), str(r["frames"])])
    return rows


def model_line(ua: UnitsAnalysis) -> Optional[str]:
    """The experiments' val unit accuracy, one sentence (None when no experiment predicts units)."""
    if not ua.models:
        return None
    parts = [f"{r['experiment']} {_num(100 * r['unit_acc'], 1) if r['unit_acc'] is not None else 'n/a'}%"
             for r in ua.models]
    chance = 100.0 / ua.models[0]["k"] if ua.models[0]["k"] else float("nan")
    return (f"How predictable the units are from video: top-1 accuracy of the predicted units on val, "
            f"{', '.join(parts)} (chance {chance:.1f}%; n/a: trained before the accuracy was recorded).")


INTRO = ("How linguistic the units are: k-means units scored against phone alignments at 50 Hz on the {split} "
         "split (k-means fitted on train). Phone purity: how well each unit's most frequent phone predicts its "
         "frames; cluster purity: the same from phone to unit; PNMI: the share of the phone label's entropy the "
         "unit explains (1 = the unit determines the phone).")


def units_html(ua: UnitsAnalysis, dpi: int, data_uri) -> str:
    """The HTML section (``data_uri(bytes, mime)`` embeds the heat map)."""
    e = html.escape
    rows = table_rows(ua)
    head = "".join(f"<th>{e(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + f"<td>{e(r[0])}</td>" + "".join(f'<td class="num">{e(c)}</td>' for c in r[1:]) + "</tr>"
                   for r in rows[1:])
    png = heatmap_png(ua, dpi)
    img = f"<img class='figure' alt='PNMI heat map' src='{data_uri(png, 'image/png')}'>" if png else ""
    line = model_line(ua)
    return (f"<h2>Unit analysis</h2><p class='small'>{e(INTRO.format(split=ua.split))}</p>{img}"
            f"<table id='units-analysis'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f"<p class='legend'>{e(line)}</p>" if line else ""))


def units_markdown(ua: UnitsAnalysis, md_table) -> list[str]:
    """The Markdown section's lines (``md_table(rows)`` renders a table)."""
    line = model_line(ua)
    return ["", "## Unit analysis", "", INTRO.format(split=ua.split), "", md_table(table_rows(ua))] + (
        ["", line] if line else [])


def units_numbers(ua: UnitsAnalysis) -> dict[str, Any]:
    """report.json's ``units_analysis``: the rows as numbers (NaN as null)."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    return {"split": ua.split, "rows": [{k: clean(v) for k, v in r.items()} for r in ua.rows]}
