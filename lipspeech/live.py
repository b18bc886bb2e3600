"""``lipspeech live``: speech from a live talking-face video, while the lips move.

source --(ffmpeg: 25 fps gray at the picture's own size, or letterboxed into ``size``; read as they arrive)-->
       --(StreamingRoi: incremental face tracking, mouth crops)-->
       --(StreamDecoder: the streaming model, chunk by chunk with caches)-->
       --(HifiGanStream / GriffinLimStream)--> 16 kHz audio, written as it is made

SOURCE is anything ffmpeg reads: a file (``--realtime`` plays it at its own pace, as a camera
would deliver it; without it, as fast as it decodes), a V4L2 camera (``/dev/video0``), or a
network stream (``udp://``, ``rtp://``, ``rtsp://``, ``http(s)://``, ``tcp://``, ``srt://``).

Frames keep the source's own size (square pixels, upright; the longer side at most 1920), so the face
tracker sees a small face (40 px in a 720p webcam frame) at the size the roi stage sees it; ``size``
scales the picture into a fixed frame instead (cheaper detection, smaller faces).

The audio keeps the video's timeline: 640 samples per video frame, silence where there is no
face (before the first one, after the face has been lost for ``roi.max_gap`` frames, over
frames dropped to catch up). Each stretch with a face is one utterance for the model (its
caches start empty). When processing falls behind the source by more than ``max_lag_ms``
the frames waiting are dropped (``on_lag="drop"``, the default) and that is said; with
``on_lag="wait"`` every frame is processed and the delay grows.

Latency, per frame that went through the model: from the frame's arrival (the moment it is
read from ffmpeg) to the moment the last of its own 640 samples has been written. Its
algorithmic part is what the frame waits for by design (the rest of its model chunk and the
look-ahead, the ROI's lag, the vocoder's look-ahead); the rest is compute and queueing.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Optional

import numpy as np

from lipspeech.livemedia import SAMPLES_PER_FRAME, GrowingWav, LiveSource, is_live, to_pcm
from lipspeech.media import MediaError
from lipspeech.speak import SpeakError
from lipspeech.timing import FPS, SAMPLE_RATE


class LiveSourceError(SpeakError):
    """The source cannot be opened or gave no frame (a missing camera, a wrong URL)."""


@dataclass
class LiveResult:
    """What a live run did.

    Attributes:
        live: a live source (or a file read at its pace); a file read as fast as it decodes has no
            meaningful latency.
        frames: video frames read from the source.
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


def _vocoder_stream(vocoder: Any) -> Any:
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
            self.voice = _vocoder_stream(self.vocoder)
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


def _warm_up(model: Any, vocoder: Any, chunk: int, speaker_id: Optional[int], crop: int) -> None:
    """One chunk through model and vocoder before the source opens: the first real chunk then
    does not pay for torch's one-time set-up (tens of ms on a CPU)."""
    from lipspeech.models.batch import Utterance, collate
    from lipspeech.models.streaming import StreamDecoder

    decoder = StreamDecoder(model, chunk, 0.0, speaker_id)
    video = collate([Utterance("warm-up", np.zeros((chunk + 3, crop, crop), np.uint8))]).video[0]
    decoder.push(video)
    _, post = decoder.flush()
    voice = _vocoder_stream(vocoder)
    voice.push(post.numpy())
    voice.flush()


