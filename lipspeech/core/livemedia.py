"""Live video in, growing audio out: the media side of ``lipspeech live`` (base layer).

:class:`LiveSource` runs ffmpeg on anything it reads as a live input (a file, at its own pace
with ``realtime``; a V4L2 camera; a network stream) and hands over 25 fps gray frames as they
arrive, each with its arrival time. :class:`GrowingWav` is a WAV file that is valid after every
write.

The frames keep the picture's own size (square pixels, turned upright; the longer side at most
:data:`MAX_SIDE`) unless a size is asked for: a small face in a large frame (40 px in 720p) is
then as large as the detector can see it, where scaling into 640x480 halved it. ffmpeg learns
the size as it opens the source and writes it in the header of its YUV4MPEG output; nothing
probes the source first, which would take the first packets of a network stream (or the one
connection a ``tcp://...?listen=1`` sender accepts) and open a camera twice.
"""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Optional

import numpy as np

from lipspeech.core.media import MediaError, require_ffmpeg, stderr_lines
from lipspeech.core.store import one_line
from lipspeech.core.timing import FPS, SAMPLE_RATE

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
#: frames whose longer side exceeds this are scaled down to it (a 4K source would otherwise send 8 MB a frame)
MAX_SIDE = 1920
NETWORK_SCHEMES = ("udp://", "rtp://", "rtsp://", "http://", "https://", "tcp://", "srt://", "rtmp://")


# --------------------------------------------------------------------------- the source
def is_live(source: str, realtime: bool = False) -> bool:
    """Frames arrive at the source's pace: a camera, a network stream, or a file read with ``realtime``."""
    return realtime or source.startswith(NETWORK_SCHEMES) or source.startswith("/dev/video")


def ffmpeg_command(source: str, size: Optional[tuple[int, int]] = None, fps: float = FPS, realtime: bool = False,
                   max_side: int = MAX_SIDE) -> list[str]:
    """The ffmpeg command that turns ``source`` into gray frames at ``fps`` in a YUV4MPEG stream (its header
    carries the frame size): the picture at its own size with square pixels, scaled down when its longer
    side exceeds ``max_side`` (aspect kept, even sides), or letterboxed into ``size`` (width, height)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    if source.startswith(NETWORK_SCHEMES):
        # start after 1 s of probing, not ffmpeg's default 5 s (the probed packets are kept: -fflags
        # nobuffer would drop them, the first second of the stream)
        args += ["-flags", "low_delay", "-probesize", "500000", "-analyzeduration", "1000000"]
    elif source.startswith("/dev/video"):
        args += ["-f", "v4l2"]
    if realtime:
        args += ["-re"]
    if size is None:
        # ffmpeg has turned the picture by its display rotation already; iw * sar is its width in square pixels
        k = rf"min(1\,{int(max_side)}/max(iw*sar\,ih))"
        scale = rf"scale=w='trunc(iw*sar*{k}/2)*2':h='trunc(ih*{k}/2)*2',setsar=1"
    else:
        width, height = size
        scale = (f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
                 f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")
    return args + ["-i", source, "-an", "-vf", f"fps={fps},{scale},format=gray", "-f", "yuv4mpegpipe",
                   "-pix_fmt", "gray", "pipe:"]


def _read_line(out: IO[bytes], limit: int = 4096) -> bytes:
    """One header or frame line of a YUV4MPEG stream (without its newline; b"" at the end)."""
    line = bytearray()
    while len(line) < limit:
        c = out.read(1)
        if not c or c == b"\n":
            break
        line += c
    return bytes(line)


def _read_exact(out: IO[bytes], n: int) -> Optional[bytearray]:
    """``n`` bytes, or None when the stream ends first."""
    buf = bytearray()
    while len(buf) < n:
        data = out.read(n - len(buf))
        if not data:
            return None
        buf += data
    return buf


def y4m_size(header: bytes) -> Optional[tuple[int, int]]:
    """(width, height) of a YUV4MPEG stream header line (None: not one)."""
    fields = header.split()
    if not fields or fields[0] != b"YUV4MPEG2":
        return None
    dims = {f[:1]: f[1:] for f in fields[1:] if f[:1] in (b"W", b"H")}
    try:
        return int(dims[b"W"]), int(dims[b"H"])
    except (KeyError, ValueError):
        return None


class LiveSource:
    """Frames of a live source as they arrive, each with its arrival time (``time.monotonic()``).

    A reader thread takes whole frames from ffmpeg's output and queues them; :meth:`get` returns
    what has arrived. ffmpeg's error output is kept for the message when it stops.

    Args:
        source: file, camera device or URL.
        size: (width, height) the picture is scaled into (aspect kept, letterboxed), or None: the
            picture's own size (square pixels), the longer side at most ``max_side``.
        realtime: read a file at its own pace (ffmpeg -re).
        max_side: the cap on the longer side when ``size`` is None.

    Attributes:
        size: (width, height) of the frames, known once ffmpeg has opened the source (None before;
            set before the first frame is queued).
    """

    def __init__(self, source: str, size: Optional[tuple[int, int]] = None, realtime: bool = False,
                 max_side: int = MAX_SIDE):
        require_ffmpeg()
        if not source.startswith(NETWORK_SCHEMES) and not Path(source).exists():
            raise MediaError(f"{source}: no such file or device")
        self.source, self.scaled, self.max_side = source, size is not None, max_side
        self.size: Optional[tuple[int, int]] = None
        self.proc = subprocess.Popen(ffmpeg_command(source, size, realtime=realtime, max_side=max_side),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0)
        self.queue: "queue.Queue[Optional[tuple[np.ndarray, float]]]" = queue.Queue()
        self.frames_read = 0
        self.ended = False
        self._err: list[bytes] = []
        self._bad_output = ""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._err.append(self.proc.stderr.read()), daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        try:
            header = _read_line(out)
            size = y4m_size(header)
            if size is None:
                if header:
                    self._bad_output = f"not a YUV4MPEG header from ffmpeg: {header[:60]!r}"
                return
            width, height = self.size = size
            while True:
                marker = _read_line(out)
                if not marker.startswith(b"FRAME"):
                    if marker:
                        self._bad_output = f"not a YUV4MPEG frame from ffmpeg: {marker[:60]!r}"
                    return
                buf = _read_exact(out, width * height)
                if buf is None:
                    return
                frame = np.frombuffer(buf, np.uint8).reshape(height, width)
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
        if self._bad_output:
            return one_line(self._bad_output)
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
