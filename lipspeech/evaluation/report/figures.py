"""The examples: audio players' WAV bytes, mels and F0 of each system, one PNG per example.
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lipspeech.core.settings import MelConfig, ProsodyConfig
from lipspeech.core.store import Store, StoreError, one_line
from lipspeech.core.timing import FPS, HOP_LENGTH, SAMPLE_RATE, SAMPLES_PER_FRAME
from lipspeech.data.manifest import shard_name
from lipspeech.evaluation.report.columns import GROUND_TRUTH, is_number
from lipspeech.evaluation.report.systems import SystemResult


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

    def __init__(self, shards: Mapping[str, Mapping[int, Path]], manifest: pd.DataFrame):
        self.shards = shards
        self.shard_of = dict(zip(manifest["utt"], manifest["shard"]))
        self._stores: dict[tuple[str, int], tuple[Store, dict[str, int]]] = {}

    def _row(self, folder: str, stage: str, utt: str) -> tuple[Store, int]:
        shard = int(self.shard_of[utt])
        key = (folder, shard)
        if key not in self._stores:
            path = self.shards.get(folder, {}).get(shard)
            if path is None:
                raise StoreError(f"no {folder} store given for shard {shard_name(shard)} ({utt})")
            store = Store(path, expect_stage=stage)
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
        self.prosody = ProsodyConfig.from_section(prosody_cfg)
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
        lf0, voiced, energy = utterance_prosody(np.asarray(audio, dtype=np.float32), n_frames, self.prosody,
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
    shards: Mapping[str, Mapping[int, Path]], manifest: pd.DataFrame, systems: Sequence[SystemResult], utts: Sequence[str],
    mel_cfg: Mapping[str, Any], prosody_cfg: Mapping[str, Any], f0_silence_db: float, dpi: int,
    progress: bool = False,
) -> list[Example]:
    """Audio, transcripts, mels, F0 and the figure of each example utterance."""
    reader = ExampleReader(shards, manifest)
    analyser = SignalAnalyser(mel_cfg, prosody_cfg, f0_silence_db)
    log_floor = float(MelConfig.from_section(mel_cfg).log_floor)
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
            ex.png = example_figure(ex, dpi, log_floor)
        out.append(ex)
    return out
