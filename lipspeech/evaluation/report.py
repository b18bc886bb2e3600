"""The report stage: one self-contained HTML page and a Markdown summary per corpus.

Inputs (under ``results/{corpus}/``)
    ``eval/{system}/summary.json`` and ``eval/{system}/metrics.parquet`` of every
    system (stage evaluate), ``eval/{system}/audio.parquet`` of every vocoded
    system (stage vocode), and for the ground truth the test split's
    ``audio/``, ``mel/`` and ``prosody/`` shards and ``manifest.parquet``.
Systems (the rows of the metrics table, in this order)
    ``ground_truth`` (the decoded audio itself: the ceiling every metric can
    reach with this ASR), ``gt_vocoded`` (ground-truth mels through the
    vocoder: the ceiling of any model that predicts mels for this vocoder),
    then every experiment of the config.
Outputs
    ``report.html``: header, metrics table, what each row is, WER per speaker,
    and for ``report.n_examples`` test utterances each system's audio player
    and ASR transcript beside the reference text, with one PNG of the mel
    spectrograms (ground truth, then each system) and the F0 contours. Audio
    is embedded as 16-bit PCM WAV and images as PNG, both base64 ``data:``
    URIs; the CSS is inline and nothing is fetched from anywhere, so the file
    can be mailed or archived as it is. A few lines of inline JavaScript record
    on each ``<audio>`` its decoded duration (``data-duration``) and on each
    ``<img>`` its decoded width (``data-natural-width``) once the page has
    loaded, so a headless browser can confirm the players and images work.
    ``report.md``: the same metrics table, what each row is, WER per speaker,
    the examples' transcripts, the report config, its hash and the git commit.
Example F0
    Ground truth: the prosody store (25 Hz log-F0 and voiced mask). Systems: the
    same :func:`lipspeech.features.prosody.utterance_prosody` on their audio
    with the same ``prosody`` config, so both curves have one definition.
Example mels
    Ground truth: the mel store. Systems: the mel of the waveform one hears
    (:class:`lipspeech.features.audio.MelSpectrogram`, the targets' definition),
    not the model's predicted mel, so vocoder artefacts show.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from lipspeech import __version__
from lipspeech.config import config_hash
from lipspeech.data.manifest import shard_name
from lipspeech.evaluation.compare import GAP_METRICS, compare_systems
from lipspeech.evaluation.families import FIGURES
from lipspeech.evaluation.units_section import UnitsAnalysis, load_units_analysis, units_html, units_markdown, units_numbers
from lipspeech.features.common import StageError
from lipspeech.store import Store, StoreError, one_line, write_text_atomic
from lipspeech.timing import FPS, HOP_LENGTH, SAMPLE_RATE, SAMPLES_PER_FRAME

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


def _overrides(exp: Mapping[str, Any], model_section: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    return {**dict((model_section or {}).get("overrides") or {}), **dict(exp.get("overrides") or {})}


def removed_parts(exp: Mapping[str, Any], model_section: Optional[Mapping[str, Any]] = None) -> list[str]:
    """The parts of the paper's model an experiment switches off (empty: the full model)."""
    overrides = _overrides(exp, model_section)
    return [ABLATIONS[k] for k in ABLATIONS if overrides.get(k) is False]


def experiment_label(exp: Mapping[str, Any], model_section: Optional[Mapping[str, Any]] = None) -> str:
    """The row label, as in the paper's ablation table: the name and what it removes."""
    removed = removed_parts(exp, model_section)
    return f"{exp['name']} (w/o {', '.join(removed)})" if removed else f"{exp['name']} (full model)"


def ablation_order(experiments: Sequence[Mapping[str, Any]],
                   model_section: Optional[Mapping[str, Any]] = None) -> list[Mapping[str, Any]]:
    """Full models first, then the ablations, each group in config order (stable)."""
    return sorted(experiments, key=lambda e: bool(removed_parts(e, model_section)))