def run_live(
    source: str,
    model_ckpt: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    pcm_out: Optional[IO[bytes]] = None,
    vocoder: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    device: str = "cpu",
    realtime: bool = False,
    chunk_frames: Optional[int] = None,
    roi_lag: int = 0,
    keyframe_interval: Optional[int] = 5,
    on_lag: str = "drop",
    max_lag_ms: float = 1000.0,
    timeout: float = 10.0,
    open_timeout: float = 30.0,
    size: Optional[tuple[int, int]] = None,
    temperature: Optional[float] = None,
    speaker: Optional[str] = None,
    seed: int = 0,
    status: Optional[IO[str]] = None,
    threads: Optional[int] = None,
) -> LiveResult:
    """Speech from ``source`` as it arrives (module docstring); returns what happened.

    Args:
        source: file, camera device or URL (anything ffmpeg opens).
        model_ckpt: a checkpoint of a model trained in streaming mode.
        out: WAV written as it grows (None: none).
        pcm_out: binary stream for raw 16 kHz 16-bit mono PCM (e.g. stdout), or None.
        vocoder: a HiFi-GAN checkpoint, ``griffin-lim`` or None (the config's, else Griffin-Lim).
        config: a validated config (its vocoder section), or None.
        device: where the model runs.
        realtime: read a file at its own pace.
        chunk_frames: video frames per model chunk (None: the model's).
        roi_lag: frames the mouth crops wait for (0 .. roi.smoothing // 2).
        keyframe_interval: face detection every this many frames (None: the checkpoint's roi setting).
        on_lag: "drop" (skip frames to catch up) or "wait".
        max_lag_ms: how far behind the source processing may fall before frames are dropped.
        timeout: seconds without a frame after which the source counts as stopped.
        open_timeout: seconds to wait for the first frame (a network stream may not have started).
        size: (width, height) frames are scaled into (aspect kept, letterboxed); None: the picture's own
            size, the longer side at most :data:`~lipspeech.livemedia.MAX_SIDE` (said on ``status``).
        temperature, speaker, seed: as for ``speak``.
        status: where the status line and events go (None: nowhere).
        threads: torch threads (None: leave as is).

    Raises:
        LiveSourceError: the source cannot be opened or gave no frame within ``timeout``.
        SpeakError: the model is not a streaming model, or the checkpoint/vocoder cannot be loaded.
    """
    import torch

    from lipspeech.config import validate_config
    from lipspeech.runtime import resolve_device
    from lipspeech.speak import load_pipeline

    if on_lag not in ("drop", "wait"):
        raise SpeakError(f"--on-lag {on_lag!r}: must be drop or wait")
    live_source = is_live(source, realtime)
    if threads:
        torch.set_num_threads(threads)
    cfg = config if config is not None else validate_config({})
    loaded = load_pipeline(Path(model_ckpt), vocoder, cfg["vocoder"], resolve_device(device), speaker)
    if loaded.bundle.model.streaming is None:
        raise SpeakError(f"--model {model_ckpt}: not a streaming model; lipspeech live needs one trained with "
                         "model.streaming (config.yaml), e.g. the ltbs_stream experiment of configs/streaming.yaml")
    if not 0 <= roi_lag <= (loaded.roi_cfg.smoothing | 1) // 2:
        raise SpeakError(f"--roi-lag {roi_lag}: must be between 0 and {(loaded.roi_cfg.smoothing | 1) // 2} "
                         "(half the checkpoint's roi.smoothing window)")
    session = _Session(loaded, chunk_frames, roi_lag, keyframe_interval, temperature, seed, status, live_source)
    session.open_outputs(out, pcm_out)
    try:
        try:
            src = LiveSource(source, size, realtime)
        except MediaError as exc:
            raise LiveSourceError(str(exc)) from None
        try:
            # a file read as fast as it decodes is not live: nothing to catch up with
            session.run(src, timeout, open_timeout, on_lag if live_source else "wait", max_lag_ms)
        finally:
            src.close()
        if src.frames_read == 0:
            raise LiveSourceError(f"{source}: no frames ({session.res.source_error or 'an empty stream'})")
    finally:
        session.close()
    return session.res


