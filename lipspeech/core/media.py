"""Reading audio and video through ffmpeg (ffmpeg-python builds the command lines, but for
:func:`read_audio_and_count`'s two outputs).

All functions raise :class:`MediaError` with a one-line reason that a rejected
table can hold ("no audio stream", "ffmpeg: Invalid data found when processing
input", ...).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import ffmpeg
import numpy as np

from lipspeech.core.store import one_line
from lipspeech.core.timing import FPS, SAMPLE_RATE


class MediaError(RuntimeError):
    """A media file cannot be read; the message is one line."""


def require_ffmpeg() -> None:
    """Fail with what to do when ffmpeg/ffprobe are not installed."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise MediaError(
            f"{' and '.join(missing)} not found on PATH: run `make deps` (or `apt-get install ffmpeg`)"
        )


# ffmpeg prefixes messages with "[component @ 0x55d0c0ffee00]": the address differs from run to
# run, and a rejected table must be the same bytes every time
_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+\]")


def stderr_lines(stderr: bytes | None) -> list[str]:
    """ffmpeg's stderr as stripped non-empty lines, the memory addresses in its messages removed."""
    text = (stderr or b"").decode("utf-8", "replace")
    return [_ADDRESS.sub("]", ln.strip()) for ln in text.splitlines() if ln.strip()]


def _ffmpeg_reason(exc: ffmpeg.Error) -> str:
    lines = stderr_lines(exc.stderr)
    return one_line("ffmpeg: " + (lines[-1] if lines else "failed without a message"))


# messages of our own raw output muxers (f32le, rawvideo) are about timestamps, which raw samples and
# frames do not carry (e.g. the non-monotonic dts of stream-copy concatenated clips): not damage
_OWN_MUXER = re.compile(r"^\[(out#\d+/)?(f32le|rawvideo)\]")


def _check_damage(stderr: bytes | None, what: str) -> None:
    """Raise MediaError when ffmpeg reported decoding errors (``-v error``) on a run that succeeded.

    A truncated or corrupt file often decodes "successfully" to fewer frames or samples,
    with the damage only visible in these messages.
    """
    lines = [ln for ln in stderr_lines(stderr) if not _OWN_MUXER.match(ln)]
    if lines:
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        raise MediaError(f"damaged or truncated {what} stream, ffmpeg: {lines[0]}{more}")


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a file (None where the stream is absent).

    ``width`` and ``height`` are the frame size a viewer sees, which :func:`read_frames`
    returns: the coded size with non-square pixels made square (``sar``) and turned by the
    display rotation (``rotation``: 0, 90, 180 or 270 degrees clockwise, from the stream's
    display matrix or its ``rotate`` tag; every portrait phone video has one).
    """

    duration: float | None
    fps: float | None
    width: int | None
    height: int | None
    n_video_frames: int | None  # as declared by the container, may be None
    sample_rate: int | None
    channels: int | None
    has_video: bool
    has_audio: bool
    rotation: int = 0
    sar: float = 1.0  # sample (pixel) aspect ratio, width / height of one coded pixel
    interlaced: bool = False
    coded_width: int | None = None
    coded_height: int | None = None


def _rotation(stream: dict) -> int:
    """Clockwise display rotation (0/90/180/270) of a video stream: its display matrix (whose
    ``rotation`` is counter-clockwise) or, from older muxers, its ``rotate`` tag (clockwise)."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                return int(round(-float(side["rotation"]) / 90.0)) * 90 % 360
            except (TypeError, ValueError):
                break
    try:
        return int(round(float((stream.get("tags") or {}).get("rotate", 0)) / 90.0)) * 90 % 360
    except (TypeError, ValueError):
        return 0


def _sar(stream: dict) -> float:
    num, _, den = str(stream.get("sample_aspect_ratio") or "1:1").partition(":")
    try:
        value = float(Fraction(int(num), int(den)))
    except (ValueError, ZeroDivisionError):
        return 1.0
    return value if value > 0 else 1.0  # 0:1 = unknown: square


def display_size(width: int, height: int, sar: float, rotation: int) -> tuple[int, int]:
    """The (width, height) a viewer sees of ``width`` x ``height`` coded pixels: stretched to
    square pixels (the width, to an even number) and turned by ``rotation``."""
    if abs(sar - 1.0) > 1e-3:
        width = max(2, int(round(width * sar / 2.0)) * 2)
    return (height, width) if rotation % 180 == 90 else (width, height)


