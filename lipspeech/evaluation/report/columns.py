"""The report's columns and rows: metrics, how they are shown, and how experiments are named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lipspeech.core.settings import ExperimentConfig

GROUND_TRUTH = "ground_truth"
GT_VOCODED = "gt_vocoded"
REFERENCE_SYSTEMS = (GROUND_TRUTH, GT_VOCODED)
ROW_LABELS = {GROUND_TRUTH: "ground truth audio", GT_VOCODED: "ground-truth mel through the vocoder"}
MISSING = "—"
#: the report's own columns: an experiment's DNSMOS minus gt_vocoded's, on the same utterances
GAP_PREFIX = "gap_"
# which switches of the model config are the paper's ablations, and what they remove
ABLATIONS = {
    "use_linguistic": "linguistic predictor (units)",
    "use_pitch": "pitch predictor",
    "use_energy": "energy predictor",
    "use_postnet": "flow post-net",
}


@dataclass(frozen=True)
class Metric:
    """One column of the metrics table: summary.json key, label, which way is better, display."""

    key: str
    label: str
    better: str  # "lower" | "higher" | "closer" (to the ground-truth audio's value)
    scale: float  # displayed value = stored value * scale (fractions shown as %)
    fmt: str
    unit: str = ""

    @property
    def arrow(self) -> str:
        return {"lower": "↓", "higher": "↑", "closer": "≈GT"}[self.better]

    @property
    def header(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label}{unit} {self.arrow}"

    def format(self, value: Any, signed: bool = False) -> str:
        """The displayed text of a stored value (with a sign: a difference); an em dash for a missing or NaN value."""
        if not is_number(value):
            return MISSING
        fmt = self.fmt if not signed or self.fmt.startswith("+") else "+" + self.fmt
        return format(float(value) * self.scale, fmt)

    def interval(self, ci: Any, signed: bool = False) -> str:
        """``[low, high]`` of a stored interval; empty when there is none."""
        if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(is_number(v) for v in ci):
            return ""
        return f"[{self.format(ci[0], signed)}, {self.format(ci[1], signed)}]"


METRICS: tuple[Metric, ...] = (
    Metric("wer", "WER", "lower", 100.0, ".2f", "%"),
    Metric("cer", "CER", "lower", 100.0, ".2f", "%"),
    Metric("stoi", "STOI", "higher", 1.0, ".3f"),
    Metric("estoi", "ESTOI", "higher", 1.0, ".3f"),
    Metric("pesq_nb", "PESQ-nb", "higher", 1.0, ".2f"),
    Metric("mcd", "MCD", "lower", 1.0, ".2f", "dB"),
    Metric("f0_mean", "F0 mean", "closer", 1.0, ".1f", "Hz"),
    Metric("f0_std", "F0 std", "closer", 1.0, ".1f", "Hz"),
    Metric("vuv_error", "V/UV error", "lower", 100.0, ".1f", "%"),
    Metric("energy_mae", "energy MAE", "lower", 1.0, "#.3g"),
    Metric("dnsmos_p808", "DNSMOS P.808", "higher", 1.0, ".2f"),
    Metric("dnsmos_sig", "DNSMOS SIG", "higher", 1.0, ".2f"),
    Metric("dnsmos_bak", "DNSMOS BAK", "higher", 1.0, ".2f"),
    Metric("dnsmos_ovrl", "DNSMOS OVRL", "higher", 1.0, ".2f"),
    Metric(GAP_PREFIX + "dnsmos_p808", "P.808 gap to vocoded", "higher", 1.0, "+.2f"),
    Metric(GAP_PREFIX + "dnsmos_ovrl", "OVRL gap to vocoded", "higher", 1.0, "+.2f"),
    Metric("speaker_sim", "speaker sim", "higher", 1.0, ".3f"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
LEGEND = ("↓ lower is better, ↑ higher is better, ≈GT closest to the ground-truth audio is best; bold: best "
          "experiment; * beside a value: it differs from the full model (the first experiment) by more than chance "
          "(the 95 % paired-bootstrap interval of the difference excludes 0). In brackets: the 95 % interval of the "
          "figure ({resamples} seeded bootstrap resamples of the test utterances). Systems are rows, full model "
          "first, as in the paper's ablation table; — = not available or not applicable.")
DIFF_LEGEND = ("Each experiment minus the full model on the test utterances both have, with the 95 % interval of the "
               "paired bootstrap ({resamples} resamples, seed {seed}); bold with *: the interval excludes 0, a "
               "difference larger than this test set's chance variation.")
#: the two tables: what the paper's tables report (intelligibility, naturalness, the gap to vocoded
#: speech, speaker similarity), then the signal and prosody details
HEADLINE = ("wer", "cer", "stoi", "estoi", "dnsmos_p808", "dnsmos_ovrl", GAP_PREFIX + "dnsmos_p808",
            GAP_PREFIX + "dnsmos_ovrl", "speaker_sim")
DETAIL = ("pesq_nb", "mcd", "f0_mean", "f0_std", "vuv_error", "energy_mae", "dnsmos_sig", "dnsmos_bak")

METRIC_NOTES = {
    "wer": "word error rate of the ASR transcript against the reference text "
           "(corpus level: all errors / all reference words)",
    "cer": "character error rate, likewise",
    "stoi": "short-time objective intelligibility against the ground-truth audio (0-1)",
    "estoi": "extended STOI (0-1)",
    "pesq_nb": "narrow-band PESQ against the ground-truth audio (MOS-LQO, about 1-4.5)",
    "mcd": "mel-cepstral distortion against the ground-truth audio",
    "f0_mean": "mean F0 of the system's voiced frames; the closer to the ground-truth audio's, the better",
    "f0_std": "standard deviation of that F0; likewise",
    "vuv_error": "fraction of frames whose voiced/unvoiced decision differs from the ground truth's",
    "energy_mae": "mean absolute error of the frame energy against the ground truth",
    "dnsmos_p808": "DNSMOS P.808: predicted overall MOS (1-5) of the audio alone, no reference (Microsoft's "
                   "DNSMOS network from the speechmos package)",
    "dnsmos_sig": "DNSMOS P.835 speech-signal quality (1-5)",
    "dnsmos_bak": "DNSMOS P.835 background-noise quality (1-5): how unobtrusive the noise around the speech is",
    "dnsmos_ovrl": "DNSMOS P.835 overall quality (1-5)",
    GAP_PREFIX + "dnsmos_p808": "the experiment's DNSMOS P.808 minus that of the ground-truth mels through the "
                                "same vocoder, on the same utterances: the paper's MOS gap to vocoded speech, "
                                "measured by a predictor instead of listeners (0 = as natural as the vocoder allows)",
    GAP_PREFIX + "dnsmos_ovrl": "likewise for DNSMOS OVRL",
    "speaker_sim": "cosine similarity of GE2E speaker embeddings (resemblyzer's pretrained encoder) of the "
                   "system's utterance and the ground truth of the same utterance (1 for the ground truth itself; "
                   "the floor, a different speaker's ground truth, is given below the table)",
}


def is_number(value: Any) -> bool:
    """A finite int/float (not bool, not None, not NaN)."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and math.isfinite(value)


