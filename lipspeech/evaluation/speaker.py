"""Speaker similarity: cosine between GE2E speaker embeddings (Wan et al., ICASSP 2018) of two utterances.

The encoder is the pretrained one that ships inside the ``resemblyzer`` wheel (``pretrained.pt``:
a 3-layer LSTM of 256 units over 40 mel bands, a linear layer to 256 dimensions, ReLU, L2
normalisation). Only that weights file is read, found with :func:`importlib.util.find_spec`
without importing the package: resemblyzer's import chain wants ``webrtcvad`` (an sdist that
must be compiled, or the ``webrtcvad-wheels`` substitute, which does not satisfy its requirement
name), the PyPI ``typing`` backport, and ``scipy.ndimage.morphology`` (deprecated, to be removed
in SciPy 2). The network is defined here, so lipspeech installs resemblyzer with ``--no-deps``
and uses none of its code.

What is computed for one utterance (16 kHz mono float):

1. Volume raised (never lowered) to -30 dBFS RMS, as the encoder was trained.
2. Long silences shortened: 30 ms windows are speech when their RMS is within
   ``silence_db`` (40) dB of the loudest window's; the decisions are smoothed by a moving
   average over 8 windows (rounded) and dilated by 3 windows on each side, and only those
   windows are kept. The encoder was trained with WebRTC's VAD in that place; an energy gate is
   used instead (no compiled dependency, deterministic, and on clean or vocoded single-speaker
   speech it keeps the same words and drops the same pauses).
3. Mel spectrogram: power, 40 bands, 25 ms window (n_fft 400), 10 ms hop (librosa, centred).
4. Partial utterances of 160 frames (1.6 s) every 77 frames (1.3 per second); the last is kept
   (zero-padded) when at least 75 % of it is signal; an utterance shorter than one partial is
   zero-padded to one. Each partial is embedded; their mean, L2-normalised, is the utterance's
   embedding.

Similarity is the cosine (dot product) of two such unit vectors: 1 for the same signal; the
encoder's ReLU makes every component non-negative, so unrelated voices still score well above 0
(hence the report's floor: a different speaker's ground truth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lipspeech.core.installed import package_folder
from lipspeech.core.timing import HOP_LENGTH, SAMPLE_RATE
from lipspeech.evaluation.families import MetricUnavailable

N_MELS, N_FFT = 40, 400
PARTIAL_FRAMES, PARTIAL_STEP, MIN_COVERAGE = 160, 77, 0.75
TARGET_DBFS = -30.0
VAD_WINDOW = 480  # 30 ms
VAD_SMOOTH, VAD_DILATE = 8, 3


class SpeakerUnavailable(MetricUnavailable):
    """The GE2E weights (package resemblyzer) are not installed."""


def weights_path() -> Path:
    """``pretrained.pt`` of the installed resemblyzer wheel (not imported)."""
    path = package_folder("resemblyzer", SpeakerUnavailable(
        "package resemblyzer (the GE2E speaker encoder's weights) is not installed: pip install --no-deps "
        "resemblyzer (or remove speaker from evaluate.metrics)")) / "pretrained.pt"
    if not path.is_file():
        raise SpeakerUnavailable(f"{path}: not found (a resemblyzer release without its pretrained encoder?)")
    return path


class GE2EEncoder(nn.Module):
    """GE2E speaker encoder: (B, F, 40) mel power frames -> (B, 256) unit-norm embeddings."""

    def __init__(self, n_mels: int = N_MELS, hidden: int = 256, layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        emb = torch.relu(self.linear(hidden[-1]))
        return emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def pretrained(cls, path: Path | None = None) -> "GE2EEncoder":
        """The resemblyzer wheel's weights (or ``path``), in eval mode on the CPU."""
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)["model_state"]
        model = cls()
        # the checkpoint also holds the training loss's similarity scale and bias: not part of the encoder
        model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        return model.eval()


def normalize_volume(audio: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise (never lower) the RMS level of (N,) audio to ``target_dbfs``."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms <= 0:
        return audio
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    return audio * np.float32(10.0 ** (gain_db / 20.0)) if gain_db > 0 else audio


def speech_windows(audio: np.ndarray, silence_db: float = 40.0) -> np.ndarray:
    """(N,) audio -> (N // 30 ms,) bool: its 30 ms windows that are speech or near it (module docstring,
    step 2); all False for silence."""
    from scipy.ndimage import binary_dilation

    n = audio.size // VAD_WINDOW
    frames = audio[: n * VAD_WINDOW].reshape(n, VAD_WINDOW).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    peak = rms.max() if n else 0.0
    if peak <= 0:
        return np.zeros(n, bool)
    speech = (rms >= peak * 10.0 ** (-silence_db / 20.0)).astype(np.float64)
    smooth = np.convolve(speech, np.ones(VAD_SMOOTH) / VAD_SMOOTH, mode="same") >= 0.5
    return binary_dilation(smooth, np.ones(2 * VAD_DILATE + 1, bool))


def trim_long_silences(audio: np.ndarray, silence_db: float = 40.0) -> np.ndarray:
    """Keep the 30 ms windows of (N,) audio that are speech or near it (module docstring, step 2)."""
    keep = speech_windows(audio, silence_db)
    if not keep.any():
        return audio
    n = keep.size
    return audio[: n * VAD_WINDOW].reshape(n, VAD_WINDOW)[keep].reshape(-1).astype(np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(N,) audio -> (F, 40) float32 mel power frames (10 ms hop)."""
    import librosa

    return librosa.feature.melspectrogram(y=np.asarray(audio, np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
                                          hop_length=HOP_LENGTH, n_mels=N_MELS).astype(np.float32).T


def partial_starts(n_samples: int) -> list[int]:
    """Start frames of the partial utterances of an ``n_samples`` signal (module docstring, step 4)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP_LENGTH))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + PARTIAL_STEP + 1), PARTIAL_STEP))
    last = starts[-1] * HOP_LENGTH
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


class SpeakerScorer:
    """Utterance embeddings and their cosine similarity.

    Args:
        encoder: a GE2E encoder (default: the pretrained one).
        silence_db: the silence gate of step 2.
    """

    def __init__(self, encoder: GE2EEncoder | None = None, silence_db: float = 40.0):
        self.encoder = encoder or GE2EEncoder.pretrained()
        self.silence_db = float(silence_db)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz audio -> (256,) float32 unit-norm embedding."""
        x = np.nan_to_num(np.asarray(audio, np.float32))
        x = trim_long_silences(normalize_volume(x), self.silence_db)
        starts = partial_starts(x.size)
        need = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
        if need > x.size:
            x = np.pad(x, (0, need - x.size))
        mel = mel_frames(x)
        partials = np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])
        with torch.inference_mode():
            emb = self.encoder(torch.from_numpy(partials)).mean(0)
        return (emb / emb.norm().clamp_min(1e-12)).numpy()

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two unit embeddings."""
        return float(np.dot(a.astype(np.float64), b.astype(np.float64)))
