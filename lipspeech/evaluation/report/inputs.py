"""The files the report reads, each given by its rule (``lipspeech report`` takes them as options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from lipspeech.core.shards import shard_of_store, shard_stores
from lipspeech.evaluation.report.columns import GROUND_TRUTH

#: the ground truth's stores the examples read
SHARD_FOLDERS = ("audio", "mel", "prosody")


@dataclass
class SystemFiles:
    """One system's evaluate outputs and (every system but the ground truth) its vocoded audio."""

    summary: Path
    metrics: Path
    audio: Optional[Path] = None


@dataclass
class ReportInputs:
    """Everything the report reads.

    Attributes:
        manifest: the manifest (test split, speakers, shards).
        shards: ``audio``, ``mel``, ``prosody`` -> shard -> store file (the examples' ground truth).
        systems: system name -> its files, for every system to show.
        models: experiment -> its checkpoint (for the commit it was trained at; optional).
        units_analysis: the units-analysis table, for its section (optional).
        curves: experiment -> its learning curve (``eval/{exp}/curve.json``, stage curve; optional).
    """

    manifest: Path
    shards: dict[str, dict[int, Path]] = field(default_factory=dict)
    systems: dict[str, SystemFiles] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    units_analysis: Optional[Path] = None
    curves: dict[str, Path] = field(default_factory=dict)

    @staticmethod
    def by_shard(paths: Sequence[str | Path]) -> dict[int, Path]:
        out = {}
        for path in paths:
            shard = shard_of_store(Path(path))
            if shard is None:
                raise ValueError(f"{path}: not a per-shard store file ({{shard:03d}}.parquet)")
            out[shard] = Path(path)
        return out

    @classmethod
    def from_results(cls, results: str | Path, systems: Sequence[str],
                     units_analysis: Optional[str | Path] = None) -> "ReportInputs":
        """The workflow's layout of ``results/{corpus}`` (for tools and tests; the stage is given its files)."""
        results = Path(results)
        shards = {folder: cls.by_shard(shard_stores(results / folder)) for folder in SHARD_FOLDERS}
        files = {}
        for name in systems:
            folder = results / "eval" / name
            files[name] = SystemFiles(folder / "summary.json", folder / "metrics.parquet",
                                      None if name == GROUND_TRUTH else folder / "audio.parquet")
        models = {name: results / "models" / name / "ckpt" / "best.pt" for name in systems
                  if (results / "models" / name / "ckpt" / "best.pt").exists()}
        return cls(results / "manifest.parquet", shards, files, models,
                   Path(units_analysis) if units_analysis else None)

    @classmethod
    def from_args(cls, manifest: str, shards: Mapping[str, Sequence[str]], systems: Sequence[Sequence[str]],
                  models: Sequence[str] = (), units_analysis: Optional[str] = None,
                  curves: Sequence[str] = ()) -> "ReportInputs":
        """From the CLI's options: ``systems`` as [NAME, SUMMARY, METRICS, (AUDIO)], ``models`` and ``curves``
        as NAME=PATH."""
        files = {}
        for spec in systems:
            if len(spec) not in (3, 4):
                raise ValueError(f"--system {' '.join(spec)}: give NAME SUMMARY METRICS [AUDIO]")
            files[spec[0]] = SystemFiles(Path(spec[1]), Path(spec[2]), Path(spec[3]) if len(spec) == 4 else None)
        return cls(Path(manifest), {k: cls.by_shard(v or []) for k, v in shards.items()}, files,
                   _named("--model", models), Path(units_analysis) if units_analysis else None,
                   _named("--curve", curves))


def _named(option: str, specs: Sequence[str]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"{option} {spec}: give NAME=PATH")
        out[name] = Path(path)
    return out
