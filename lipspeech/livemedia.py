"""Live video in, growing audio out: the media side of ``lipspeech live`` (base layer).

:class:`LiveSource` runs ffmpeg on anything it reads as a live input (a file, at its own pace
with ``realtime``; a V4L2 camera; a network stream) and hands over 25 fps gray frames of a
fixed size as they arrive, each with its arrival time. :class:`GrowingWav` is a WAV file that
is valid after every write.
"""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from lipspeech.media import MediaError, require_ffmpeg, stderr_lines
from lipspeech.store import one_line
from lipspeech.timing import FPS, SAMPLE_RATE

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
NETWORK_SCHEMES = ("udp://", "rtp://", "rtsp://", "http://", "https://", "tcp://", "srt://", "rtmp://")


# --------------------------------------------------------------------------- the source
def is_live(source: str, realtime: bool = False) -> bool:
    """Frames arrive at the source's pace: a camera, a network stream, or a file read with ``realtime``."""
    return realtime or source.startswith(NETWORK_SCHEMES) or source.startswith("/dev/video")


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
            raise MediaError(f"{source}: no such file or device")
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
            item = self.queue.get(timeout=timeout)
            while item is not None:
                items.append(item)
                item = self.queue.get_nowait()
            self.ended = True  # the reader's end mark
        except queue.Empty:
            pass
        return items

    def reason(self) -> str:
        """Why ffmpeg stopped, in one line ('' when it ended normally)."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        lines = stderr_lines(self._err[0] if self._err else b"")
        return one_line(lines[-1] if lines else f"ffmpeg exited with status {code}") if code else ""

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