def _overrides(exp: ExperimentConfig, model_section: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    return {**dict((model_section or {}).get("overrides") or {}), **dict(exp.overrides)}


def removed_parts(exp: Mapping[str, Any] | ExperimentConfig, model_section: Optional[Mapping[str, Any]] = None) -> list[str]:
    """The parts of the paper's model an experiment switches off (empty: the full model)."""
    exp = ExperimentConfig.from_section(exp)
    overrides = _overrides(exp, model_section)
    return [ABLATIONS[k] for k in ABLATIONS if overrides.get(k) is False]


def _streaming(exp: ExperimentConfig, model_section: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """The experiment's streaming section (its own, else the model section's); None: offline."""
    if exp.streaming is not None:
        return dict(exp.streaming)
    if (model_section or {}).get("streaming") is not None and not exp.model_from:
        return dict(model_section["streaming"])  # type: ignore[index]
    return {} if _overrides(exp, model_section).get("streaming") else None


def _decoding(exp: ExperimentConfig, model_section: Optional[Mapping[str, Any]]) -> list[str]:
    """What the label says of a streaming model and of how it was decoded."""
    tags = []
    if exp.model_from:
        tags.append(f"model of {exp.model_from}")
    elif _streaming(exp, model_section) is not None:
        tags.append("streaming")
    if exp.decode_chunk_frames:
        tags.append(f"chunks of {exp.decode_chunk_frames}")
    elif tags:
        tags.append("whole clip")
    if exp.weights == "raw":
        tags.append("raw weights")
    if exp.temperature is not None:
        tags.append(f"temperature {exp.temperature:g}")
    if exp.train:
        tags.append(", ".join(f"{k} {v}" for k, v in sorted(exp.train.items())))
    return tags


def experiment_label(exp: Mapping[str, Any] | ExperimentConfig, model_section: Optional[Mapping[str, Any]] = None) -> str:
    """The row label, as in the paper's ablation table: the name and what it removes (or, for a
    streaming model, how it was decoded)."""
    exp = ExperimentConfig.from_section(exp)
    removed = removed_parts(exp, model_section)
    if removed:
        return f"{exp.name} (w/o {', '.join(removed)})"
    tags = _decoding(exp, model_section)
    return f"{exp.name} ({', '.join(tags)})" if tags else f"{exp.name} (full model)"


def ablation_order(experiments: Sequence[Mapping[str, Any]],
                   model_section: Optional[Mapping[str, Any]] = None) -> list[Mapping[str, Any]]:
    """Full models first, then the ablations, each group in config order (stable)."""
    return sorted(experiments, key=lambda e: bool(removed_parts(e, model_section)))


def describe_experiment(exp: Mapping[str, Any] | ExperimentConfig, model_section: Optional[Mapping[str, Any]] = None) -> str:
    """One line saying what an experiment is: its description, preset, ablations and overrides."""
    exp = ExperimentConfig.from_section(exp)
    parts = []
    if exp.description:
        parts.append(exp.description.strip())
    if exp.model_from:  # no model of its own: what it decodes with, and how
        parts.append(f"the trained model of {exp.model_from}")
        if exp.decode_chunk_frames:
            parts.append(f"decoded chunk by chunk, {exp.decode_chunk_frames} video frames a chunk")
        if exp.weights == "raw":
            parts.append("its raw weights (not the moving average)")
        if exp.temperature is not None:
            parts.append(f"post-net temperature {exp.temperature:g}")
        return "; ".join(parts)
    preset = exp.preset or (model_section or {}).get("preset")
    if preset:
        parts.append(f"preset {preset}")
    overrides = _overrides(exp, model_section)
    removed = removed_parts(exp, model_section)
    parts.append("without " + ", ".join(removed) if removed else "full model")
    rest = {k: v for k, v in sorted(overrides.items()) if k not in ABLATIONS}
    if rest:
        parts.append("overrides " + ", ".join(f"{k}={v}" for k, v in rest.items()))
    streaming = _streaming(exp, model_section)
    if streaming is not None:
        parts.append("streaming mode" + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(streaming.items())) + ")"
                                         if streaming else ""))
    if exp.decode_chunk_frames:
        parts.append(f"decoded chunk by chunk, {exp.decode_chunk_frames} video frames a chunk")
    if exp.train:
        parts.append("training keys " + ", ".join(f"{k}={v}" for k, v in sorted(exp.train.items())))
    if exp.temperature is not None:
        parts.append(f"post-net temperature {exp.temperature:g}")
    return "; ".join(parts)