def describe_experiment(exp: Mapping[str, Any], model_section: Optional[Mapping[str, Any]] = None) -> str:
    """One line saying what an experiment is: its description, preset, ablations and overrides."""
    parts = []
    if exp.get("description"):
        parts.append(str(exp["description"]).strip())
    preset = exp.get("preset") or (model_section or {}).get("preset")
    if preset:
        parts.append(f"preset {preset}")
    overrides = _overrides(exp, model_section)
    removed = removed_parts(exp, model_section)
    parts.append("without " + ", ".join(removed) if removed else "full model")
    rest = {k: v for k, v in sorted(overrides.items()) if k not in ABLATIONS}
    if rest:
        parts.append("overrides " + ", ".join(f"{k}={v}" for k, v in rest.items()))
    return "; ".join(parts)


def load_system(results: Path, name: str, kind: str, description: str, label: Optional[str] = None) -> SystemResult:
    """Read one system's summary.json, metrics.parquet and (vocoded systems) audio.parquet.

    A missing or unreadable file is recorded in ``problems`` (the report shows it)
    instead of stopping the report: the other systems' results still get a page.
    """
    res = SystemResult(name, label or ROW_LABELS.get(name, name), kind, description)
    folder = results / "eval" / name
    try:
        summary = json.loads((folder / "summary.json").read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        res.summary = summary
    except (OSError, ValueError) as exc:
        res.problems.append(f"{folder / 'summary.json'}: {one_line(exc)}")
    try:
        metrics = pq.read_table(folder / "metrics.parquet").to_pandas()
        missing = {"utt", "wer"} - set(metrics.columns)
        if missing:
            raise ValueError(f"no column(s) {', '.join(sorted(missing))}")
        res.metrics = metrics.set_index("utt", drop=False)
    except (OSError, ValueError) as exc:
        res.problems.append(f"{folder / 'metrics.parquet'}: {one_line(exc)}")
    if res.vocoded:
        try:
            res.audio = Store(folder / "audio.parquet", expect_stage="vocode")
            vocoder = res.audio.meta.extra.get("vocoder")
            if name == GT_VOCODED and vocoder:
                res.description = f"{res.description}; vocoder: {vocoder}"
        except StoreError as exc:
            res.problems.append(one_line(exc))
    return res


def load_systems(
    results: Path, experiments: Sequence[Mapping[str, Any]], model_section: Optional[Mapping[str, Any]] = None,
    systems: Optional[Sequence[str]] = None,
) -> list[SystemResult]:
    """The report's rows: the two references, then each experiment, full models first (or just
    ``systems``, in that order)."""
    by_name = {e["name"]: e for e in ablation_order(experiments, model_section)}
    names = list(systems) if systems else [*REFERENCE_SYSTEMS, *by_name]
    out = []
    for name in names:
        if name == GROUND_TRUTH:
            out.append(load_system(results, name, "reference", "the decoded test audio itself: the ceiling of every "
                                   "metric with this ASR; signal metrics against itself are trivial"))
        elif name == GT_VOCODED:
            out.append(load_system(results, name, "reference", "the ground-truth mel spectrograms through the "
                                   "vocoder: the ceiling of a model that predicts mels perfectly"))
        elif name in by_name:
            out.append(load_system(results, name, "experiment", describe_experiment(by_name[name], model_section),
                                   experiment_label(by_name[name], model_section)))
        else:
            out.append(load_system(results, name, "experiment", "not an experiment of this config"))
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


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """(N,) float waveform in [-1, 1] -> a 16-bit PCM mono WAV file (clipped, NaN as 0)."""
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class ExampleTrack:
    """One system's take on one example utterance."""

    system: str
    label: str
    audio: Optional[np.ndarray]  # (N,) float32 16 kHz; None when the system has no audio for it
    hyp: Optional[str]
    wer: Optional[float]
    mel: Optional[np.ndarray] = None  # (4T, n_mels) log-mel
    f0: Optional[np.ndarray] = None  # (T,) Hz at 25 Hz, NaN where unvoiced
    note: str = ""


@dataclass
class Example:
    utt: str
    speaker: str
    text: str
    tracks: list[ExampleTrack]
    png: Optional[bytes] = None


class ExampleReader:
    """Ground-truth audio, mel and prosody of test utterances, read from their shards on demand."""

    def __init__(self, results: Path, manifest: pd.DataFrame):
        self.results = results
        self.shard_of = dict(zip(manifest["utt"], manifest["shard"]))
        self._stores: dict[tuple[str, int], tuple[Store, dict[str, int]]] = {}

    def _row(self, folder: str, stage: str, utt: str) -> tuple[Store, int]:
        shard = int(self.shard_of[utt])
        key = (folder, shard)
        if key not in self._stores:
            store = Store(self.results / folder / f"{shard_name(shard)}.parquet", expect_stage=stage)
            self._stores[key] = (store, store.row_index())
        store, index = self._stores[key]
        if utt not in index:
            raise StoreError(f"{store.path}: no row for {utt}")
        return store, index[utt]

    def audio(self, utt: str) -> np.ndarray:
        store, i = self._row("audio", "decode", utt)
        return store.array("audio", i)

    def mel(self, utt: str) -> np.ndarray:
        store, i = self._row("mel", "mel", utt)
        return store.array("mel", i)

    def f0(self, utt: str) -> np.ndarray:
        store, i = self._row("prosody", "prosody", utt)
        return voiced_f0(store.array("lf0", i), store.array("voiced", i))


def voiced_f0(lf0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """(T,) log-F0 and voiced mask -> (T,) F0 in Hz with NaN on unvoiced frames (gaps in the plot)."""
    return np.where(np.asarray(voiced).astype(bool), np.exp(np.asarray(lf0, dtype=np.float64)), np.nan)


class SignalAnalyser:
    """Mel and F0 of a system's waveform, with the definitions of the mel and prosody stages."""

    def __init__(self, mel_cfg: Mapping[str, Any], prosody_cfg: Mapping[str, Any], f0_silence_db: float):
        from lipspeech.features.audio import AudioConfig, MelSpectrogram

        self.module = MelSpectrogram(AudioConfig.from_section(mel_cfg))
        self.prosody_cfg = dict(prosody_cfg)
        self.f0_silence_db = float(f0_silence_db)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """(N,) -> (N // 160, n_mels) log-mel."""
        from lipspeech.features.mel import utterance_mel

        return utterance_mel(audio, len(audio) // SAMPLES_PER_FRAME, self.module)

    def f0(self, audio: np.ndarray) -> np.ndarray:
        """(N,) -> (N // 640,) F0 in Hz per video frame, NaN where unvoiced (or silent, as in the metrics)."""
        from lipspeech.evaluation.metrics import loud_frames
        from lipspeech.features.prosody import utterance_prosody

        n_frames = len(audio) // SAMPLES_PER_FRAME
        lf0, voiced, energy = utterance_prosody(np.asarray(audio, dtype=np.float32), n_frames, self.prosody_cfg,
                                                self.module)
        return voiced_f0(lf0, voiced & loud_frames(energy, self.f0_silence_db))


def example_figure(example: Example, dpi: int, log_floor: float) -> bytes:
    """One PNG: a mel spectrogram per track (ground truth first) and all F0 contours on one axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tracks = [t for t in example.tracks if t.mel is not None]
    n = len(tracks)
    fig = Figure(figsize=(7.0, 0.95 * n + 1.6))
    FigureCanvasAgg(fig)  # the Agg canvas, attached to this figure only: no pyplot state, no display
    grid = fig.add_gridspec(n + 1, 1, height_ratios=[1.0] * n + [1.6], hspace=0.55)
    ref = next((t.mel for t in tracks if t.system == GROUND_TRUTH), tracks[0].mel if tracks else None)
    # one colour scale for every panel (the ground truth's range), so loudness differences show
    vmax = float(np.max(ref)) if ref is not None and ref.size else 0.0
    vmin = max(float(np.log(log_floor)), vmax - 12.0)
    axes = []
    for k, t in enumerate(tracks):
        ax = fig.add_subplot(grid[k], sharex=axes[0] if axes else None)
        seconds = t.mel.shape[0] * HOP_LENGTH / SAMPLE_RATE
        ax.imshow(t.mel.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                  vmin=vmin, vmax=vmax, extent=(0.0, seconds, 0, t.mel.shape[1]))
        ax.set_title(f"mel: {t.label}", fontsize=7, loc="left", pad=2)
        ax.set_ylabel("bin", fontsize=6)
        ax.tick_params(labelsize=6, length=2)
        axes.append(ax)
    ax = fig.add_subplot(grid[n], sharex=axes[0] if axes else None)
    colours = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan"]
    for k, t in enumerate(example.tracks):
        if t.f0 is None:
            continue
        times = (np.arange(len(t.f0)) + 0.5) / FPS
        gt = t.system == GROUND_TRUTH
        ax.plot(times, t.f0, color=colours[k % len(colours)], linewidth=1.6 if gt else 1.0, alpha=1.0 if gt else 0.85,
                label=t.label, marker=".", markersize=2)
    ax.set_title("F0 (Hz, voiced frames, 25 Hz)", fontsize=7, loc="left", pad=2)
    ax.set_xlabel("time (s)", fontsize=6)
    ax.tick_params(labelsize=6, length=2)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=5, loc="upper right", ncol=2, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.97, bottom=0.07)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def build_examples(
    results: Path, manifest: pd.DataFrame, systems: Sequence[SystemResult], utts: Sequence[str],
    mel_cfg: Mapping[str, Any], prosody_cfg: Mapping[str, Any], f0_silence_db: float, dpi: int,
    progress: bool = False,
) -> list[Example]:
    """Audio, transcripts, mels, F0 and the figure of each example utterance."""
    reader = ExampleReader(results, manifest)
    analyser = SignalAnalyser(mel_cfg, prosody_cfg, f0_silence_db)
    info = manifest.set_index("utt")
    out = []
    for utt in tqdm(list(utts), desc="report examples", unit="utt", disable=not progress):
        tracks = []
        for s in systems:
            row = s.metrics.loc[utt] if s.metrics is not None and utt in s.metrics.index else None
            hyp = row["hyp"] if row is not None and isinstance(row.get("hyp"), str) else None  # NaN: no transcript
            wer = float(row["wer"]) if row is not None and is_number(row["wer"]) else None
            t = ExampleTrack(s.name, s.label, None, hyp, wer)
            try:
                if s.name == GROUND_TRUTH:
                    t.audio = reader.audio(utt)
                    t.mel = reader.mel(utt)
                    t.f0 = reader.f0(utt)
                elif s.audio is not None:
                    index = s.audio.row_index()
                    if utt in index:
                        t.audio = s.audio.array("audio", index[utt])
                        t.mel = analyser.mel(t.audio)
                        t.f0 = analyser.f0(t.audio)
                    else:
                        t.note = "no audio for this utterance"
                else:
                    t.note = "no audio"
            except (StoreError, KeyError, ValueError) as exc:
                t.note = one_line(exc)
            tracks.append(t)
        text = info.at[utt, "text"]
        ex = Example(utt, str(info.at[utt, "speaker"]), text if isinstance(text, str) else "", tracks)
        if any(t.mel is not None for t in tracks):
            ex.png = example_figure(ex, dpi, float(mel_cfg["log_floor"]))
        out.append(ex)
    return out


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
    report_cfg: dict[str, Any]
    cfg_hash: str
    model_commits: dict[str, str]
    notes: list[str]
    chance_wer: Optional[float] = None  # random sentences of the ASR's grammar against the references
    comparison: dict[str, Any] = field(default_factory=dict)  # compare.compare_systems
    bootstrap: dict[str, Any] = field(default_factory=dict)  # resamples, seed
    units: Optional[UnitsAnalysis] = None  # the units-analysis stage's table, when given


def chance_line(data: ReportData) -> Optional[str]:
    """The chance level of the WER column, when the ASR decodes a grammar."""
    if not is_number(data.chance_wer):
        return None
    return (f"chance level: a random sentence of the ASR's grammar scores WER {_fmt_pct(data.chance_wer)}% "
            "against these references")


def _git_commit() -> str:
    from lipspeech.training.trainer import git_commit

    return git_commit()


def gather(
    results: Path, cfg: Mapping[str, Any], systems: Optional[Sequence[str]] = None, progress: bool = False,
) -> ReportData:
    """Read every input of the report (see the module docstring)."""
    report_cfg = dict(cfg["report"])
    try:
        manifest = Store(results / "manifest.parquet", expect_stage="manifest").df
    except StoreError as exc:
        raise StageError(one_line(exc)) from None
    test = manifest[manifest["split"] == "test"]
    rows = load_systems(results, cfg.get("experiments", []), cfg.get("model"), systems)
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
    chosen = select_examples(sorted(candidates), rows, int(report_cfg["n_examples"]), report_cfg["selection"])
    examples = build_examples(results, manifest, rows, chosen, cfg["mel"], cfg["prosody"],
                              cfg["evaluate"]["f0_silence_db"], int(report_cfg["dpi"]), progress=progress)
    speakers = {s.name: speaker_wer(s.metrics) for s in rows if s.metrics is not None}
    asr = sorted({str(s.summary["asr"]) for s in rows if s.summary.get("asr")})
    # every system is scored on the same test references; the ground truth's row comes first
    chance = next((s.summary["chance_wer"] for s in rows if is_number(s.summary.get("chance_wer"))), None)
    boot = {"resamples": int(cfg["evaluate"]["bootstrap_resamples"]), "seed": int(cfg["evaluate"]["bootstrap_seed"]),
            "level": 0.95}
    usable = {s.name: s.metrics for s in rows if s.usable}
    comparison = compare_systems(usable, [s.name for s in rows if s.kind == "experiment"],
                                 GT_VOCODED if GT_VOCODED in usable else None, boot["resamples"], boot["seed"])
    for s in rows:
        s.figures, s.ci95 = dict(s.summary), dict(s.summary.get("ci95") or {})
        for key, res in comparison["gap_to_vocoded"].get(s.name, {}).items():
            s.figures[GAP_PREFIX + key], s.ci95[GAP_PREFIX + key] = res["diff"], res["ci95"]
        s.significant = {k for k, res in comparison["vs_baseline"].get(s.name, {}).items() if res["significant"]}
    commits = {}
    for s in rows:
        run_cfg = results / "models" / s.name / "config.json"
        if s.kind == "experiment" and run_cfg.exists():
            try:
                commits[s.name] = str(json.loads(run_cfg.read_text()).get("git_commit", "unknown"))
            except ValueError:
                pass
    return ReportData(
        corpus=results.name if not cfg.get("corpus") else cfg["corpus"]["name"],
        n_test=len(test), n_speakers=int(test["speaker"].nunique()), git=_git_commit(),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__, asr=asr,
        systems=rows, speakers=speakers, examples=examples, report_cfg=report_cfg,
        cfg_hash=config_hash(report_cfg, dict(cfg["mel"]), dict(cfg["prosody"])), model_commits=commits, notes=notes,
        chance_wer=chance, comparison=comparison, bootstrap=boot,
    )


# ----------------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1100px;
 padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.2em 0}
table{border-collapse:collapse;font-size:.9em}th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4}
th{background:#f5f5f7;text-align:center}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.sys{min-width:9em;max-width:15em}td .ci{display:block;font-size:.75em;color:#777;white-space:nowrap}
sup.sig{color:#b00020;font-weight:600}tr.reference td{background:#fafafa;color:#555}
table.meta th{text-align:left;background:none;font-weight:600}
.legend,.small{font-size:.85em;color:#555}
section.example{margin:1.2em 0;padding:.8em;border:1px solid #e4e4e4;border-radius:6px}
.tracks{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:.6em;margin:.6em 0}
.track{background:#fafafa;padding:.5em;border-radius:4px}.track audio{width:100%;height:2.2em}
.hyp{font-family:ui-monospace,Menlo,monospace;font-size:.85em}
img.figure{max-width:100%;height:auto;display:block}
.notes li{color:#8a4b00}code{font-size:.9em}
"""

# Records, once the page has loaded, each player's decoded duration and each image's
# decoded width as DOM attributes: a headless browser (the tests) reads them back
# from the dumped DOM to confirm the embedded media work. Invisible to readers.
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-natural-width", String(img.naturalWidth));
  });
  var media = Array.prototype.slice.call(document.querySelectorAll("audio"));
  var left = media.length;
  function settle(a, ok) {
    if (a.hasAttribute("data-duration")) return;
    a.setAttribute("data-duration", ok ? String(a.duration) : "error");
    left -= 1;
    if (left === 0) document.body.setAttribute("data-media-checked", String(media.length));
  }
  if (left === 0) document.body.setAttribute("data-media-checked", "0");
  media.forEach(function (a) {
    a.addEventListener("loadedmetadata", function () { settle(a, true); });
    a.addEventListener("error", function () { settle(a, false); });
    if (a.readyState >= 1) settle(a, true);
    else if (a.error) settle(a, false);
  });
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt_pct(value: float) -> str:
    return format(value * 100, ".2f") if is_number(value) else MISSING


def cell_parts(s: SystemResult, m: Metric, best: Mapping[str, set[str]]) -> tuple[str, str, bool, bool]:
    """(value text, interval text, best experiment?, significantly different from the full model?)."""
    return (m.format(s.figures.get(m.key)), m.interval(s.ci95.get(m.key), signed=m.key.startswith(GAP_PREFIX)),
            s.name in best.get(m.key, ()), m.key in s.significant)


def difference_rows(data: ReportData) -> tuple[list[SystemResult], list[tuple[Metric, list[tuple[str, str, bool]]]]]:
    """The differences table: (experiments after the full model, [(metric, [(difference, interval,
    significant) per experiment])]); empty when there is one experiment or none."""
    diffs = data.comparison.get("vs_baseline") or {}
    exps = [s for s in data.systems if s.name in diffs]
    rows = []
    for key in (*HEADLINE, *DETAIL):
        if key.startswith(GAP_PREFIX):
            continue
        m = METRIC_BY_KEY[key]
        rows.append((m, [(m.format(diffs[s.name][key]["diff"], signed=True),
                          m.interval(diffs[s.name][key]["ci95"], signed=True),
                          bool(diffs[s.name][key]["significant"])) for s in exps]))
    return exps, rows


def floor_line(data: ReportData) -> Optional[str]:
    """The speaker-similarity floor: the ground truth against a different speaker's ground truth."""
    gt = next((s for s in data.systems if s.name == GROUND_TRUTH), None)
    if gt is None or not is_number(gt.figures.get("speaker_sim_other")):
        return None
    m = Metric("speaker_sim_other", "", "higher", 1.0, ".3f")
    ci = m.interval(gt.ci95.get("speaker_sim_other"))
    return (f"speaker sim floor: the ground truth against a different speaker's ground truth scores "
            f"{m.format(gt.figures['speaker_sim_other'])}{' ' + ci if ci else ''}")


def baseline_label(data: ReportData) -> Optional[str]:
    name = data.comparison.get("baseline")
    return next((s.label for s in data.systems if s.name == name), None)


def _table_html(data: ReportData, keys: Sequence[str], table_id: str) -> str:
    best = best_rows(data.systems)
    metrics = [METRIC_BY_KEY[k] for k in keys]
    head = "".join(f"<th>{_e(m.header)}</th>" for m in metrics)
    body = []
    for s in data.systems:
        cells = []
        for m in metrics:
            value, ci, is_best, sig = cell_parts(s, m, best)
            text = f"<b>{value}</b>" if is_best else value
            text += "<sup class='sig'>*</sup>" if sig else ""
            text += f"<span class='ci'>{_e(ci)}</span>" if ci else ""
            cells.append(f'<td class="num" data-metric="{m.key}">{text}</td>')
        n = s.summary.get("n", len(s.metrics) if s.metrics is not None else None)
        body.append(f'<tr class="{s.kind}" data-system="{_e(s.name)}"><td class="sys">{_e(s.label)}</td>'
                    f'<td class="num">{_e(n if n is not None else MISSING)}</td>{"".join(cells)}</tr>')
    return (f'<table id="{table_id}"><thead><tr><th>system</th><th>n</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _differences_html(data: ReportData) -> str:
    exps, rows = difference_rows(data)
    if not exps:
        return ""
    head = "".join(f"<th>{_e(s.label)}</th>" for s in exps)
    body = []
    for m, cells in rows:
        tds = "".join(f'<td class="num" data-system="{_e(s.name)}">{"<b>" if sig else ""}{_e(d)}'
                      f'{"*</b>" if sig else ""}<span class="ci">{_e(ci)}</span></td>'
                      for s, (d, ci, sig) in zip(exps, cells))
        body.append(f'<tr data-metric="{m.key}"><td>{_e(m.header)}</td>{tds}</tr>')
    return (f"<h2>Differences to the full model: {_e(baseline_label(data))}</h2>"
            f"<p class='legend'>{_e(DIFF_LEGEND.format(**data.bootstrap))}</p>"
            f'<table id="differences"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table>")


def _rows_html(data: ReportData) -> str:
    items = []
    for s in data.systems:
        commit = data.model_commits.get(s.name)
        extra = f" Trained at commit <code>{_e(commit[:12])}</code>." if commit else ""
        items.append(f"<dt><b>{_e(s.label)}</b></dt><dd>{_e(s.description)}.{extra}</dd>")
    cols = "".join(f"<li><b>{_e(m.label)}</b> {_e(m.arrow)}: {_e(METRIC_NOTES[m.key])}</li>"
                   for m in (METRIC_BY_KEY[k] for k in (*HEADLINE, *DETAIL)))
    return f"<dl>{''.join(items)}</dl><p class='small'>Columns:</p><ul class='small'>{cols}</ul>"


def _speakers_table(data: ReportData, fmt_cell, header) -> list[list[str]]:
    """Rows (speaker, n, WER per system) shared by the HTML and the Markdown page."""
    names = [s for s in data.systems if s.name in data.speakers]
    speakers = sorted({spk for s in names for spk in data.speakers[s.name]})
    table = [header(["speaker", "n", *[s.label for s in names]])]
    for spk in speakers:
        n = max((data.speakers[s.name].get(spk, (0.0, 0))[1] for s in names), default=0)
        table.append([spk, str(n), *[fmt_cell(data.speakers[s.name].get(spk, (float("nan"), 0))[0]) for s in names]])
    return table


def _example_html(ex: Example) -> str:
    cards = []
    for t in ex.tracks:
        if t.audio is not None:
            player = (f'<audio controls preload="metadata" data-system="{_e(t.system)}" data-utt="{_e(ex.utt)}" '
                      f'src="{data_uri(wav_bytes(t.audio), "audio/wav")}"></audio>')
        else:
            player = f'<p class="small">no audio{": " + _e(t.note) if t.note else ""}</p>'
        hyp = _e(t.hyp) if t.hyp is not None else MISSING
        wer = f"WER {_fmt_pct(t.wer)}%" if t.wer is not None else f"WER {MISSING}"
        cards.append(f'<div class="track"><b>{_e(t.label)}</b>{player}'
                     f'<div class="hyp">ASR: {hyp}</div><div class="small">{wer}</div></div>')
    img = ""
    if ex.png is not None:
        img = (f'<img class="figure" alt="mel spectrograms and F0 of {_e(ex.utt)}" '
               f'src="{data_uri(ex.png, "image/png")}">')
    return (f'<section class="example" data-utt="{_e(ex.utt)}"><h3>{_e(ex.utt)} '
            f'<span class="small">(speaker {_e(ex.speaker)})</span></h3>'
            f'<div>reference: <span class="hyp">{_e(ex.text)}</span></div>'
            f'<div class="tracks">{"".join(cards)}</div>{img}</section>')


def render_html(data: ReportData) -> str:
    """The whole self-contained page."""
    meta = [
        ("corpus", data.corpus), ("test utterances", f"{data.n_test} ({data.n_speakers} speakers)"),
        ("ASR", "; ".join(data.asr) or MISSING), ("lipspeech", data.version), ("git commit", data.git),
        ("generated", data.date),
    ]
    if chance_line(data):
        meta.insert(3, ("chance WER", f"{_fmt_pct(data.chance_wer)}% (random sentences of the ASR's grammar)"))
    meta_html = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in meta)
    sp_rows = _speakers_table(data, lambda v: _fmt_pct(v), lambda h: h)
    speakers_html = ""
    if len(sp_rows) > 1:
        head = "".join(f"<th>{_e(h)}</th>" for h in sp_rows[0])
        body = "".join("<tr>" + f"<td>{_e(r[0])}</td>" + "".join(f'<td class="num">{_e(c)}</td>' for c in r[1:])
                       + "</tr>" for r in sp_rows[1:])
        speakers_html = (f"<h2>WER per speaker (%)</h2><table id='speakers'><thead><tr>{head}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
    examples_html = "".join(_example_html(ex) for ex in data.examples)
    if data.examples:
        how = ("closest to the median WER of the experiments" if data.report_cfg["selection"] == "median_wer"
               else "first by id")
        examples_html = (f"<h2>Examples</h2><p class='small'>{len(data.examples)} test utterances ({how}). Mels of "
                         "each system's waveform; F0 of the ground truth from the prosody store, of the systems from "
                         "their audio (same WORLD settings).</p>" + examples_html)
    notes_html = ""
    if data.notes:
        notes_html = "<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in data.notes) + "</ul>"
    floor = floor_line(data)
    legend = LEGEND.format(**data.bootstrap) + (f" {floor[0].upper()}{floor[1:]}." if floor else "")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>lipspeech report: {_e(data.corpus)}</title><style>{CSS}</style></head><body>"
        f"<h1>lipspeech report: {_e(data.corpus)}</h1><table class='meta'>{meta_html}</table>"
        f"<h2>Metrics</h2>{_table_html(data, HEADLINE, 'metrics')}<p class='legend'>{_e(legend)}</p>"
        f"<h3>Signal, prosody and DNSMOS components</h3>{_table_html(data, DETAIL, 'metrics-detail')}"
        f"{_differences_html(data)}{units_html(data.units, int(data.report_cfg['dpi']), data_uri) if data.units else ''}"
        f"<h2>What each row is</h2>{_rows_html(data)}{speakers_html}{examples_html}{notes_html}"
        f"<p class='small'>report config {_e(json.dumps(data.report_cfg, sort_keys=True))}, hash {_e(data.cfg_hash)}"
        f"</p><script>{CHECK_SCRIPT}</script></body></html>\n"
    )


# ------------------------------------------------------------------------------------- Markdown

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
        *_differences_md(data), *(units_markdown(data.units, _md_table) if data.units else []), "",
        "## What each row is", "",
    ]
    for s in data.systems:
        commit = data.model_commits.get(s.name)
        lines.append(f"- **{s.label}**: {s.description}." + (f" Trained at commit `{commit[:12]}`." if commit else ""))
    lines += ["", "Columns:", ""]
    lines += [f"- **{m.label}** {m.arrow}: {METRIC_NOTES[m.key]}" for m in (METRIC_BY_KEY[k] for k in (*HEADLINE, *DETAIL))]
    sp_rows = _speakers_table(data, _fmt_pct, lambda h: h)
    if len(sp_rows) > 1:
        lines += ["", "## WER per speaker (%)", "", _md_table(sp_rows)]
    if data.examples:
        lines += ["", "## Examples (ASR transcripts)", ""]
        for ex in data.examples:
            lines += [f"### {ex.utt} (speaker {ex.speaker})", "", f"- reference: {ex.text}"]
            for t in ex.tracks:
                wer = f"WER {_fmt_pct(t.wer)}%" if t.wer is not None else f"WER {MISSING}"
                lines.append(f"- {t.label}: {t.hyp if t.hyp is not None else MISSING} ({wer})")
            lines.append("")
    if data.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in data.notes]
    lines += ["", "## Configuration", "",
              f"report config hash `{data.cfg_hash}` (report, mel and prosody sections):", "",
              "```json", json.dumps(data.report_cfg, indent=1, sort_keys=True), "```", ""]
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
            "units_analysis": units_numbers(data.units) if data.units else None}


def build_report(
    results: Path, cfg: Mapping[str, Any], html_out: Path, md_out: Path, systems: Optional[Sequence[str]] = None,
    progress: bool = False, json_out: Optional[Path] = None, units_analysis: Optional[Path] = None,
) -> ReportData:
    """Read the results, write report.html, report.md and (``json_out``) report.json atomically;
    returns what was shown. ``units_analysis``: the units-analysis stage's table, for its section."""
    data = gather(results, cfg, systems, progress=progress)
    if units_analysis is not None:
        data.units = load_units_analysis(units_analysis)
    write_text_atomic(html_out, render_html(data))
    write_text_atomic(md_out, render_markdown(data))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report_numbers(data), indent=1, allow_nan=False) + "\n")
    return data
