"""``lipspeech speak``: any video file -> 16 kHz speech, with a trained checkpoint.

video --(decode: ffmpeg, 25 fps gray)--> frames
      --(ROI: the roi stage's per-utterance landmarks/alignment, process_frames)--> 96x96 mouth crops
      --(model: the checkpoint's model, training.synthesis.synthesize)--> post-net log-mel (4T, 80)
      --(vocoder: load_vocoder / load_hifigan)--> T * 640 samples -> WAV

Which settings are used
    Everything the model needs comes from its checkpoint, a bundle
    (:mod:`lipspeech.training.bundle`): the model config, the ``mel`` and ``roi``
    sections it was trained with, its speaker names. (A checkpoint from before
    bundles gets the default mel and ROI settings, and the report says so.) The
    vocoder: ``--vocoder`` (a HiFi-GAN checkpoint, which carries its own mel
    definition, or ``griffin-lim``), else the ``vocoder`` section of ``--config``
    (a HiFi-GAN there needs ``vocoder.checkpoint``), else Griffin-Lim with the
    default settings.

The real-time factor is processing time / audio duration, split into decode,
ROI, model and vocoder; loading the models (once per command) is reported apart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from lipspeech.core.settings import VocoderConfig
from lipspeech.core.shards import StageError
from lipspeech.core.timing import FPS, SAMPLE_RATE


class SpeakError(StageError):
    """speak cannot produce audio for this input; the message is one line."""


@dataclass
class SpeakResult:
    """What :func:`speak` did.

    Attributes:
        audio: (T * 640,) float32 waveform (also written to the output file).
        n_frames: video frames T (25 fps).
        seconds: {"load", "decode", "roi", "model", "vocoder"} wall-clock seconds.
        cpu_seconds: the same parts in CPU seconds of this process and the
            ffmpeg processes it ran (all threads): what the parts cost on a
            machine shared with other work, where wall-clock time also counts the waiting.
        vocoder: the vocoder's description.
    """

    audio: np.ndarray
    n_frames: int
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    vocoder: dict[str, Any] = field(default_factory=dict)
    #: settings the checkpoint did not carry (a checkpoint from before bundles): defaults were used
    assumed: list[str] = field(default_factory=list)
    #: (T, S, S) uint8 mouth crops the model saw, and its (4T, n_mels) post-net log-mel
    crops: Optional[np.ndarray] = None
    mel: Optional[np.ndarray] = None

    @property
    def duration(self) -> float:
        return self.n_frames / FPS

    def rtf(self, *parts: str, cpu: bool = False) -> float:
        """Processing seconds per second of audio, over ``parts`` (default: decode, roi, model, vocoder);
        wall-clock, or CPU seconds with ``cpu``."""
        parts = parts or ("decode", "roi", "model", "vocoder")
        times = self.cpu_seconds if cpu else self.seconds
        return sum(times[p] for p in parts) / max(self.duration, 1e-9)


class _Timer:
    """Wall-clock and CPU seconds (this process and its finished child processes) per named part."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self._t = self._now()

    def stop(self, part: str) -> None:
        wall, cpu = self._now()
        self.wall[part] = wall - self._t[0]
        self.cpu[part] = cpu - self._t[1]


def _pick_vocoder(spec: Optional[str], vocoder_section: Mapping[str, Any] | VocoderConfig, audio_cfg: Any,
                  device: Any) -> Any:
    from lipspeech.core.config import ConfigError
    from lipspeech.vocoder import load_hifigan, load_vocoder

    try:
        section = VocoderConfig.from_section(vocoder_section)
        if spec is not None:
            if spec.replace("_", "-") == "griffin-lim":
                return load_vocoder(replace(section, kind="griffin_lim"), audio_cfg, device)
            if not Path(spec).exists():
                raise SpeakError(f"--vocoder {spec}: no such checkpoint (give a train-vocoder .pt or griffin-lim)")
            return load_hifigan(spec, device, audio_cfg)
        if section.kind == "hifigan" and not section.checkpoint:
            raise SpeakError("the config's vocoder is a HiFi-GAN without vocoder.checkpoint: "
                             "pass --vocoder CKPT or --vocoder griffin-lim")
        return load_vocoder(section, audio_cfg, device)
    except ConfigError as exc:
        raise SpeakError(str(exc)) from None


@dataclass
class LoadedPipeline:
    """What speaking needs, loaded once: the model bundle, the speaker, the vocoder, the face tracker."""

    bundle: Any
    speaker_id: Optional[int]
    vocoder: Any
    roi_cfg: Any
    backend: Any


def load_pipeline(model_ckpt: Path, vocoder: Optional[str], vocoder_section: Mapping[str, Any] | VocoderConfig,
                  device: Any, speaker: Optional[str]) -> LoadedPipeline:
    """The model bundle, the speaker's index, the vocoder and the face tracker for ``speak`` and ``live``
    (SpeakError with a one-line reason when one of them cannot be had)."""
    from lipspeech.features.audio import AudioConfig
    from lipspeech.training.bundle import load_model
    from lipspeech.vision.backends import BackendError, make_backend
    from lipspeech.vision.roi import RoiConfig

    if not model_ckpt.exists():
        raise SpeakError(f"--model {model_ckpt}: no such checkpoint")
    try:
        bundle = load_model(model_ckpt, device)
        speaker_id = bundle.speaker_index(speaker)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise SpeakError(f"--model {model_ckpt}: {exc}") from None
    voc = _pick_vocoder(vocoder, vocoder_section, AudioConfig.from_section(bundle.mel), device)
    roi_cfg = RoiConfig.from_section(bundle.roi)
    try:
        backend = make_backend(roi_cfg.backend, roi_cfg.detect_max_side, roi_cfg.detect_upsample)
    except BackendError as exc:
        raise SpeakError(str(exc)) from None
    return LoadedPipeline(bundle, speaker_id, voc, roi_cfg, backend)


