"""The mel spectrogram, defined once: :class:`AudioConfig` and :class:`MelSpectrogram`.

The acoustic model's target, the vocoder's input and the evaluation's mel
distances all come from this module, so they cannot drift apart.

Framing (the center/padding choice)
-----------------------------------
A clip of ``T`` video frames has ``N = T * 640`` samples (decode guarantees it).
We want exactly ``T * 4`` mel frames, each centred inside its own 10 ms hop. So
instead of ``torch.stft(center=True)`` (which pads ``n_fft // 2`` and yields
``N // hop + 1`` frames, centred on hop *boundaries*) we reflect-pad
``(n_fft - hop) // 2`` samples on each side and call ``center=False``
(the HiFi-GAN convention). Then

    n_frames = (N + n_fft - hop - n_fft) // hop + 1 = N / hop = 4 T,

and frame ``k`` is centred on sample ``k * hop + hop / 2``: the four mel frames
of video frame ``t`` sit symmetrically inside its 40 ms span
``[640 t, 640 (t + 1))``. The count is exact for any ``N`` divisible by the hop;
:func:`lipspeech.core.timing.fit_length` is still applied by the stage (a no-op on
decoded audio) so that the length rule holds for any input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from lipspeech.core.settings import MelConfig
from lipspeech.core.timing import HOP_LENGTH, SAMPLE_RATE


@dataclass(frozen=True)
class AudioConfig:
    """One mel definition for the model, the vocoder and the evaluation.

    Sample rate and hop are the fixed time axes of :mod:`lipspeech.core.timing`;
    the rest are the keys of the config's ``mel`` section (:class:`MelConfig`,
    :meth:`from_section`; its schema holds the defaults: :meth:`default`).
    """

    sample_rate: int = field(default=SAMPLE_RATE, kw_only=True)
    n_fft: int
    win_length: int
    hop_length: int = field(default=HOP_LENGTH, kw_only=True)
    n_mels: int
    fmin: float
    fmax: float
    log_floor: float

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2:g} (got {self.fmin}, {self.fmax})")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even (symmetric padding)")

    @classmethod
    def from_section(cls, mel: MelConfig | Mapping[str, Any]) -> "AudioConfig":
        """Build from the config's ``mel`` section, typed or the validated mapping (hop and
        sample rate are fixed). Frequencies and floor become floats: YAML's ``fmin: 0`` is an
        int, and the mel stores record this definition."""
        mel = MelConfig.from_section(mel)
        return cls(
            n_fft=mel.n_fft, win_length=mel.win_length, n_mels=mel.n_mels,
            fmin=float(mel.fmin), fmax=float(mel.fmax), log_floor=float(mel.log_floor),
        )

    @classmethod
    def default(cls) -> "AudioConfig":
        """The schema's ``mel`` defaults."""
        return cls.from_section(MelConfig.default())

    @property
    def pad(self) -> int:
        """Reflect padding on each side so that frames = samples / hop (see module docstring)."""
        return (self.n_fft - self.hop_length) // 2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """Slaney-style mel filters (librosa), (n_mels, n_fft // 2 + 1) float32."""
    import librosa  # imported here: librosa pulls in numba, slow to import for stages that never need it

    return librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=False, norm="slaney",
    ).astype(np.float32)


def frame_pad(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Pad (B, N) audio by (n_fft - hop) // 2 on each side: reflect, or zeros when too short to reflect."""
    pad = (n_fft - hop) // 2
    mode = "reflect" if x.shape[-1] > pad else "constant"
    return F.pad(x.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)


class MelSpectrogram(torch.nn.Module):
    """Log-mel spectrogram (and the linear magnitude behind it) of 16 kHz audio.

    The window and the filterbank are buffers, so ``.to(device)`` moves them with
    the module that owns this one; nothing is read from disk.

    Args:
        cfg: the mel definition.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(cfg)), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude.

        Args:
            audio: (B, N) or (N,) float waveform.

        Returns:
            (B, N // hop, n_fft // 2 + 1) magnitude (batch dim dropped for 1-D input).
        """
        squeeze = audio.dim() == 1
        x = audio.unsqueeze(0) if squeeze else audio
        x = frame_pad(x.float(), self.cfg.n_fft, self.cfg.hop_length)
        spec = torch.stft(
            x, n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_length, win_length=self.cfg.win_length,
            window=self.window, center=False, return_complex=True,
        )
        mag = spec.abs().transpose(1, 2)
        return mag[0] if squeeze else mag

    def linear_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """(..., F) magnitude -> (..., n_mels) mel energies (not log-compressed)."""
        return magnitude @ self.mel_basis.T

    def compress(self, mel: torch.Tensor) -> torch.Tensor:
        """log(clamp(mel, log_floor)): the dynamic-range compression every consumer shares."""
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram.

        Args:
            audio: (B, N) or (N,) float waveform at 16 kHz.

        Returns:
            (B, N // hop, n_mels) log-mel (batch dim dropped for 1-D input).
        """
        return self.compress(self.linear_mel(self.magnitude(audio)))