class _Session:
    """One ``run_live``: the ROI, the speaker, the outputs and the timeline that ties them."""

    def __init__(self, loaded: Any, chunk_frames: Optional[int], roi_lag: int, keyframe_interval: Optional[int],
                 temperature: Optional[float], seed: int, status: Optional[IO[str]], live: bool):
        model = loaded.bundle.model
        self.loaded, self.roi_lag, self.keyframe_interval, self.status = loaded, roi_lag, keyframe_interval, status
        # the status line rewrites itself on a terminal; a log gets the events and the summary only
        self.tty = status is not None and status.isatty()
        chunk = chunk_frames or model.streaming.chunk_frames
        _warm_up(model, loaded.vocoder, chunk, loaded.speaker_id, loaded.roi_cfg.crop_size)
        self.res = LiveResult(live=live, algorithmic_ms={
            "model": 1000.0 * (chunk + model.streaming.lookahead_frames) / FPS,
            "roi": 1000.0 * roi_lag / FPS,
            "vocoder": float(_vocoder_stream(loaded.vocoder).latency_ms),
        })
        self.res.algorithmic_ms["total"] = sum(self.res.algorithmic_ms.values())
        self.speaker = _Speaker(model, loaded.vocoder, chunk, temperature, loaded.speaker_id, seed, self.write)
        self.wav: Optional[GrowingWav] = None
        self.pcm: Optional[IO[bytes]] = None
        self.arrival: dict[int, float] = {}  # timeline frame -> arrival, for frames whose audio is not out yet
        self.spoken_upto = 0  # frames whose 640 samples have all been written
        self.t_next = 0  # timeline index of the next frame from the source
        self.had_face = False
        self.started = time.monotonic()
        self._new_roi()

    def _new_roi(self) -> None:
        from lipspeech.vision.live import StreamingRoi

        self.roi = StreamingRoi(self.loaded.backend, self.loaded.roi_cfg, self.roi_lag, self.keyframe_interval)
        self.crop_start = self.t_next  # timeline index of the ROI's frame 0

    def open_outputs(self, out: Optional[str | os.PathLike], pcm_out: Optional[IO[bytes]]) -> None:
        self.wav = GrowingWav(out) if out is not None else None
        self.pcm = pcm_out

    def say(self, line: str) -> None:
        self.res.events.append(line)
        if self.status is not None:
            self.status.write(("\r\033[K" if self.tty else "") + line + "\n")
            self.status.flush()

    def write(self, audio: np.ndarray) -> None:
        """Audio for the next stretch of the timeline; records the latency of the frames it completes."""
        if not len(audio):
            return
        pcm = to_pcm(audio)
        if self.wav is not None:
            self.wav.write(pcm)
        if self.pcm is not None:
            self.pcm.write(pcm)
            self.pcm.flush()
        self.res.samples += len(audio)
        now = time.monotonic()
        done = self.res.samples // SAMPLES_PER_FRAME
        for t in range(self.spoken_upto, done):
            if t in self.arrival:
                self.res.latencies_ms.append(1000.0 * (now - self.arrival.pop(t)))
        self.spoken_upto = done

    def handle(self, crops: list[Any]) -> None:
        """The ROI's output: runs of crops to the speaker, silence where there is no face."""
        run: list[np.ndarray] = []
        for c in crops:
            t = self.crop_start + c.t
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

    def run(self, src: LiveSource, timeout: float, open_timeout: float, on_lag: str, max_lag_ms: float) -> None:
        last_status = 0.0
        while True:
            items = src.get(timeout if src.frames_read else open_timeout)
            if not items:
                if src.ended:
                    break
                if src.frames_read == 0:
                    reason = f" ({src.reason()})" if src.proc.poll() is not None else ""
                    raise LiveSourceError(f"{src.source}: no frame within {open_timeout:g} s{reason}")
                self.say(f"source stopped: no frame for {timeout:g} s after {src.frames_read / FPS:.2f} s")
                break
            if self.res.frame_size is None:
                self.res.frame_size = width, height = src.size
                self.say(f"frames {width}x{height} " + ("(scaled into --size, aspect kept)" if src.scaled else
                         f"(the source's own picture, the longer side at most {src.max_side})"))
            busy = time.monotonic()
            behind_ms = 1000.0 * (busy - items[0][1])
            if on_lag == "drop" and behind_ms > max_lag_ms and len(items) > 1:
                self.drop(len(items) - 1, behind_ms)  # keep the newest frame: the ROI and the model restart there
                items = items[-1:]
            for frame, arrived in items:
                self.arrival[self.t_next] = arrived
                self.t_next += 1
                self.handle(self.roi.push(frame))
            self.res.compute_seconds += time.monotonic() - busy
            self.res.frames = self.t_next
            if self.tty and time.monotonic() - last_status > 0.5:
                last_status = time.monotonic()
                self.status.write(
                    f"\r\033[Klive {self.t_next / FPS:6.1f} s | latency p50 {self.res.percentile(50):4.0f} ms "
                    f"p95 {self.res.percentile(95):4.0f} ms | RTF {self.res.rtf:.2f} | behind {behind_ms:4.0f} ms"
                    + ("" if self.had_face else " | no face"))
                self.status.flush()
            if src.ended:
                break
        self.finish(src)

    def finish(self, src: LiveSource) -> None:
        busy = time.monotonic()
        self.handle(self.roi.flush())
        self.speaker.end()
        self.res.compute_seconds += time.monotonic() - busy
        self.res.source_error = src.reason() if src.ended else ""
        if self.res.source_error and src.frames_read:
            self.say(f"source stopped after {src.frames_read / FPS:.2f} s: {self.res.source_error}")
        if src.frames_read and self.res.dropped == 0 and self.roi.faces_seen == 0 and not self.res.latencies_ms:
            self.say(f"no face found in {self.t_next} frames: the audio is silence")

    def close(self) -> None:
        if self.wav is not None:
            self.wav.close()
        self.res.frames = self.t_next
        self.res.spoken_frames = len(self.res.latencies_ms)
        self.res.events.append(f"wall {time.monotonic() - self.started:.2f} s")


