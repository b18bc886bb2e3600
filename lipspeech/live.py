"""``lipspeech live``: speech from a live talking-face video, while the lips move.

source --(ffmpeg: 25 fps gray, letterboxed to a fixed size, read as frames arrive)-->
       --(StreamingRoi: incremental face tracking, mouth crops)-->
       --(StreamDecoder: the streaming model, chunk by chunk with caches)-->
       --(HifiGanStream / GriffinLimStream)--> 16 kHz audio, written as it is made

SOURCE is anything ffmpeg reads: a file (``--realtime`` plays it at its own pace, as a camera
would deliver it; without it, as fast as it decodes), a V4L2 camera (``/dev/video0``), or a
network stream (``udp://``, ``rtp://``, ``rtsp://``, ``http(s)://``, ``tcp://``, ``srt://``).

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
import queue
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Optional

import numpy as np

from lipspeech.media import MediaError, require_ffmpeg
from lipspeech.speak import SpeakError
from lipspeech.timing import FPS, SAMPLE_RATE

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
NETWORK_SCHEMES = ("udp://", "rtp://", "rtsp://", "http://", "https://", "tcp://", "srt://", "rtmp://")


class LiveSourceError(SpeakError):
    """The source cannot be opened or gave no frame (a missing camera, a wrong URL)."""


# --------------------------------------------------------------------------- the source
def ffmpeg_command(source: str, size: tuple[int, int], fps: float = FPS, realtime: bool = False) -> list[str]:
    """The ffmpeg command that turns ``source`` into raw gray frames of ``size`` (letterboxed) at ``fps``."""
    width, height = size
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    if source.startswith(NETWORK_SCHEMES):
        # start after 1 s of probing, not ffmpeg's default 5 s (the probed packets are kept: -fflags
        # nobuffer would drop them, the first second of the stream)
        args += ["-flags", "low_delay", "-probesize", "500000", "-analyzeduration", "1000000"]
    elif source.startswith("/dev/video"):
        args += ["-f", "v4l2"]
    if realtime:
        args += ["-re"]
    scale = (f"fps={fps},scale={width}:{height}:force_original_aspect_ratio=decrease,"
             f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,format=gray")
    return args + ["-i", source, "-an", "-vf", scale, "-f", "rawvideo", "-pix_fmt", "gray", "pipe:"]


class LiveSource:
    """Frames of a live source as they arrive, each with its arrival time (``time.monotonic()``).

    A reader thread takes whole frames from ffmpeg's output and queues them; :meth:`get` returns
    what has arrived. ffmpeg's error output is kept for the message when it stops.

    Args:
        source: file, camera device or URL.
        size: (width, height) of the frames (the picture is scaled into it, aspect kept).
        realtime: read a file at its own pace (ffmpeg -re).
    """

    def __init__(self, source: str, size: tuple[int, int] = (640, 480), realtime: bool = False):
        require_ffmpeg()
        if not source.startswith(NETWORK_SCHEMES) and not Path(source).exists():
            raise LiveSourceError(f"{source}: no such file or device")
        self.source, self.size = source, size
        self.frame_bytes = size[0] * size[1]
        self.proc = subprocess.Popen(ffmpeg_command(source, size, realtime=realtime), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.queue: "queue.Queue[Optional[tuple[np.ndarray, float]]]" = queue.Queue()
        self.frames_read = 0
        self.ended = False
        self._err: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._err.append(self.proc.stderr.read()), daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                buf = bytearray()
                while len(buf) < self.frame_bytes:
                    data = out.read(self.frame_bytes - len(buf))
                    if not data:
                        return
                    buf += data
                frame = np.frombuffer(bytes(buf), np.uint8).reshape(self.size[1], self.size[0])
                self.frames_read += 1
                self.queue.put((frame, time.monotonic()))
        finally:
            self.queue.put(None)

    def get(self, timeout: float) -> list[tuple[np.ndarray, float]]:
        """The frames that have arrived (waiting up to ``timeout`` s for the first); [] on a timeout.
        After the end of the stream, :attr:`ended` is True."""
        items = []
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return []
        pending = [first]
        while True:
            try:
                pending.append(self.queue.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            if item is None:
                self.ended = True
                break
            items.append(item)
        return items

    def waiting(self) -> int:
        """Frames queued and not yet taken."""
        return self.queue.qsize()

    def reason(self) -> str:
        """Why ffmpeg stopped, in one line ('' when it ended normally)."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        text = (self._err[0] if self._err else b"").decode("utf-8", "replace").strip().splitlines()
        lines = [line for line in text if line.strip()]
        return (lines[-1] if lines else f"ffmpeg exited with status {code}") if code else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- the outputs
