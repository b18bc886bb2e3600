"""One entry point for every vocoder: :func:`load_vocoder` -> :class:`Vocoder`.

A :class:`Vocoder` turns the pipeline's log-mel (``(T, n_mels)`` float, 100 Hz,
``log(clamp(mel, 1e-5))`` of :class:`~lipspeech.features.audio.MelSpectrogram`)
into 16 kHz float32 audio of exactly ``T * 160`` samples. The ``vocoder``
section of the config picks which: ``kind: griffin_lim`` (no training) or
``kind: hifigan`` (a checkpoint of the train-vocoder stage).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from lipspeech.core.config import ConfigError
from lipspeech.core.runtime import resolve_device
from lipspeech.core.settings import VocoderConfig
from lipspeech.features.audio import AudioConfig
from lipspeech.vocoder.griffinlim import GriffinLim
from lipspeech.vocoder.hifigan import Generator, check_hifigan_config

KINDS = ("griffin_lim", "hifigan")


def _device(name: str | torch.device) -> torch.device:
    return resolve_device(name, "vocoder.device")


class Vocoder:
    """Log-mel -> waveform.

    Attributes:
        kind: "griffin_lim" or "hifigan".
        audio_cfg: the mel definition it expects.
        device: where it runs.
    """

    kind: str = ""

    def __init__(self, audio_cfg: AudioConfig, device: torch.device):
        self.audio_cfg = audio_cfg
        self.device = device

    def check(self, log_mel: np.ndarray) -> np.ndarray:
        """``log_mel`` as a float32 (T, n_mels) array; ValueError (one line) when it cannot be vocoded."""
        x = np.asarray(log_mel)
        if x.ndim != 2 or x.shape[1] != self.audio_cfg.n_mels:
            raise ValueError(f"log-mel has shape {x.shape}, expected (T, {self.audio_cfg.n_mels})")
        if x.shape[0] == 0:
            raise ValueError("log-mel has no frames")
        if not np.all(np.isfinite(x)):
            raise ValueError("log-mel has NaN or infinite values")
        return x.astype(np.float32, copy=False)

    def _run(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) on ``device`` -> (B, hop * T) audio."""
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        """(T, n_mels) log-mel -> (T * hop,) float32 audio in [-1, 1]."""
        x = torch.tensor(self.check(log_mel), device=self.device)[None]  # a copy: store arrays are read-only views
        return self._run(x)[0].float().cpu().numpy()

    def batch(self, log_mels: Sequence[np.ndarray], max_frames: int = 4000) -> list[np.ndarray]:
        """Vocode many utterances; the same outputs as calling one at a time (see subclasses)."""
        return [self(m) for m in log_mels]

    def describe(self) -> dict[str, Any]:
        """What produced the audio (kind and settings), for store metadata and logs."""
        return {"kind": self.kind}