def probe(path: str | Path) -> MediaInfo:
    """Probe a media file. Raises MediaError when it is not readable media."""
    require_ffmpeg()
    path = Path(path)
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as exc:
        raise MediaError(_ffmpeg_reason(exc)) from None
    streams = info.get("streams", [])
    video = next((s for s in streams
                  if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)

    def _float(x: object) -> float | None:
        try:
            v = float(x)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) and v > 0 else None

    fps = None
    if video is not None:
        for key in ("avg_frame_rate", "r_frame_rate"):
            rate = video.get(key, "0/0")
            num, _, den = rate.partition("/")
            if den not in ("", "0") and num not in ("", "0"):
                fps = float(Fraction(int(num), int(den)))
                break
    duration = _float(info.get("format", {}).get("duration"))
    if duration is None:
        duration = _float((video or audio or {}).get("duration"))
    nb = (video or {}).get("nb_frames")
    coded_w = int(video["width"]) if video and video.get("width") else None
    coded_h = int(video["height"]) if video and video.get("height") else None
    rotation, sar = (_rotation(video), _sar(video)) if video else (0, 1.0)
    width, height = display_size(coded_w, coded_h, sar, rotation) if coded_w and coded_h else (coded_w, coded_h)
    return MediaInfo(
        duration=duration,
        fps=fps,
        width=width,
        height=height,
        n_video_frames=int(nb) if nb and str(nb).isdigit() else None,
        sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        has_video=video is not None,
        has_audio=audio is not None,
        rotation=rotation,
        sar=sar,
        interlaced=bool(video) and str(video.get("field_order", "")) in ("tt", "bb", "tb", "bt"),
        coded_width=coded_w,
        coded_height=coded_h,
    )


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, reject_damaged: bool = False) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (ffmpeg resamples and downmixes).

    With ``reject_damaged``, decoding errors ffmpeg reports (a truncated or corrupt
    stream) raise MediaError even when some audio came out.
    """
    require_ffmpeg()
    try:
        out, err = (
            ffmpeg.input(str(path))
            .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, map="0:a:0")
            .global_args("-nostdin", "-threads", "1", "-v", "error")
            .run(capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as exc:
        raise MediaError(_ffmpeg_reason(exc)) from None
    if reject_damaged:
        _check_damage(err, "audio")
    return np.frombuffer(out, dtype="<f4").copy()


def read_frames(
    path: str | Path, fps: float = FPS, gray: bool = False, size: tuple[int, int] | None = None,
    reject_damaged: bool = False, info: MediaInfo | None = None,
) -> np.ndarray:
    """Decode the first video stream at ``fps`` (resampled by ffmpeg's fps filter), as a viewer sees it.

    Every reader of video frames (decode's frame count, the ROI stage, ``speak``) comes
    through here, so a 29.97, 30 or 50 fps source gives the same 25 fps frames everywhere.
    Frames are turned by the stream's display rotation (ffmpeg's autorotation), interlaced
    sources are deinterlaced (yadif, one frame per frame) and non-square pixels are resampled
    to square ones (:class:`MediaInfo`), so a phone's portrait clip or an anamorphic DV clip
    gives upright, undistorted faces.

    Args:
        path: media file.
        fps: output frame rate (frames are dropped/duplicated by ffmpeg to reach it).
        gray: return (T, H, W) luma instead of (T, H, W, 3) RGB.
        size: optional (width, height) to scale to.
        reject_damaged: raise MediaError when ffmpeg reports decoding errors.
        info: the file's :func:`probe` when the caller has it already.

    Returns:
        uint8 array (T, H, W, 3) or (T, H, W).
    """
    chunks = list(iter_frames(path, fps, gray, size, reject_damaged, info=info))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _video_output(path: str | Path, fps: float, gray: bool, size: tuple[int, int] | None,
                  info: MediaInfo | None = None) -> tuple[Any, int, tuple]:
    """The ffmpeg command of :func:`read_frames`, the bytes of one frame and a frame's shape."""
    require_ffmpeg()
    info = info if info is not None else probe(path)
    if not info.has_video:
        raise MediaError("no video stream")
    width, height = size if size is not None else (info.width, info.height)
    # ffmpeg turns the frames by the display rotation before these filters (autorotate)
    stream = ffmpeg.input(str(path)).video
    if info.interlaced:
        stream = stream.filter("yadif", mode=0)
    stream = stream.filter("fps", fps=fps)
    if size is not None or abs(info.sar - 1.0) > 1e-3:
        stream = stream.filter("scale", width, height).filter("setsar", 1)
    pix_fmt, channels = ("gray", 1) if gray else ("rgb24", 3)
    cmd = stream.output("pipe:", format="rawvideo", pix_fmt=pix_fmt).global_args("-nostdin", "-threads", "1",
                                                                                 "-v", "error")
    return cmd, width * height * channels, (height, width) + (() if gray else (3,))


def iter_frames(
    path: str | Path, fps: float = FPS, gray: bool = False, size: tuple[int, int] | None = None,
    reject_damaged: bool = False, chunk_bytes: int = 64 << 20, info: MediaInfo | None = None,
) -> Iterator[np.ndarray]:
    """:func:`read_frames`'s frames, in chunks of at most ``chunk_bytes`` (at least one frame each):
    memory bounded whatever the clip's length. Errors are raised when ffmpeg has finished, after
    the frames it gave (as :func:`read_frames` raises them, which collects these chunks)."""
    import threading

    cmd, frame_bytes, shape = _video_output(path, fps, gray, size, info)
    proc = cmd.run_async(pipe_stdout=True, pipe_stderr=True)
    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()  # a corrupt file's messages must not fill the pipe and stall ffmpeg
    per_chunk = max(1, chunk_bytes // frame_bytes)
    n = 0
    try:
        while True:
            data = proc.stdout.read(per_chunk * frame_bytes)
            whole = len(data) // frame_bytes
            if whole:
                n += whole
                yield np.frombuffer(data, dtype=np.uint8, count=whole * frame_bytes).reshape((whole, *shape))
            if len(data) < per_chunk * frame_bytes:
                tail = len(data) - whole * frame_bytes
                break
    finally:
        proc.stdout.close()
        code = proc.wait()
        drain.join()
    stderr = err[0] if err else b""
    if code != 0:
        raise MediaError(_ffmpeg_reason(ffmpeg.Error("ffmpeg", b"", stderr)))
    if reject_damaged:
        _check_damage(stderr, "video")
    if n == 0 or tail:
        width, height = shape[1], shape[0]
        raise MediaError(f"video decoded to {n * frame_bytes + tail} bytes, not a whole number of "
                         f"{width}x{height} frames")


def count_frames(path: str | Path, fps: float = FPS, reject_damaged: bool = False) -> int:
    """Number of frames the video has once resampled to ``fps`` (decodes, tiny output)."""
    return int(read_frames(path, fps=fps, gray=True, size=(8, 8), reject_damaged=reject_damaged).shape[0])


def read_audio_and_count(video_path: str | Path, audio_path: str | Path, fps: float = FPS,
                         sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int] | None:
    """:func:`read_audio` of ``audio_path`` and :func:`count_frames` of ``video_path`` from one ffmpeg
    process, or None when that process failed or reported anything at all: the caller then runs the
    two separately, which name the damaged stream and apply the damage policy. On a clean file the
    two results are those of the separate calls (tests/test_zoo.py); ffmpeg's start costs ~0.08 s
    here, and the decode stage started it three times an utterance (a probe, the frames, the audio).
    """
    import os
    import subprocess
    import threading

    require_ffmpeg()
    # two inputs even when the audio is the clip's own: decoding the audio of the video's own input
    # moves the frames' start to the audio's (the fps filter then gave SynthGRID clips one frame more).
    # Written out because ffmpeg-python makes two inputs of one file one input; the filters are
    # _video_output's for an 8x8 frame (tests/test_zoo.py holds the counts to count_frames')
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-threads", "1", "-i", str(video_path),
           "-threads", "1", "-i", str(audio_path)]
    cmd += ["-map", "1:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]
    # the frames (8x8 gray: 64 bytes each) to a pipe of their own (nothing on disk,
    # even when the process is killed); the frame count needs neither the probe's deinterlacing nor
    # its pixel-aspect fix, both of which keep one frame per frame
    read_end, write_end = os.pipe()
    cmd += ["-filter_complex", f"[0:v]fps=fps={fps}[s0];[s0]scale=8:8[s1];[s1]setsar=1[s2]", "-map", "[s2]",
            "-f", "rawvideo", "-pix_fmt", "gray", f"pipe:{write_end}"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(write_end,))
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as frames_pipe:
        frames: list[bytes] = []
        drain = threading.Thread(target=lambda: frames.append(frames_pipe.read()), daemon=True)
        drain.start()  # the frames must not fill their pipe while the audio is read
        audio, err = proc.communicate()
        drain.join()
    n_bytes = len(frames[0]) if frames else 0
    if proc.returncode != 0 or stderr_lines(err) or n_bytes % 64 or len(audio) % 4:
        return None
    return np.frombuffer(audio, dtype="<f4").copy(), n_bytes // 64