class GrowingWav:
    """A 16-bit mono WAV written as the audio comes: the header is rewritten after every write,
    so the file is a valid WAV of the audio so far at any moment (also if the process is killed)."""

    def __init__(self, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
        self.path = Path(path)
        self.fh = open(self.path, "wb")
        self.rate, self.samples = sample_rate, 0
        self._header()

    def _header(self) -> None:
        data = self.samples * 2
        self.fh.seek(0)
        self.fh.write(b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE")
        self.fh.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, self.rate, self.rate * 2, 2, 16))
        self.fh.write(b"data" + struct.pack("<I", data))
        self.fh.seek(0, os.SEEK_END)

    def write(self, pcm: bytes) -> None:
        self.fh.write(pcm)
        self.samples += len(pcm) // 2
        self._header()
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def to_pcm(audio: np.ndarray) -> bytes:
    """float [-1, 1] -> 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


# --------------------------------------------------------------------------- the loop
@dataclass
class LiveResult:
    """What a live run did.

    Attributes:
        live: a live source (or a file read at its pace); a file read as fast as it decodes has no
            meaningful latency.
        frames: video frames read from the source.
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

        self.torch, self.model, self.vocoder = torch, model, vocoder
        self.chunk, self.temperature, self.speaker_id = chunk_frames, temperature, speaker_id
        self.generator = torch.Generator().manual_seed(seed)
        self.write = write
        self.decoder: Any = None
        self.voice: Any = None
        self.start = 0  # timeline frame of the current utterance's first frame

    def frames(self, t: int, crops: list[np.ndarray]) -> None:
        """Crops of timeline frames t .. t + n - 1 (one utterance, in order)."""
        from lipspeech.models.batch import Utterance, collate
        from lipspeech.models.streaming import StreamDecoder

        if self.decoder is None:
            self.decoder = StreamDecoder(self.model, self.chunk, self.temperature, self.speaker_id, self.generator)
            self.voice = _vocoder_stream(self.vocoder)
            self.start = t
        video = collate([Utterance("live", np.stack(crops))]).video[0]
        _, post = self.decoder.push(video)
        if len(post):
            self.write(self.voice.push(post.numpy()), spoken=True)

    def end(self) -> None:
        """The current utterance is over: the audio still held back."""
        if self.decoder is None:
            return
        _, post = self.decoder.flush()
        audio = self.voice.push(post.numpy()) if len(post) else np.zeros(0, np.float32)
        self.write(np.concatenate([audio, self.voice.flush()]), spoken=True)
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
    size: tuple[int, int] = (640, 480),
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
        size: (width, height) frames are scaled into.
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
    from lipspeech.speak import _load
    from lipspeech.vision.live import StreamingRoi

    if on_lag not in ("drop", "wait"):
        raise SpeakError(f"--on-lag {on_lag!r}: must be drop or wait")
    live_source = realtime or source.startswith(NETWORK_SCHEMES) or source.startswith("/dev/")
    if not live_source:
        on_lag = "wait"  # a file read as fast as it decodes is not live: nothing to catch up with
    if threads:
        torch.set_num_threads(threads)
    cfg = config if config is not None else validate_config({})
    dev = resolve_device(device)
    loaded = _load(Path(model_ckpt), vocoder, cfg["vocoder"], dev, speaker)
    model = loaded.bundle.model
    if model.streaming is None:
        raise SpeakError(f"--model {model_ckpt}: not a streaming model; lipspeech live needs one trained with "
                         "model.streaming (config.yaml), e.g. the ltbs_stream experiment of configs/streaming.yaml")
    try:
        roi = StreamingRoi(loaded.backend, loaded.roi_cfg, roi_lag, keyframe_interval)
    except ValueError as exc:
        raise SpeakError(f"--roi-lag: {exc}") from None
    chunk = chunk_frames or model.streaming.chunk_frames
    voice = _vocoder_stream(loaded.vocoder)
    res = LiveResult(live=live_source, algorithmic_ms={
        "model": 1000.0 * (chunk + model.streaming.lookahead_frames) / FPS,
        "roi": 1000.0 * roi_lag / FPS,
        "vocoder": float(voice.latency_ms),
    })
    res.algorithmic_ms["total"] = sum(res.algorithmic_ms.values())

    wav = GrowingWav(out) if out is not None else None
    arrival: dict[int, float] = {}  # timeline frame -> arrival time, for spoken frames not yet written
    state = {"samples": 0, "spoken_upto": 0}

    def say(line: str) -> None:
        res.events.append(line)
        if status is not None:
            status.write("\r\033[K" + line + "\n")
            status.flush()

    def write(audio: np.ndarray, spoken: bool = False) -> None:
        if not len(audio):
            return
        pcm = to_pcm(audio)
        if wav is not None:
            wav.write(pcm)
        if pcm_out is not None:
            pcm_out.write(pcm)
            pcm_out.flush()
        state["samples"] += len(audio)
        now = time.monotonic()
        done = state["samples"] // SAMPLES_PER_FRAME  # frames whose 640 samples are all written
        for t in range(state["spoken_upto"], done):
            if t in arrival:
                res.latencies_ms.append(1000.0 * (now - arrival.pop(t)))
        state["spoken_upto"] = done

    speaker_ = _Speaker(model, loaded.vocoder, chunk, temperature, loaded.speaker_id, seed, write)
    _warm_up(model, loaded.vocoder, chunk, loaded.speaker_id, loaded.roi_cfg.crop_size)
    src = LiveSource(source, size, realtime)
    t_next = 0  # timeline index of the next frame from the source
    crop_start = 0  # timeline index of the ROI's frame 0 (it restarts after a drop)
    had_face = False
    last_status = 0.0
    started = time.monotonic()

    def handle(crops: list[Any]) -> None:
        nonlocal had_face
        run: list[np.ndarray] = []
        run_t = None
        for c in crops:
            t = crop_start + c.t
            if c.crop is None:
                if run:
                    speaker_.frames(run_t, run)
                    run, run_t = [], None
                if had_face:
                    speaker_.end()
                    say(f"face lost at {t / FPS:.2f} s (no face for {loaded.roi_cfg.max_gap} frames): silence "
                        "until it is back")
                    had_face = False
                arrival.pop(t, None)
                write(np.zeros(SAMPLES_PER_FRAME, np.float32))
                continue
            if not had_face:
                if t > 0:
                    say(f"face found at {t / FPS:.2f} s")
                had_face = True
            if run_t is None:
                run_t = t
            run.append(c.crop)
        if run:
            speaker_.frames(run_t, run)

    try:
        while True:
            items = src.get(timeout if src.frames_read else open_timeout)
            if not items:
                if src.ended:
                    break
                if src.frames_read == 0:
                    raise LiveSourceError(f"{source}: no frame within {open_timeout:g} s"
                                          + (f" ({src.reason()})" if src.proc.poll() is not None else ""))
                say(f"source stopped: no frame for {timeout:g} s after {src.frames_read / FPS:.2f} s")
                break
            busy = time.monotonic()
            behind_ms = 1000.0 * (busy - items[0][1])
            if on_lag == "drop" and behind_ms > max_lag_ms and len(items) > 1:
                # keep the newest frame, drop the others: the ROI and the model start again from it
                dropped = items[:-1]
                items = items[-1:]
                handle(roi.flush())
                speaker_.end()
                write(np.zeros(SAMPLES_PER_FRAME * len(dropped), np.float32))
                t_next += len(dropped)
                res.dropped += len(dropped)
                roi = StreamingRoi(loaded.backend, loaded.roi_cfg, roi_lag, keyframe_interval)
                crop_start = t_next
                had_face = False
                say(f"behind the source by {behind_ms:.0f} ms: dropped {len(dropped)} frames "
                    f"({len(dropped) / FPS:.2f} s of silence)")
            for frame, arrived in items:
                arrival[t_next] = arrived
                t_next += 1
                handle(roi.push(frame))
            res.compute_seconds += time.monotonic() - busy
            res.frames = t_next
            if status is not None and time.monotonic() - last_status > 0.5:
                last_status = time.monotonic()
                status.write(
                    f"\r\033[Klive {t_next / FPS:6.1f} s | latency p50 {res.percentile(50):4.0f} ms "
                    f"p95 {res.percentile(95):4.0f} ms | RTF {res.rtf:.2f} | behind {behind_ms:4.0f} ms"
                    + (" | no face" if not had_face else ""))
                status.flush()
            if src.ended:
                break
        busy = time.monotonic()
        handle(roi.flush())
        speaker_.end()
        res.compute_seconds += time.monotonic() - busy
        res.source_error = src.reason() if src.ended else ""
        if src.frames_read == 0:
            raise LiveSourceError(f"{source}: no frames ({res.source_error or 'an empty stream'})")
        if res.source_error:
            say(f"source stopped after {src.frames_read / FPS:.2f} s: {res.source_error}")
        if roi.faces_seen == 0 and res.dropped == 0 and not had_face:
            say(f"no face found in {t_next} frames: the audio is silence")
    finally:
        src.close()
        if wav is not None:
            wav.close()
        res.frames = t_next
        res.samples = state["samples"]
        res.spoken_frames = len(res.latencies_ms)
        res.events.append(f"wall {time.monotonic() - started:.2f} s")
    return res


