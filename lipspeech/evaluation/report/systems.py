"""Each system's results (summary.json, metrics.parquet, audio.parquet) and what is read from them:
best rows, WER per speaker, the examples' choice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lipspeech.core.store import Store, StoreError, one_line
from lipspeech.evaluation.report.columns import (
    GROUND_TRUTH,
    GT_VOCODED,
    METRICS,
    REFERENCE_SYSTEMS,
    ROW_LABELS,
    ablation_order,
    describe_experiment,
    experiment_label,
    is_number,
)
from lipspeech.evaluation.report.inputs import SystemFiles


@dataclass
class SystemResult:
    """What the report knows about one system (one row)."""

    name: str
    label: str
    kind: str  # "reference" | "experiment"
    description: str
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: Optional[pd.DataFrame] = None
    audio: Optional[Store] = None
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # summary.json's figures + the report's gap columns
    ci95: dict[str, Any] = field(default_factory=dict)  # figure -> [low, high]
    significant: set[str] = field(default_factory=set)  # figures whose difference to the full model excludes 0

    @property
    def vocoded(self) -> bool:
        """Has an audio.parquet of its own (every system but the ground truth)."""
        return self.name != GROUND_TRUTH

    @property
    def usable(self) -> bool:
        return bool(self.summary) and self.metrics is not None


def load_system(files: Optional[SystemFiles], name: str, kind: str, description: str,
                label: Optional[str] = None) -> SystemResult:
    """Read one system's summary.json, metrics.parquet and (vocoded systems) audio.parquet.

    A missing or unreadable file is recorded in ``problems`` (the report shows it)
    instead of stopping the report: the other systems' results still get a page.
    """
    res = SystemResult(name, label or ROW_LABELS.get(name, name), kind, description)
    if files is None:
        res.problems.append("no results given for this system")
        return res
    try:
        summary = json.loads(files.summary.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        res.summary = summary
    except (OSError, ValueError) as exc:
        res.problems.append(f"{files.summary}: {one_line(exc)}")
    try:
        metrics = pq.read_table(files.metrics).to_pandas()
        missing = {"utt", "wer"} - set(metrics.columns)
        if missing:
            raise ValueError(f"no column(s) {', '.join(sorted(missing))}")
        res.metrics = metrics.set_index("utt", drop=False)
    except (OSError, ValueError) as exc:
        res.problems.append(f"{files.metrics}: {one_line(exc)}")
    if res.vocoded:
        try:
            if files.audio is None:
                raise StoreError(f"{name}: no vocoded audio given")
            res.audio = Store(files.audio, expect_stage="vocode")
            vocoder = res.audio.meta.extra.get("vocoder")
            if name == GT_VOCODED and vocoder:
                res.description = f"{res.description}; vocoder: {vocoder}"
        except StoreError as exc:
            res.problems.append(one_line(exc))
    return res


def load_systems(
    files: Mapping[str, SystemFiles], experiments: Sequence[Mapping[str, Any]],
    model_section: Optional[Mapping[str, Any]] = None, systems: Optional[Sequence[str]] = None,
) -> list[SystemResult]:
    """The report's rows: the two references, then each experiment, full models first (or just
    ``systems``, in that order)."""
    by_name = {e["name"]: e for e in ablation_order(experiments, model_section)}
    names = list(systems) if systems else [*REFERENCE_SYSTEMS, *by_name]
    out = []
    for name in names:
        if name == GROUND_TRUTH:
            out.append(load_system(files.get(name), name, "reference", "the decoded test audio itself: the ceiling of every "
                                   "metric with this ASR; signal metrics against itself are trivial"))
        elif name == GT_VOCODED:
            out.append(load_system(files.get(name), name, "reference", "the ground-truth mel spectrograms through the "
                                   "vocoder: the ceiling of a model that predicts mels perfectly"))
        elif name in by_name:
            out.append(load_system(files.get(name), name, "experiment", describe_experiment(by_name[name], model_section),
                                   experiment_label(by_name[name], model_section)))
        else:
            out.append(load_system(files.get(name), name, "experiment", "not an experiment of this config"))
    return out


def best_rows(systems: Sequence[SystemResult]) -> dict[str, set[str]]:
    """metric key -> names of the experiments with the best value (bold in the table).

    Only experiments compete (the two reference rows are ceilings, not
    contenders), and only when there are at least two of them. "closer"
    metrics are judged by the distance to the ground-truth audio's value.
    """
    exps = [s for s in systems if s.kind == "experiment" and s.usable]
    if len(exps) < 2:
        return {}
    gt = next((s for s in systems if s.name == GROUND_TRUTH and s.usable), None)
    best: dict[str, set[str]] = {}
    for m in METRICS:
        if m.better == "closer":
            if gt is None or not is_number(gt.figures.get(m.key)):
                continue
            ref = float(gt.figures[m.key])
            scores = {s.name: abs(float(s.figures[m.key]) - ref) for s in exps if is_number(s.figures.get(m.key))}
        else:
            sign = 1.0 if m.better == "lower" else -1.0
            scores = {s.name: sign * float(s.figures[m.key]) for s in exps if is_number(s.figures.get(m.key))}
        if scores:
            low = min(scores.values())
            # exact ties share the bold
            best[m.key] = {n for n, v in scores.items() if abs(v - low) <= 1e-12 + 1e-9 * abs(low)}
    return best


def speaker_wer(metrics: pd.DataFrame) -> dict[str, tuple[float, int]]:
    """speaker -> (WER over that speaker's utterances, utterance count).

    Per-utterance WERs weighted by reference word counts: the speaker's
    corpus-level WER (all errors / all reference words) without re-running the
    ASR scoring. Without a ``ref`` column each utterance weighs the same.
    """
    if "speaker" not in metrics.columns or not len(metrics):
        return {}
    weights = (metrics["ref"].fillna("").astype(str).str.split().str.len().astype(float)
               if "ref" in metrics.columns else pd.Series(1.0, index=metrics.index))
    out = {}
    for spk, rows in metrics.groupby("speaker", sort=True):
        wer = pd.to_numeric(rows["wer"], errors="coerce")
        w = weights.loc[rows.index]
        ok = wer.notna() & (w > 0)
        value = float((wer[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else float("nan")
        out[str(spk)] = (value, int(len(rows)))
    return out


def select_examples(
    candidates: Sequence[str], systems: Sequence[SystemResult], n: int, selection: str,
) -> list[str]:
    """Pick ``n`` test utterances, deterministically.

    ``sorted``: the first ``n`` ids. ``median_wer``: the utterances whose WER
    (mean over the experiments, else over the references) is closest to the
    median of that WER, ties broken by id: typical utterances, neither the
    model's best nor its worst. Returned in id order.
    """
    cands = sorted(set(candidates))
    if n <= 0 or not cands:
        return []
    if selection == "sorted":
        return cands[:n]
    if selection != "median_wer":
        raise ValueError(f"report.selection must be median_wer or sorted, got {selection!r}")
    scorers = [s for s in systems if s.kind == "experiment" and s.metrics is not None] or \
              [s for s in systems if s.metrics is not None]
    if not scorers:
        return cands[:n]
    table = pd.DataFrame({s.name: pd.to_numeric(s.metrics["wer"], errors="coerce").reindex(cands) for s in scorers})
    score = table.mean(axis=1, skipna=True)
    median = float(score.median()) if score.notna().any() else 0.0
    dist = (score - median).abs().fillna(np.inf)
    ranked = sorted(cands, key=lambda u: (float(dist[u]), u))
    return sorted(ranked[:n])


