"""Everything the report shows, gathered once: the systems, the comparison, the examples."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lipspeech import __version__
from lipspeech.core.config import config_hash
from lipspeech.core.settings import ReportConfig, Settings
from lipspeech.core.shards import StageError
from lipspeech.core.store import Store, StoreError, one_line
from lipspeech.evaluation.compare import compare_systems
from lipspeech.evaluation.report.columns import GAP_PREFIX, GT_VOCODED, is_number
from lipspeech.evaluation.report.figures import Example, build_examples
from lipspeech.evaluation.report.inputs import ReportInputs
from lipspeech.evaluation.report.systems import SystemResult, load_systems, select_examples, speaker_wer
from lipspeech.evaluation.report.units import UnitsAnalysis


@dataclass
class ReportData:
    """Everything both pages show."""

    corpus: str
    n_test: int
    n_speakers: int
    git: str
    date: str
    version: str
    asr: list[str]
    systems: list[SystemResult]
    speakers: dict[str, dict[str, tuple[float, int]]]  # system -> speaker -> (WER, n)
    examples: list[Example]
    report: ReportConfig
    cfg_hash: str
    model_commits: dict[str, str]
    notes: list[str]
    chance_wer: Optional[float] = None  # random sentences of the ASR's grammar against the references
    comparison: dict[str, Any] = field(default_factory=dict)  # compare.compare_systems
    bootstrap: dict[str, Any] = field(default_factory=dict)  # resamples, seed
    units: Optional[UnitsAnalysis] = None  # the units-analysis stage's table, when given
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # experiment -> curve.json (stage curve)


def _git_commit() -> str:
    from lipspeech.core.runtime import git_commit

    return git_commit()


def model_commit(ckpt: Path) -> Optional[str]:
    """The git commit a checkpoint was trained at (memory-mapped: the weights are not read)."""
    import torch

    try:
        return str(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("git_commit", "unknown"))
    except (OSError, RuntimeError, ValueError):
        return None


def gather(
    inputs: ReportInputs, cfg: Mapping[str, Any], systems: Optional[Sequence[str]] = None, progress: bool = False,
) -> ReportData:
    """Read every input of the report (see the package docstring); ``cfg``: the validated config."""
    settings = Settings.from_section(cfg)
    report, evaluate = settings.report, settings.evaluate
    try:
        manifest = Store(inputs.manifest, expect_stage="manifest").df
    except StoreError as exc:
        raise StageError(one_line(exc)) from None
    test = manifest[manifest["split"] == "test"]
    rows = load_systems(inputs.systems, cfg.get("experiments", []), cfg.get("model"), systems)
    notes = [f"{s.label}: {p}" for s in rows for p in s.problems]
    test_utts = set(test["utt"])
    for s in rows:
        if s.metrics is not None:
            extra = sorted(set(s.metrics.index) - test_utts)
            if extra:
                notes.append(f"{s.label}: {len(extra)} utterance(s) not in the test split (ignored), e.g. {extra[0]}")
            s.metrics = s.metrics.loc[[u for u in s.metrics.index if u in test_utts]]
            if len(s.metrics) < len(test_utts):
                notes.append(f"{s.label}: metrics for {len(s.metrics)} of {len(test_utts)} test utterances "
                             "(the others were rejected upstream)")
    # examples: test utterances every vocoded system has audio for
    candidates = test_utts
    for s in rows:
        if s.audio is not None:
            candidates = candidates & set(s.audio.utts)
    chosen = select_examples(sorted(candidates), rows, int(report.n_examples), report.selection)
    examples = build_examples(inputs.shards, manifest, rows, chosen, cfg["mel"], cfg["prosody"],
                              evaluate.f0_silence_db, int(report.dpi), progress=progress)
    speakers = {s.name: speaker_wer(s.metrics) for s in rows if s.metrics is not None}
    asr = sorted({str(s.summary["asr"]) for s in rows if s.summary.get("asr")})
    # every system is scored on the same test references; the ground truth's row comes first
    chance = next((s.summary["chance_wer"] for s in rows if is_number(s.summary.get("chance_wer"))), None)
    boot = {"resamples": int(evaluate.bootstrap_resamples), "seed": int(evaluate.bootstrap_seed), "level": 0.95}
    usable = {s.name: s.metrics for s in rows if s.usable}
    comparison = compare_systems(usable, [s.name for s in rows if s.kind == "experiment"],
                                 GT_VOCODED if GT_VOCODED in usable else None, boot["resamples"], boot["seed"])
    for s in rows:
        s.figures, s.ci95 = dict(s.summary), dict(s.summary.get("ci95") or {})
        for key, res in comparison["gap_to_vocoded"].get(s.name, {}).items():
            s.figures[GAP_PREFIX + key], s.ci95[GAP_PREFIX + key] = res["diff"], res["ci95"]
        s.significant = {k for k, res in comparison["vs_baseline"].get(s.name, {}).items() if res["significant"]}
    commits = {name: c for name, path in inputs.models.items() if (c := model_commit(path)) is not None}
    return ReportData(
        corpus=settings.corpus.name,
        n_test=len(test), n_speakers=int(test["speaker"].nunique()), git=_git_commit(),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__, asr=asr,
        systems=rows, speakers=speakers, examples=examples, report=report,
        cfg_hash=config_hash(dict(cfg["report"]), dict(cfg["mel"]), dict(cfg["prosody"])),  # the mappings, as before
        model_commits=commits, notes=notes, chance_wer=chance, comparison=comparison, bootstrap=boot,
    )
