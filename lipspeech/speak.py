"""``lipspeech speak``: any video file -> 16 kHz speech, with a trained checkpoint.

video --(decode: ffmpeg, 25 fps gray)--> frames
      --(ROI: the roi stage's per-utterance landmarks/alignment, process_frames)--> 96x96 mouth crops
      --(model: the checkpoint's model, training.synthesis.synthesize)--> post-net log-mel (4T, 80)
      --(vocoder: load_vocoder / load_hifigan)--> T * 640 samples -> WAV

Which settings are used
    The model's config comes from its checkpoint (``model_cfg``). The ROI, mel
    and vocoder settings come from ``--config`` (a config.yaml, e.g. the one the
    model was trained with) and otherwise are the defaults: checkpoints do not
    record them. ``--vocoder`` overrides the config's vocoder: a HiFi-GAN
    checkpoint or ``griffin-lim``. Without it, a config with ``vocoder.kind:
    hifigan`` and no checkpoint uses ``results/{corpus}/vocoder/ckpt/best.pt``
    beside a model at ``results/{corpus}/models/{exp}/ckpt/``.

The real-time factor is processing time / audio duration, split into decode,
ROI, model and vocoder; loading the models (once per command) is reported apart.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from lipspeech.features.common import StageError
from lipspeech.timing import FPS, SAMPLE_RATE


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


def _speaker_index(ckpt_path: Path, n_speakers: int, speaker: Optional[str]) -> Optional[int]:
    if n_speakers <= 0:
        return None
    if speaker is None:
        raise SpeakError("the model has a speaker embedding: pass --speaker (a training speaker's name or index)")
    if speaker.isdigit() and int(speaker) < n_speakers:
        return int(speaker)
    run_json = ckpt_path.parent.parent / "run.json"
    speakers = json.loads(run_json.read_text()).get("speakers") if run_json.exists() else None
    if not speakers or speaker not in speakers:
        known = ", ".join(sorted(speakers)) if speakers else f"indices 0..{n_speakers - 1}"
        raise SpeakError(f"--speaker {speaker}: not a training speaker of this model (known: {known})")
    return int(speakers[speaker])


def _pick_vocoder(spec: Optional[str], vocoder_section: Mapping[str, Any], audio_cfg: Any, model_ckpt: Path,
                  device: Any) -> Any:
    from lipspeech.vocoder import load_hifigan, load_vocoder

    if spec is not None:
        if spec.replace("_", "-") == "griffin-lim":
            return load_vocoder({**vocoder_section, "kind": "griffin_lim"}, audio_cfg, device)
        if not Path(spec).exists():
            raise SpeakError(f"--vocoder {spec}: no such checkpoint (give a train-vocoder .pt or griffin-lim)")
        return load_hifigan(spec, device, audio_cfg)
    beside = model_ckpt.resolve().parent.parent.parent.parent / "vocoder" / "ckpt" / "best.pt"
    if vocoder_section["kind"] == "hifigan" and not vocoder_section.get("checkpoint") and not beside.exists():
        raise SpeakError(f"vocoder.kind is hifigan with no checkpoint, and there is no {beside}: "
                         "pass --vocoder CKPT or --vocoder griffin-lim")
    return load_vocoder(vocoder_section, audio_cfg, device, checkpoint=beside)


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
        config: a validated config (roi, mel, vocoder sections); None = defaults.
        device: "auto", "cpu", "cuda", ...
        temperature: post-net sampling std (None: the model's default).
        speaker: speaker name or index for models with a speaker embedding.
        seed: seed of the post-net's z.

    Raises:
        SpeakError: no such file, no video stream, no face, ... (one line).
    """
    import torch

    from lipspeech.config import validate_config
    from lipspeech.data.media import MediaError, probe, read_frames
    from lipspeech.features.audio import AudioConfig
    from lipspeech.models.batch import Utterance
    from lipspeech.store import atomic_path
    from lipspeech.models.ltbs import build_model
    from lipspeech.training.checkpoint import load_checkpoint
    from lipspeech.training.synthesis import synthesize
    from lipspeech.training.trainer import resolve_device
    from lipspeech.vision.backends import BackendError, make_backend
    from lipspeech.vision.roi import RoiConfig, RoiRejected, process_frames

    cfg = config if config is not None else validate_config({})
    dev = resolve_device(device)
    video, model_ckpt = Path(video), Path(model_ckpt)
    timer = _Timer()

    timer.start()
    try:
        info = probe(video)
    except MediaError as exc:
        raise SpeakError(f"{video}: {exc}") from None
    if not info.has_video:
        raise SpeakError(f"{video}: no video stream (an audio-only file?)")
    if not model_ckpt.exists():
        raise SpeakError(f"--model {model_ckpt}: no such checkpoint")
    try:
        # read once: the model config (mel bins, speakers) and the weights (as load_model builds them)
        state = load_checkpoint(model_ckpt, map_location=dev)
        model_cfg = state["model_cfg"]
        model = build_model(model_cfg).to(dev)
        model.load_state_dict(state["model"])
        model.eval()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise SpeakError(f"--model {model_ckpt}: not a usable model checkpoint ({exc})") from None
    del state
    audio_cfg = AudioConfig.from_section(cfg["mel"])
    if int(model_cfg["n_mels"]) != audio_cfg.n_mels:
        raise SpeakError(f"the model makes {model_cfg['n_mels']} mel bins but mel.n_mels is {audio_cfg.n_mels}")
    speaker_id = _speaker_index(model_ckpt, int(model_cfg["n_speakers"]), speaker)
    voc = _pick_vocoder(vocoder, cfg["vocoder"], audio_cfg, model_ckpt, dev)
    roi_cfg = RoiConfig.from_section(cfg["roi"])
    try:
        backend = make_backend(roi_cfg.backend, roi_cfg.detect_max_side, roi_cfg.detect_upsample)
    except BackendError as exc:
        raise SpeakError(str(exc)) from None
    timer.stop("load")

    timer.start()
    try:
        frames = read_frames(video, fps=FPS, gray=True)
    except MediaError as exc:
        raise SpeakError(f"{video}: {exc}") from None
    timer.stop("decode")

    timer.start()
    try:
        roi = process_frames(frames, backend, roi_cfg)
    except RoiRejected as exc:
        raise SpeakError(f"{video}: no usable face ({exc})") from None
    timer.stop("roi")

    timer.start()
    item = Utterance(video.stem, roi.roi, speaker=speaker_id)
    result = synthesize(model, [item], temperature=temperature, batch_size=1, seed=seed, device=dev)[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timer.stop("model")

    timer.start()
    audio = voc(result.post)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timer.stop("vocoder")

    if out is not None:
        import soundfile as sf

        with atomic_path(out) as tmp:
            sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return SpeakResult(audio=audio, n_frames=len(frames), seconds=timer.wall, cpu_seconds=timer.cpu,
                       vocoder=voc.describe())


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
    )