class GriffinLimVocoder(Vocoder):
    """Mel inversion (NNLS) + fast Griffin-Lim (:class:`~lipspeech.vocoder.griffinlim.GriffinLim`).

    Utterances are always inverted one at a time: the random initial phases are
    drawn per call, so an utterance's audio never depends on its batch neighbours.
    """

    kind = "griffin_lim"

    def __init__(self, audio_cfg: AudioConfig, device: torch.device, *, n_iter: int, momentum: float, nnls_iter: int,
                 seed: int):
        super().__init__(audio_cfg, device)
        self.module = GriffinLim(audio_cfg, n_iter, momentum, nnls_iter, seed).to(device)

    def _run(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.module(log_mel)

    def describe(self) -> dict[str, Any]:
        m = self.module
        return {"kind": self.kind, "n_iter": m.n_iter, "momentum": m.momentum, "nnls_iter": m.nnls_iter, "seed": m.seed}


class HifiGanVocoder(Vocoder):
    """A trained HiFi-GAN generator (weight norm folded in, eval mode).

    Args:
        generator: the generator.
        audio_cfg: the mel definition it was trained on.
        device: where it runs.
        info: checkpoint facts for :meth:`describe` (preset, path, step).
    """

    kind = "hifigan"

    def __init__(self, generator: Generator, audio_cfg: AudioConfig, device: torch.device,
                 info: Optional[Mapping[str, Any]] = None):
        super().__init__(audio_cfg, device)
        self.generator = generator.to(device).eval()
        self.info = dict(info or {})
        # padding value for batching: the log-mel of silence
        self.silence = float(np.log(audio_cfg.log_floor))

    def _run(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.generator(log_mel.transpose(1, 2)).squeeze(1)

    @torch.no_grad()
    def batch(self, log_mels: Sequence[np.ndarray], max_frames: int = 4000) -> list[np.ndarray]:
        """Vocode many utterances, batched by length (at most ``max_frames`` padded frames a batch).

        Batches are padded with the log-mel of silence; each output is cut to its
        own ``T * hop`` samples. Only the last samples of a shorter utterance can
        differ (a little) from vocoding it alone: the generator's receptive field
        reaches into the padding there.
        """
        mels = [self.check(m) for m in log_mels]
        order = sorted(range(len(mels)), key=lambda i: len(mels[i]))
        out: list[Optional[np.ndarray]] = [None] * len(mels)
        start = 0
        hop = self.audio_cfg.hop_length
        while start < len(order):
            end = start + 1
            while end < len(order) and len(mels[order[end]]) * (end - start + 1) <= max_frames:
                end += 1
            group = order[start:end]
            t_max = len(mels[group[-1]])
            x = np.full((len(group), t_max, self.audio_cfg.n_mels), self.silence, dtype=np.float32)
            for j, i in enumerate(group):
                x[j, : len(mels[i])] = mels[i]
            audio = self._run(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
            for j, i in enumerate(group):
                out[i] = np.ascontiguousarray(audio[j, : len(mels[i]) * hop])
            start = end
        return out  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.info}


def load_hifigan(path: str | os.PathLike, device: str | torch.device = "cpu",
                 audio_cfg: Optional[AudioConfig] = None) -> HifiGanVocoder:
    """A :class:`HifiGanVocoder` from a train-vocoder checkpoint (``best.pt`` or ``last.pt``).

    Raises:
        ConfigError: the checkpoint was trained on another mel definition than ``audio_cfg``.
    """
    from lipspeech.training.checkpoint import load_checkpoint

    device = _device(device)
    ckpt = load_checkpoint(path, map_location="cpu")
    if "generator" not in ckpt:
        raise ConfigError(f"{path}: not a vocoder checkpoint (no generator weights)")
    trained = AudioConfig(**ckpt["audio_cfg"])
    if audio_cfg is not None and trained != audio_cfg:
        diff = sorted(k for k, v in audio_cfg.as_dict().items() if trained.as_dict()[k] != v)
        raise ConfigError(f"vocoder checkpoint {path}: trained on another mel definition (mel.{diff[0]} differs)")
    gen_cfg = check_hifigan_config(ckpt["generator_cfg"])
    generator = Generator(gen_cfg, trained.n_mels)
    generator.load_state_dict(ckpt["generator"])
    generator.remove_weight_norm()
    info = {"preset": ckpt.get("preset"), "checkpoint": str(path), "step": int(ckpt["step"])}
    return HifiGanVocoder(generator, trained, device, info)


def load_vocoder(
    vocoder_cfg: Mapping[str, Any] | VocoderConfig,
    audio_cfg: AudioConfig,
    device: str | torch.device = "cpu",
    checkpoint: Optional[str | os.PathLike] = None,
) -> Vocoder:
    """The vocoder the config's ``vocoder`` section describes.

    Args:
        vocoder_cfg: the validated ``vocoder`` section (``kind``, ``checkpoint``, ``griffin_lim``, ...), or it read.
        audio_cfg: the mel definition (``AudioConfig.from_section(config["mel"])``).
        device: "cpu", "cuda", "auto", ...
        checkpoint: HiFi-GAN checkpoint to use when ``vocoder.checkpoint`` is null
            (the workflow passes the train-vocoder stage's ``best.pt``).

    Raises:
        ConfigError: unknown kind, or a HiFi-GAN without a checkpoint.
    """
    vocoder = VocoderConfig.from_section(vocoder_cfg)
    kind = vocoder.kind
    device = _device(device)
    if kind == "griffin_lim":
        gl = vocoder.griffin_lim
        return GriffinLimVocoder(audio_cfg, device, n_iter=gl.n_iter, momentum=gl.momentum, nnls_iter=gl.nnls_iter,
                                 seed=gl.seed)
    if kind == "hifigan":
        path = vocoder.checkpoint or checkpoint
        if path is None:
            raise ConfigError("config key vocoder.checkpoint: null, and no train-vocoder checkpoint was given")
        if not Path(path).exists():
            where = "config key vocoder.checkpoint" if vocoder.checkpoint else "vocoder checkpoint"
            raise ConfigError(f"{where}: {path} does not exist (train one with lipspeech train-vocoder)")
        return load_hifigan(path, device, audio_cfg)
    raise ConfigError(f"config key vocoder.kind: {kind!r} is not one of {', '.join(KINDS)}")
