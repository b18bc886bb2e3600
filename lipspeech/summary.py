"""The one-screen summary of a corpus's results: utterances, hours, rejections."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lipspeech.store import Store, one_line, read_rejected

# Stage folders that hold per-shard stores, in pipeline order. The ssl stores are
# temporary (gone once the units exist): only their rejected tables are counted then.
SHARD_STAGES = {"decode": "audio", "roi": "roi", "mel": "mel", "ssl": "ssl", "units": "units", "prosody": "prosody"}


def corpus_summary(results: Path) -> dict[str, Any]:
    """Gather figures from ``results/{corpus}``: manifest, each stage's stores and rejected tables."""
    manifest = Store(results / "manifest.parquet", expect_stage="manifest").df
    out: dict[str, Any] = {
        "corpus": results.name,
        "utterances": int(len(manifest)),
        "speakers": int(manifest["speaker"].nunique()),
        "hours": round(float(manifest["duration"].sum()) / 3600, 4),
        "splits": {k: int(v) for k, v in manifest["split"].value_counts().sort_index().items()},
        "fps_resampled": int(manifest["fps_resampled"].sum()),
        # what decode changed to show frames as a viewer sees them (manifests before these columns: 0)
        "rotated": int((manifest["rotation"] != 0).sum()) if "rotation" in manifest else 0,
        "non_square_pixels": int((abs(manifest["sar"] - 1.0) > 1e-3).sum()) if "sar" in manifest else 0,
        "interlaced": int(manifest["interlaced"].sum()) if "interlaced" in manifest else 0,
        "stages": {},
    }
    rejected_tables = {"manifest": [results / "manifest.rejected.parquet"]}
    unreadable: list[str] = []
    for stage, folder in SHARD_STAGES.items():
        stores = sorted(p for p in (results / folder).glob("*.parquet")
                        if not p.name.endswith((".rejected.parquet", ".qc.parquet")))  # roi's QC table
        rejected_paths = sorted((results / folder).glob("*.rejected.parquet"))
        if rejected_paths:
            rejected_tables[stage] = rejected_paths
        if not stores:
            continue
        n, seconds = 0, 0.0
        for p in stores:
            try:
                md = pq.read_table(p, columns=["duration"])
            except (pa.ArrowException, OSError) as exc:  # reported, not fatal: the summary is how one finds out
                unreadable.append(f"{p.relative_to(results)}: {one_line(exc)}")
                continue
            n += md.num_rows
            seconds += float(sum(md.column("duration").to_pylist()))
        out["stages"][stage] = {"utterances": n, "hours": round(seconds / 3600, 4), "shards": len(stores)}
    rejected = {}
    for stage, paths in rejected_tables.items():
        readable = []
        for p in paths:
            try:
                pq.read_metadata(p)
                readable.append(p)
            except (pa.ArrowException, OSError) as exc:
                unreadable.append(f"{p.relative_to(results)}: {one_line(exc)}")
        table = read_rejected(readable).to_pylist()
        reasons = Counter(_reason_kind(r["reason"]) for r in table)
        rejected[stage] = {"count": len(table), "reasons": dict(reasons.most_common(5)),
                           "examples": [f"{r['utt']}: {r['reason']}" for r in table[:3]]}
    out["rejected"] = rejected
    out["unreadable"] = unreadable
    return out


def _reason_kind(reason: str) -> str:
    """Group reasons by their text with the numbers masked."""
    return "".join("#" if ch.isdigit() else ch for ch in reason)[:80]


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"lipspeech summary: {s['corpus']}",
        f"  manifest   {s['utterances']:>7} utterances  {s['hours']:8.3f} h  {s['speakers']} speakers  "
        + "  ".join(f"{k} {v}" for k, v in s["splits"].items()),
    ]
    for key, what in (("fps_resampled", "resampled to 25 fps"), ("rotated", "turned upright (display rotation)"),
                      ("non_square_pixels", "with non-square pixels made square"), ("interlaced", "deinterlaced")):
        if s.get(key):
            lines.append(f"             {s[key]} videos {what}")
    for stage, st in s["stages"].items():
        lines.append(f"  {stage:<10} {st['utterances']:>7} utterances  {st['hours']:8.3f} h  in {st['shards']} shards")
    total = sum(r["count"] for r in s["rejected"].values())
    lines.append(f"  rejected   {total:>7} utterances")
    for stage, r in s["rejected"].items():
        if r["count"]:
            lines.append(f"    {stage}: {r['count']}")
            for kind, count in r["reasons"].items():
                lines.append(f"      {count:>5} x {kind}")
    for entry in s.get("unreadable", []):
        lines.append(f"  UNREADABLE {entry} (delete it and rerun to rebuild it)")
    return "\n".join(lines) + "\n"