def _mouth_crops(video: Path, loaded: LoadedPipeline, timer: _Timer) -> tuple[int, np.ndarray]:
    """(frames, the 96x96 mouth crops) of the video at 25 fps, timed as decode and roi."""
    from lipspeech.core.media import MediaError, read_frames
    from lipspeech.vision.roi import RoiRejected, process_frames

    timer.start()
    try:
        frames = read_frames(video, fps=FPS, gray=True)
    except MediaError as exc:
        raise SpeakError(f"{video}: {exc}") from None
    timer.stop("decode")
    timer.start()
    try:
        roi = process_frames(frames, loaded.backend, loaded.roi_cfg)
    except RoiRejected as exc:
        raise SpeakError(f"{video}: no usable face ({exc})") from None
    timer.stop("roi")
    return len(frames), roi.roi


def speak(
    video: str | os.PathLike,
    out: Optional[str | os.PathLike],
    model_ckpt: str | os.PathLike,
    vocoder: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    temperature: Optional[float] = None,
    speaker: Optional[str] = None,
    seed: int = 0,
) -> SpeakResult:
    """Speech for the face in ``video``, written to ``out`` (16 kHz mono 16-bit WAV) unless None.

    Args:
        video: any file ffmpeg reads with a video stream (its audio, if any, is ignored).
        out: WAV to write (atomically), or None.
        model_ckpt: a train-stage checkpoint (``models/{exp}/ckpt/best.pt``).
        vocoder: a HiFi-GAN checkpoint, ``griffin-lim``, or None (the config's vocoder).
        config: a validated config; only its ``vocoder`` section is used (None: Griffin-Lim, defaults).
        device: "auto", "cpu", "cuda", ...
        temperature: post-net sampling std (None: the model's default).
        speaker: speaker name or index for models with a speaker embedding.
        seed: seed of the post-net's z.

    Raises:
        SpeakError: no such file, no video stream, no face, ... (one line).
    """
    from lipspeech.core.config import validate_config
    from lipspeech.core.runtime import resolve_device

    cfg = config if config is not None else validate_config({})
    dev = resolve_device(device)
    video = Path(video)
    timer = _Timer()
    timer.start()
    probe_video(video)
    loaded = load_pipeline(Path(model_ckpt), vocoder, cfg["vocoder"], dev, speaker)
    timer.stop("load")
    return speak_loaded(video, out, loaded, dev, temperature, seed, timer)


def probe_video(video: Path) -> Any:
    """ffprobe's view of ``video`` (SpeakError when it cannot be read or has no video stream)."""
    from lipspeech.core.media import MediaError, probe

    try:
        info = probe(video)
    except MediaError as exc:
        raise SpeakError(f"{video}: {exc}") from None
    if not info.has_video:
        raise SpeakError(f"{video}: no video stream (an audio-only file?)")
    return info


def speak_loaded(video: Path, out: Optional[str | os.PathLike], loaded: LoadedPipeline, dev: Any,
                 temperature: Optional[float] = None, seed: int = 0, timer: Optional[_Timer] = None) -> SpeakResult:
    """:func:`speak` with the pipeline loaded already (``lipspeech serve`` loads it once for every clip);
    the result also carries the mouth crops and the post-net mel."""
    import torch

    from lipspeech.core.store import atomic_path
    from lipspeech.models.batch import Utterance
    from lipspeech.training.synthesis import synthesize

    if timer is None:
        timer = _Timer()
        timer.wall["load"] = timer.cpu["load"] = 0.0
    n_frames, crops = _mouth_crops(video, loaded, timer)

    timer.start()
    item = Utterance(video.stem, crops, speaker=loaded.speaker_id)
    result = synthesize(loaded.bundle.model, [item], temperature=temperature, batch_size=1, seed=seed, device=dev)[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timer.stop("model")

    timer.start()
    audio = loaded.vocoder(result.post)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timer.stop("vocoder")

    if out is not None:
        import soundfile as sf

        with atomic_path(out) as tmp:
            sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return SpeakResult(audio=audio, n_frames=n_frames, seconds=timer.wall, cpu_seconds=timer.cpu,
                       vocoder=loaded.vocoder.describe(), assumed=list(loaded.bundle.assumed), crops=crops,
                       mel=result.post)


def format_report(video: str | os.PathLike, out: Optional[str | os.PathLike], res: SpeakResult) -> str:
    """The lines ``lipspeech speak`` prints."""
    s = res.seconds
    kind = res.vocoder.get("kind", "?") + (f" {res.vocoder['preset']}" if res.vocoder.get("preset") else "")
    return (
        f"speak {video}: {res.n_frames} frames ({res.duration:.2f} s) -> {out or '(not written)'} [{kind}]\n"
        f"  real-time factor {res.rtf():.3f} = decode {res.rtf('decode'):.3f} + roi {res.rtf('roi'):.3f}"
        f" + model {res.rtf('model'):.3f} + vocoder {res.rtf('vocoder'):.3f}"
        f" ({sum(s[p] for p in ('decode', 'roi', 'model', 'vocoder')):.2f} s, CPU-time RTF {res.rtf(cpu=True):.3f};"
        f" loading models {s['load']:.2f} s more)"
        + (f"\n  note: the checkpoint predates bundles; default {' and '.join(res.assumed)} settings were used"
           if res.assumed else "")
    )
