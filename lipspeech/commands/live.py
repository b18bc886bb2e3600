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
``on_lag="wait"`` every frame is processed and the delay grows (the settings: :class:`LiveOptions`).

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

from lipspeech.commands.liveengine import EngineOptions, LiveEngine, LiveResult, check_streaming, options_from_args
from lipspeech.commands.speak import SpeakError
from lipspeech.core.livemedia import GrowingWav, LiveSource, is_live, to_pcm  # noqa: F401 (to_pcm: this module's users)
from lipspeech.core.media import MediaError
from lipspeech.core.timing import FPS, SAMPLE_RATE


class LiveSourceError(SpeakError):
    """The source cannot be opened or gave no frame (a missing camera, a wrong URL)."""


@dataclass(frozen=True)
class LiveOptions:
    """The settings of ``run_live`` (``lipspeech live --help``); each default is written here only.

    Attributes:
        engine: the live engine's (chunk size, ROI lag, keyframe interval, temperature, seed, lag policy).
        vocoder: a HiFi-GAN checkpoint, ``griffin-lim`` or None (the config's, else Griffin-Lim).
        device: where the model runs.
        realtime: read a file at its own pace.
        timeout: seconds without a frame after which the source counts as stopped.
        open_timeout: seconds to wait for the first frame (a network stream may not have started).
        size: (width, height) frames are scaled into (aspect kept, letterboxed); None: the picture's own
            size, the longer side at most :data:`~lipspeech.core.livemedia.MAX_SIDE` (said on ``status``).
        speaker: as for ``speak``.
        threads: torch threads (None: leave as is).
    """

    engine: EngineOptions = field(default_factory=EngineOptions)
    vocoder: Optional[str] = None
    device: str = "cpu"
    realtime: bool = False
    timeout: float = 10.0
    open_timeout: float = 30.0
    size: Optional[tuple[int, int]] = None
    speaker: Optional[str] = None
    threads: Optional[int] = None


def run_live(
    source: str,
    model_ckpt: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    pcm_out: Optional[IO[bytes]] = None,
    options: Optional[LiveOptions] = None,
    config: Optional[Mapping[str, Any]] = None,
    status: Optional[IO[str]] = None,
) -> LiveResult:
    """Speech from ``source`` as it arrives (module docstring); returns what happened.

    Args:
        source: file, camera device or URL (anything ffmpeg opens).
        model_ckpt: a checkpoint of a model trained in streaming mode.
        out: WAV written as it grows (None: none).
        pcm_out: binary stream for raw 16 kHz 16-bit mono PCM (e.g. stdout), or None.
        options: :class:`LiveOptions` (None: the defaults).
        config: a validated config (its vocoder section), or None.
        status: where the status line and events go (None: nowhere).

    Raises:
        LiveSourceError: the source cannot be opened or gave no frame within ``timeout``.
        SpeakError: the model is not a streaming model, or the checkpoint/vocoder cannot be loaded.
    """
    import torch

    from lipspeech.commands.speak import load_pipeline
    from lipspeech.core.config import validate_config
    from lipspeech.core.runtime import resolve_device

    opt = options if options is not None else LiveOptions()
    live_source = is_live(source, opt.realtime)  # a file read as fast as it decodes is not: nothing to catch up with
    if opt.threads:
        torch.set_num_threads(opt.threads)
    cfg = config if config is not None else validate_config({})
    loaded = load_pipeline(Path(model_ckpt), opt.vocoder, cfg["vocoder"], resolve_device(opt.device), opt.speaker)
    check_streaming(loaded, model_ckpt, opt.engine.roi_lag)
    session = _Session(LiveEngine(loaded, opt.engine, live_source), status, out, pcm_out)
    try:
        try:
            src = LiveSource(source, opt.size, opt.realtime)
        except MediaError as exc:
            raise LiveSourceError(str(exc)) from None
        try:
            session.run(src, opt.timeout, opt.open_timeout)
        finally:
            src.close()
        if src.frames_read == 0:
            raise LiveSourceError(f"{source}: no frames ({session.engine.res.source_error or 'an empty stream'})")
    finally:
        session.close()
    return session.engine.res


class _Session:
    """One ``run_live``: the engine fed from ffmpeg, its audio to the WAV and the PCM stream, its lines to ``status``."""

    def __init__(self, engine: LiveEngine, status: Optional[IO[str]], out: Optional[str | os.PathLike],
                 pcm_out: Optional[IO[bytes]]):
        self.engine, self.status = engine, status
        # the status line rewrites itself on a terminal; a log gets the events and the summary only
        self.tty = status is not None and status.isatty()
        self.wav = GrowingWav(out) if out is not None else None
        self.pcm = pcm_out
        engine.on_event = self.say
        engine.sinks.append(self.write)

    def say(self, line: str) -> None:
        if self.status is not None:
            self.status.write(("\r\033[K" if self.tty else "") + line + "\n")
            self.status.flush()

    def write(self, pcm: bytes, spoken: list[int]) -> None:
        if self.wav is not None:
            self.wav.write(pcm)
        if self.pcm is not None:
            self.pcm.write(pcm)
            self.pcm.flush()

    def run(self, src: LiveSource, timeout: float, open_timeout: float) -> None:
        engine, res = self.engine, self.engine.res
        last_status = 0.0
        while True:
            items = src.get(timeout if src.frames_read else open_timeout)
            if not items:
                if src.ended:
                    break
                if src.frames_read == 0:
                    reason = f" ({src.reason()})" if src.proc.poll() is not None else ""
                    raise LiveSourceError(f"{src.source}: no frame within {open_timeout:g} s{reason}")
                engine.say(f"source stopped: no frame for {timeout:g} s after {src.frames_read / FPS:.2f} s")
                break
            if res.frame_size is None:
                width, height = src.size
                engine.say(f"frames {width}x{height} " + ("(scaled into --size, aspect kept)" if src.scaled else
                           f"(the source's own picture, the longer side at most {src.max_side})"))
            behind_ms = engine.push(items)
            if self.tty and time.monotonic() - last_status > 0.5:
                last_status = time.monotonic()
                self.status.write(
                    f"\r\033[Klive {engine.t_next / FPS:6.1f} s | latency p50 {res.percentile(50):4.0f} ms "
                    f"p95 {res.percentile(95):4.0f} ms | RTF {res.rtf:.2f} | behind {behind_ms:4.0f} ms"
                    + ("" if engine.had_face else " | no face"))
                self.status.flush()
            if src.ended:
                break
        res.source_error = src.reason() if src.ended else ""
        if res.source_error and src.frames_read:
            engine.say(f"source stopped after {src.frames_read / FPS:.2f} s: {res.source_error}")
        engine.finish()

    def close(self) -> None:
        if self.wav is not None:
            self.wav.close()
        self.engine.close()


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
    """The command (registered in :mod:`lipspeech.commands.toolcli`)."""
    from lipspeech.core.config import load_config

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
    # the parser leaves out the options not given (argparse.SUPPRESS): their defaults are the dataclasses'
    options = options_from_args(LiveOptions, args, engine=options_from_args(EngineOptions, args), size=size)
    try:
        res = run_live(args.source, args.model, out, sys.stdout.buffer if to_stdout else None, options, cfg,
                       None if args.quiet else sys.stderr)
    except MediaError as exc:  # ffmpeg missing
        raise LiveSourceError(f"{args.source}: {exc}") from None
    if not args.quiet:
        sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "") + format_result(args.source, out, res) + "\n")
    return 0