def format_result(source: str, out: Optional[str | os.PathLike], res: LiveResult) -> str:
    """The summary ``lipspeech live`` prints at the end."""
    alg = res.algorithmic_ms
    measured = (f"latency p50 {res.percentile(50):.0f} ms, p95 {res.percentile(95):.0f} ms (frame arrival to its "
                "audio written)" if res.live else "latency not measured (a file read as fast as it decodes; "
                "--realtime reads it at its pace)")
    return (
        f"live {source}: {res.frames} frames ({res.duration:.2f} s), {res.spoken_frames} with a face"
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
    width, height = (int(v) for v in args.size.lower().split("x"))
    try:
        res = run_live(
            args.source, args.model, out, sys.stdout.buffer if to_stdout else None, vocoder=args.vocoder, config=cfg,
            device=args.device, realtime=args.realtime, chunk_frames=args.chunk_frames, roi_lag=args.roi_lag,
            keyframe_interval=args.keyframe_interval, on_lag=args.on_lag, max_lag_ms=args.max_lag_ms,
            timeout=args.timeout, open_timeout=args.open_timeout, size=(width, height), temperature=args.temperature,
            speaker=args.speaker, seed=args.seed, status=None if args.quiet else sys.stderr, threads=args.threads,
        )
    except MediaError as exc:
        raise LiveSourceError(f"{args.source}: {exc}") from None
    if not args.quiet:
        sys.stderr.write("\r\033[K" + format_result(args.source, out, res) + "\n")
    return 0