def format_result(source: str, out: Optional[str | os.PathLike], res: LiveResult) -> str:
    """The summary ``lipspeech live`` prints at the end."""
    alg = res.algorithmic_ms
    measured = (f"latency p50 {res.percentile(50):.0f} ms, p95 {res.percentile(95):.0f} ms (frame arrival to its "
                "audio written)" if res.live else "latency not measured (a file read as fast as it decodes; "
                "--realtime reads it at its pace)")
    size = f", {res.frame_size[0]}x{res.frame_size[1]}" if res.frame_size else ""
    return (
        f"live {source}: {res.frames} frames ({res.duration:.2f} s{size}), {res.spoken_frames} with a face"
        f" -> {out or '(no WAV)'} ({res.samples / SAMPLE_RATE:.2f} s of audio)\n"
        f"  {measured}; algorithmic {alg['total']:.0f} ms = model {alg['model']:.0f} + ROI {alg['roi']:.0f}"
        f" + vocoder {alg['vocoder']:.0f}\n"
        f"  real-time factor {res.rtf:.3f} (compute / video time); dropped {res.dropped} frames"
    )


def main_live(args: Any) -> int:
    """The command (registered in :mod:`lipspeech.toolcli`)."""
    from lipspeech.config import load_config

    cfg = load_config(args.config) if args.config else None
    to_stdout = args.out == "-" or args.stdout
    out = None if (args.out in (None, "-")) else args.out
    if out is None and not to_stdout:
        raise SpeakError("give -o OUT.wav and/or --stdout (raw 16 kHz 16-bit mono PCM, e.g. | aplay -f S16_LE -r 16000)")
    size = None
    if args.size is not None:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", args.size.lower())
        if not m or min(int(m[1]), int(m[2])) < 2:
            raise SpeakError(f"--size {args.size}: give WIDTHxHEIGHT, e.g. 640x480")
        size = int(m[1]), int(m[2])
    try:
        res = run_live(
            args.source, args.model, out, sys.stdout.buffer if to_stdout else None, vocoder=args.vocoder, config=cfg,
            device=args.device, realtime=args.realtime, chunk_frames=args.chunk_frames, roi_lag=args.roi_lag,
            keyframe_interval=args.keyframe_interval, on_lag=args.on_lag, max_lag_ms=args.max_lag_ms,
            timeout=args.timeout, open_timeout=args.open_timeout, size=size, temperature=args.temperature,
            speaker=args.speaker, seed=args.seed, status=None if args.quiet else sys.stderr, threads=args.threads,
        )
    except MediaError as exc:  # ffmpeg missing
        raise LiveSourceError(f"{args.source}: {exc}") from None
    if not args.quiet:
        sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "") + format_result(args.source, out, res) + "\n")
    return 0
