"""The one streaming path from frames to speech, fed frame by frame: ``lipspeech live`` feeds it from ffmpeg,
``lipspeech serve`` from a web page's camera.

frames, each with its arrival time
       --(StreamingRoi: incremental face tracking, mouth crops)-->
       --(StreamDecoder: the streaming model, chunk by chunk with caches)-->
       --(HifiGanStream / GriffinLimStream)--> 16 kHz audio, handed to the sinks as it is made

The audio keeps the video's timeline: 640 samples per video frame, silence where there is no
face (before the first one, after the face has been lost for ``roi.max_gap`` frames, over
frames dropped to catch up). Each stretch with a face is one utterance for the model (its
caches start empty). When processing falls behind by more than ``max_lag_ms`` the frames
waiting are dropped (``on_lag="drop"``) and that is said; with ``on_lag="wait"`` every frame is
processed and the delay grows.

Latency, per frame that went through the model: from the frame's arrival to the moment the last
of its own 640 samples has been handed to the sinks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional, Sequence, TypeVar

import numpy as np

from lipspeech.commands.speak import SpeakError
from lipspeech.core.livemedia import SAMPLES_PER_FRAME, to_pcm
from lipspeech.core.timing import FPS

#: a sink gets each stretch of 16-bit PCM and the timeline indices of the spoken frames it completes
Sink = Callable[[bytes, list[int]], None]

Options = TypeVar("Options")


@dataclass(frozen=True)
class EngineOptions:
    """The live engine's settings, the same for ``lipspeech live`` and ``lipspeech serve`` (their defaults are
    written here only: the command lines leave out what is not given, :func:`options_from_args`).

    Attributes:
        chunk_frames: video frames per model chunk (None: the model's).
        roi_lag: frames the mouth crops wait for (0 .. roi.smoothing // 2).
        keyframe_interval: face detection every this many frames (None: the checkpoint's roi setting).
        temperature, seed: as for ``speak`` (None: the model's temperature).
        on_lag: "drop" (skip frames to catch up) or "wait", for live sources.
        max_lag_ms: how far behind the source processing may fall before frames are dropped.
    """

    chunk_frames: Optional[int] = None
    roi_lag: int = 0
    keyframe_interval: Optional[int] = 5
    temperature: Optional[float] = None
    seed: int = 0
    on_lag: str = "drop"
    max_lag_ms: float = 1000.0

    def __post_init__(self) -> None:
        if self.on_lag not in ("drop", "wait"):
            raise SpeakError(f"--on-lag {self.on_lag!r}: must be drop or wait")


def options_from_args(cls: type[Options], args: Any, **given: Any) -> Options:
    """An options dataclass from a command line: the fields ``args`` has (the parser leaves out the options
    not given, ``argparse.SUPPRESS``, so the dataclass's defaults stand), then ``given``."""
    names = {f.name for f in fields(cls)}
    return cls(**{**{k: v for k, v in vars(args).items() if k in names}, **given})


@dataclass
class LiveResult:
    """What a live run did.

    Attributes:
        live: a live source (or a file read at its pace); a file read as fast as it decodes has no
            meaningful latency.
        frames: video frames on the timeline (read from the source, dropped ones included).
        frame_size: (width, height) of the frames the face tracker saw (None: no frame came).
        spoken_frames: frames that went through the model (a face in view).
        samples: audio samples written.
        latencies_ms: per spoken frame, arrival to its audio written.
        algorithmic_ms: {"model", "roi", "vocoder", "total"} look-ahead waits.
        compute_seconds: processing time (ROI, model, vocoder, writing), waiting excluded.
        dropped: frames dropped to catch up.
        events: the lines said during the run (face lost/found, behind, source stopped).
        source_error: why the source stopped, when it did not just end.
    """

    live: bool = True
    frames: int = 0
    frame_size: Optional[tuple[int, int]] = None
    spoken_frames: int = 0
    samples: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    algorithmic_ms: dict[str, float] = field(default_factory=dict)
    compute_seconds: float = 0.0
    dropped: int = 0
    events: list[str] = field(default_factory=list)
    source_error: str = ""

    @property
    def duration(self) -> float:
        return self.frames / FPS

    @property
    def rtf(self) -> float:
        """Compute seconds per second of video."""
        return self.compute_seconds / max(self.duration, 1e-9)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def check_streaming(loaded: Any, model_ckpt: Any, roi_lag: int) -> None:
    """SpeakError unless ``loaded``'s model is a streaming model and ``roi_lag`` fits its ROI smoothing."""
    if loaded.bundle.model.streaming is None:
        raise SpeakError(f"--model {model_ckpt}: not a streaming model; live speech needs one trained with "
                         "model.streaming (config.yaml), e.g. the ltbs_stream experiment of configs/streaming.yaml")
    if not 0 <= roi_lag <= (loaded.roi_cfg.smoothing | 1) // 2:
        raise SpeakError(f"--roi-lag {roi_lag}: must be between 0 and {(loaded.roi_cfg.smoothing | 1) // 2} "
                         "(half the checkpoint's roi.smoothing window)")


def vocoder_stream(vocoder: Any) -> Any:
    from lipspeech.vocoder.api import HifiGanVocoder
    from lipspeech.vocoder.streaming import GriffinLimStream, HifiGanStream

    return HifiGanStream(vocoder) if isinstance(vocoder, HifiGanVocoder) else GriffinLimStream(vocoder)


class _Speaker:
    """One utterance at a time through model and vocoder; audio out in timeline order."""

    def __init__(self, model: Any, vocoder: Any, chunk_frames: Optional[int], temperature: Optional[float],
                 speaker_id: Optional[int], seed: int, write: Any):
        import torch

        self.model, self.vocoder = model, vocoder
        self.chunk, self.temperature, self.speaker_id = chunk_frames, temperature, speaker_id
        self.generator = torch.Generator().manual_seed(seed)
        self.write = write
        self.decoder: Any = None
        self.voice: Any = None

    def frames(self, crops: list[np.ndarray]) -> None:
        """The next frames' crops (the current utterance goes on, or one starts)."""
        from lipspeech.models.batch import Utterance, collate
        from lipspeech.models.streaming import StreamDecoder

        if self.decoder is None:
            self.decoder = StreamDecoder(self.model, self.chunk, self.temperature, self.speaker_id, self.generator)
            self.voice = vocoder_stream(self.vocoder)
        video = collate([Utterance("live", np.stack(crops))]).video[0]
        _, post = self.decoder.push(video)
        if len(post):
            self.write(self.voice.push(post.numpy()))

    def end(self) -> None:
        """The current utterance is over: the audio still held back."""
        if self.decoder is None:
            return
        _, post = self.decoder.flush()
        audio = self.voice.push(post.numpy()) if len(post) else np.zeros(0, np.float32)
        self.write(np.concatenate([audio, self.voice.flush()]))
        self.decoder = self.voice = None


def warm_up(model: Any, vocoder: Any, chunk: int, speaker_id: Optional[int], crop: int) -> None:
    """One chunk through model and vocoder before frames come: the first real chunk then
    does not pay for torch's one-time set-up (tens of ms on a CPU)."""
    from lipspeech.models.batch import Utterance, collate
    from lipspeech.models.streaming import StreamDecoder

    decoder = StreamDecoder(model, chunk, 0.0, speaker_id)
    video = collate([Utterance("warm-up", np.zeros((chunk + 3, crop, crop), np.uint8))]).video[0]
    decoder.push(video)
    _, post = decoder.flush()
    voice = vocoder_stream(vocoder)
    voice.push(post.numpy())
    voice.flush()


class LiveEngine:
    """Frames in (with their arrival times), speech out to ``sinks``, on one timeline (module docstring).

    Args:
        loaded: the pipeline (:func:`lipspeech.commands.speak.load_pipeline`) of a streaming model; its face backend
            must be this engine's alone (a backend keeps per-stream state and is not thread-safe).
        options: :class:`EngineOptions`.
        live: frames arrive at the source's pace (latency means something; ``options.on_lag`` applies; a file
            read as fast as it decodes waits for every frame).
        sinks: callables given each stretch of PCM (:data:`Sink`).
        on_event: called with each line said (face found/lost, frames dropped).
        warm: run one chunk through model and vocoder first.
    """

    def __init__(self, loaded: Any, options: EngineOptions, live: bool = True, sinks: Sequence[Sink] = (),
                 on_event: Optional[Callable[[str], None]] = None, warm: bool = True):
        model = loaded.bundle.model
        self.loaded, self.opt = loaded, options
        self.sinks, self.on_event = list(sinks), on_event
        chunk = options.chunk_frames or model.streaming.chunk_frames
        if warm:
            warm_up(model, loaded.vocoder, chunk, loaded.speaker_id, loaded.roi_cfg.crop_size)
        from lipspeech.models.streaming import algorithmic_latency_ms

        self.res = LiveResult(live=live, algorithmic_ms={
            "model": algorithmic_latency_ms(chunk, model.streaming.lookahead_frames,
                                            model.streaming.decoder_lookahead_frames),
            "roi": 1000.0 * options.roi_lag / FPS,
            "vocoder": float(vocoder_stream(loaded.vocoder).latency_ms),
        })
        self.res.algorithmic_ms["total"] = sum(self.res.algorithmic_ms.values())
        self.speaker = _Speaker(model, loaded.vocoder, chunk, options.temperature, loaded.speaker_id, options.seed,
                                self.write)
        self.arrival: dict[int, float] = {}  # timeline frame -> arrival, for frames whose audio is not out yet
        self.spoken_upto = 0  # frames whose 640 samples have all been written
        self.t_next = 0  # timeline index of the next frame
        self.had_face = False
        self.last_crop: Optional[np.ndarray] = None  # the newest mouth crop (None: no face now)
        self.started = time.monotonic()
        self._new_roi()

    def _new_roi(self) -> None:
        from lipspeech.vision.live import StreamingRoi

        self.roi = StreamingRoi(self.loaded.backend, self.loaded.roi_cfg, self.opt.roi_lag, self.opt.keyframe_interval)
        self.crop_start = self.t_next  # timeline index of the ROI's frame 0

    def say(self, line: str) -> None:
        self.res.events.append(line)
        if self.on_event is not None:
            self.on_event(line)

    def write(self, audio: np.ndarray) -> None:
        """Audio for the next stretch of the timeline; records the latency of the frames it completes."""
        if not len(audio):
            return
        pcm = to_pcm(audio)
        self.res.samples += len(audio)
        done = self.res.samples // SAMPLES_PER_FRAME
        spoken = [t for t in range(self.spoken_upto, done) if t in self.arrival]
        for sink in self.sinks:
            sink(pcm, spoken)
        now = time.monotonic()
        self.res.latencies_ms += [1000.0 * (now - self.arrival.pop(t)) for t in spoken]
        self.spoken_upto = done

    def handle(self, crops: list[Any]) -> None:
        """The ROI's output: runs of crops to the speaker, silence where there is no face."""
        run: list[np.ndarray] = []
        for c in crops:
            t = self.crop_start + c.t
            self.last_crop = c.crop
            if c.crop is not None:
                if not self.had_face and t > 0:
                    self.say(f"face found at {t / FPS:.2f} s")
                self.had_face = True
                run.append(c.crop)
                continue
            if run:
                self.speaker.frames(run)
                run = []
            if self.had_face:
                self.speaker.end()
                self.say(f"face lost at {t / FPS:.2f} s (no face for {self.loaded.roi_cfg.max_gap} frames): "
                         "silence until it is back")
                self.had_face = False
            self.arrival.pop(t, None)
            self.write(np.zeros(SAMPLES_PER_FRAME, np.float32))
        if run:
            self.speaker.frames(run)

    def drop(self, dropped: int, behind_ms: float) -> None:
        """Skip ``dropped`` frames to catch up: the utterance ends, silence for them, the ROI starts again."""
        self.handle(self.roi.flush())
        self.speaker.end()
        self.write(np.zeros(SAMPLES_PER_FRAME * dropped, np.float32))
        self.t_next += dropped
        self.res.dropped += dropped
        self.had_face = False
        self._new_roi()
        self.say(f"behind the source by {behind_ms:.0f} ms: dropped {dropped} frames ({dropped / FPS:.2f} s of silence)")

    def push(self, items: list[tuple[np.ndarray, float]]) -> float:
        """The frames that have arrived since the last call (gray (H, W) uint8, arrival on time.monotonic()),
        oldest first. When the source is live, the oldest waited more than ``options.max_lag_ms`` and
        ``options.on_lag`` is "drop", all but the newest are dropped. Returns how far behind (ms) the oldest was."""
        if not items:
            return 0.0
        busy = time.monotonic()
        if self.res.frame_size is None:
            self.res.frame_size = (items[0][0].shape[1], items[0][0].shape[0])
        behind_ms = 1000.0 * (busy - items[0][1])
        if self.res.live and self.opt.on_lag == "drop" and behind_ms > self.opt.max_lag_ms and len(items) > 1:
            self.drop(len(items) - 1, behind_ms)  # keep the newest frame: the ROI and the model restart there
            items = items[-1:]
        for frame, arrived in items:
            self.arrival[self.t_next] = arrived
            self.t_next += 1
            self.handle(self.roi.push(frame))
        self.res.compute_seconds += time.monotonic() - busy
        self.res.frames = self.t_next
        return behind_ms

    def finish(self) -> None:
        """The source has ended: the crops and the audio still held back."""
        busy = time.monotonic()
        self.handle(self.roi.flush())
        self.speaker.end()
        self.res.compute_seconds += time.monotonic() - busy
        if self.t_next and self.res.dropped == 0 and self.roi.faces_seen == 0 and not self.res.latencies_ms:
            self.say(f"no face found in {self.t_next} frames: the audio is silence")

    def close(self) -> LiveResult:
        self.res.frames = self.t_next
        self.res.spoken_frames = len(self.res.latencies_ms)
        self.res.events.append(f"wall {time.monotonic() - self.started:.2f} s")
        return self.res
