"""The one-screen summary of a corpus's results: utterances, hours, rejections."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from lipspeech.core.shards import shard_stores
from lipspeech.core.store import META_KEY, Store, one_line, read_rejected, rejected_stage

# Stage folders that hold per-shard stores, in pipeline order. The ssl stores are
# temporary (gone once the units exist): only their rejected tables are counted then.
SHARD_STAGES = {"decode": "audio", "roi": "roi", "mel": "mel", "ssl": "ssl", "units": "units", "prosody": "prosody"}


def corpus_summary(results: Path) -> dict[str, Any]:
    """:func:`summarize` the stores and rejected tables found in the workflow's layout of ``results/{corpus}``."""
    stores, rejected = [], [results / "manifest.rejected.parquet"]
    for folder in SHARD_STAGES.values():
        stores += shard_stores(results / folder)
        rejected += sorted((results / folder).glob("*.rejected.parquet"))
    return summarize(results / "manifest.parquet", stores, [p for p in rejected if p.exists()], results.name)


def _stage_of(path: Path, kind: str) -> str:
    """A store's or rejected table's stage: what the file says, else its folder (tables written before
    rejected tables carried their stage)."""
    try:
        if kind == "store":
            meta = pq.read_schema(path).metadata or {}
            stage = json.loads(meta[META_KEY]).get("stage") if META_KEY in meta else None
        else:
            stage = rejected_stage(path)
    except (pa.ArrowException, OSError, ValueError):
        stage = None
    if stage:
        return stage
    if path.name.startswith("manifest."):
        return "manifest"
    return {folder: stage for stage, folder in SHARD_STAGES.items()}.get(path.parent.name, path.parent.name)


def summarize(manifest_path: Path, store_paths: Sequence[Path], rejected_paths: Sequence[Path],
              corpus: str) -> dict[str, Any]:
    """Figures of a corpus from the given files: the manifest, each stage's per-shard stores (utterances,
    hours, shards) and every rejected table (counts, frequent reasons, examples). Unreadable files are
    listed, not fatal: the summary is how one finds out."""
    manifest = Store(manifest_path, expect_stage="manifest").df
    base = Path(manifest_path).parent

    def shown(p: Path) -> str:  # relative to the results folder, as the summary prints paths
        try:
            return str(p.relative_to(base))
        except ValueError:
            return str(p)

    out: dict[str, Any] = {
        "corpus": corpus,
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
    unreadable: list[str] = []
    by_stage: dict[str, list[Path]] = {}
    for p in map(Path, store_paths):
        by_stage.setdefault(_stage_of(p, "store"), []).append(p)
    rejected_tables: dict[str, list[Path]] = {}
    for p in map(Path, rejected_paths):
        rejected_tables.setdefault(_stage_of(p, "rejected"), []).append(p)
    for stage in [*SHARD_STAGES, *(s for s in by_stage if s not in SHARD_STAGES)]:
        stores = by_stage.get(stage)
        if not stores:
            continue
        n, seconds = 0, 0.0
        for p in stores:
            try:
                md = pq.read_table(p, columns=["duration"])
            except (pa.ArrowException, OSError) as exc:
                unreadable.append(f"{shown(p)}: {one_line(exc)}")
                continue
            n += md.num_rows
            seconds += float(sum(md.column("duration").to_pylist()))
        out["stages"][stage] = {"utterances": n, "hours": round(seconds / 3600, 4), "shards": len(stores)}
    rejected = {}
    order = ["manifest", *SHARD_STAGES]
    for stage, paths in sorted(rejected_tables.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99)):
        readable = []
        for p in paths:
            try:
                pq.read_metadata(p)
                readable.append(p)
            except (pa.ArrowException, OSError) as exc:
                unreadable.append(f"{shown(p)}: {one_line(exc)}")
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
