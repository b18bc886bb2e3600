"""lipspeech live: a file, a local network stream made by ffmpeg here, a stream that stops, a face that
leaves the frame, a camera that does not exist; the live ROI; the WAV that grows."""

import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from needs import free_port, needs_synthgrid

from lipspeech.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
    needs_synthgrid,  # tests/needs.py
]  # live_models: tests/conftest.py


def _frames(video) -> np.ndarray:
    from lipspeech.core.media import read_frames

    return read_frames(video, gray=True)


def _wav(path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000
    return audio


def _live(live_models, source, out, *args):
    return main(["live", str(source), "--model", str(live_models["stream"]), "--vocoder", str(live_models["vocoder"]),
                 "-o", str(out), "--quiet", *args])


def _encode(path, args: list[str], frames: int = 5):
    """A short H.264 clip of ffmpeg's test picture (``args``: its size and filters)."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=rate=25:" + args[0], "-frames:v",
                    str(frames), *args[1:], "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _read_all(src) -> np.ndarray:
    frames = []
    while not src.ended:
        frames += [f for f, _ in src.get(10.0)]
    src.close()
    return np.stack(frames)


def test_live_source_reads_the_picture_at_its_own_size(tmp_path):
    """By default a 1280x720 clip comes at 1280x720, the frames the roi stage reads (a 40 px face stays 40 px);
    non-square pixels made square as the roi stage makes them; a 2560x1440 picture scaled to 1920x1080; an
    explicit size scales into it, letterboxed."""
    from lipspeech.core.livemedia import LiveSource
    from lipspeech.core.media import probe, read_frames

    hd = _encode(tmp_path / "hd.mp4", ["size=1280x720"])
    src = LiveSource(str(hd))
    frames = _read_all(src)
    assert src.size == (1280, 720) and not src.scaled and src.reason() == ""
    assert np.array_equal(frames, read_frames(hd, gray=True))

    small = LiveSource(str(hd), (640, 480))
    frames = _read_all(small)
    assert small.size == (640, 480) and small.scaled and frames.shape == (5, 480, 640)
    # 16:9 into 4:3: the picture is 640x360 with black bars of 60 rows above and below
    assert frames[:, :58].max() < 20 and frames[:, -58:].max() < 20 and frames[:, 62:-62].mean() > 60

    dv = _encode(tmp_path / "dv.mp4", ["size=720x576", "-vf", "setsar=16/15"])
    src = LiveSource(str(dv))
    frames = _read_all(src)
    info = probe(dv)
    assert (info.sar, src.size) == (16 / 15, (768, 576)) and src.size == (info.width, info.height)
    assert np.array_equal(frames, read_frames(dv, gray=True))

    big = _encode(tmp_path / "big.mp4", ["size=2560x1440"], frames=2)
    src = LiveSource(str(big))
    assert _read_all(src).shape == (2, 1080, 1920) and src.size == (1920, 1080)
    src = LiveSource(str(big), max_side=1000)
    assert _read_all(src).shape == (2, 562, 1000)  # 1000 x 562.5, sides even


def test_live_roi_with_the_centred_lag_is_the_roi_stage():
    """With lag = smoothing // 2 the live crops are the roi stage's, frame for frame; lag 0 crops differ a little."""
    from lipspeech.vision.backends import make_backend
    from lipspeech.vision.live import StreamingRoi
    from lipspeech.vision.roi import RoiConfig, process_frames

    cfg = RoiConfig.default()
    backend = make_backend(cfg.backend, cfg.detect_max_side, cfg.detect_upsample)
    rng = np.random.default_rng(0)
    from skimage import data

    face = (data.astronaut()[:, :, 0]).astype(np.float32)
    # a face that drifts: the smoothing has something to do
    frames = np.stack([np.roll(face, (int(3 * np.sin(i / 3)), int(2 * rng.normal())), (0, 1)) for i in range(30)])
    frames = frames.astype(np.uint8)
    ref = process_frames(frames, backend, cfg)
    for lag, same in ((cfg.smoothing // 2, True), (0, False)):
        roi = StreamingRoi(backend, cfg, lag)
        out = [c for f in frames for c in roi.push(f)] + roi.flush()
        assert [c.t for c in out] == list(range(30))
        # memory does not grow with the stream: the tracker keeps one frame, the ROI a smoothing window
        assert len(roi.tracker.landmarks) == 1 and len(roi._marks) <= cfg.smoothing
        crops = np.stack([c.crop for c in out])
        assert np.array_equal(crops, ref.roi) == same
        assert np.abs(crops.astype(int) - ref.roi).mean() < 6


def test_live_file_whole_chunk_equals_speak(live_models, tmp_path):
    """One chunk covering the clip and the roi stage's smoothing: live gives speak's audio (to 1 LSB); in
    chunks, a WAV of 640 samples per frame, the same bytes on stdout."""
    out, ref = tmp_path / "live.wav", tmp_path / "speak.wav"
    assert main(["speak", str(live_models["video"]), "--model", str(live_models["stream"]),
                 "--vocoder", str(live_models["vocoder"]), "-o", str(ref)]) == 0
    assert _live(live_models, live_models["video"], out, "--chunk-frames", "1000", "--roi-lag", "3",
                 "--keyframe-interval", "25") == 0
    a, b = _wav(ref), _wav(out)
    assert len(a) == len(b) == 640 * len(_frames(live_models["video"]))
    assert np.abs(a.astype(int) - b).max() <= 1 and np.abs(a).max() > 100

    chunked = tmp_path / "chunked.wav"
    assert _live(live_models, live_models["video"], chunked) == 0
    pcm = subprocess.run(
        [sys.executable, "-m", "lipspeech.cli", "live", str(live_models["video"]), "--model", str(live_models["stream"]),
         "--vocoder", str(live_models["vocoder"]), "--stdout", "--quiet"], capture_output=True, check=True).stdout
    assert np.array_equal(np.frombuffer(pcm, "<i2"), _wav(chunked))


def test_live_drop_policy_keeps_the_timeline(live_models):
    """Frames that waited longer than max_lag_ms: dropped, all but the newest, when the source is live and
    on_lag is drop (said, and silence in their place: 640 samples a frame either way); every frame
    processed with on_lag wait, or when a file is read as fast as it decodes."""
    from lipspeech.commands.liveengine import EngineOptions, LiveEngine
    from lipspeech.commands.speak import load_pipeline
    from lipspeech.core.config import validate_config
    from lipspeech.core.runtime import resolve_device

    frames = _frames(live_models["video"])[:40]
    late = time.monotonic() - 5.0  # every frame arrived 5 s ago: far behind
    for on_lag, live, dropped in (("drop", True, 29), ("wait", True, 0), ("drop", False, 0)):
        loaded = load_pipeline(live_models["stream"], str(live_models["vocoder"]), validate_config({})["vocoder"],
                               resolve_device("cpu"), None)
        engine = LiveEngine(loaded, EngineOptions(on_lag=on_lag, max_lag_ms=200.0), live=live, warm=False)
        engine.push([(f, time.monotonic()) for f in frames[:10]])  # 10 on time: the face is found first
        behind = engine.push([(f, late) for f in frames[10:]])
        engine.finish()
        res = engine.close()
        assert behind > 4000.0
        assert res.dropped == dropped and res.frames == len(frames) and res.samples == 640 * len(frames), on_lag
        said = [e for e in res.events if "dropped" in e]
        assert said == ([f"behind the source by {behind:.0f} ms: dropped {dropped} frames ({dropped / 25:.2f} s of "
                         "silence)"] if dropped else []), res.events


def _wait_until_bound(port: int, proc: subprocess.Popen, kind: int = socket.SOCK_DGRAM, timeout: float = 90.0) -> None:
    """Until ``proc`` has bound ``port`` (UDP, or a listening TCP socket; our own bind then fails): a
    process started under load takes longer than any fixed sleep to start ffmpeg and open its socket,
    and a UDP sender that starts first sends into the void, a TCP client is refused."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing bound port {port} within {timeout:.0f} s")


def test_live_network_stream(live_models, tmp_path, capsys):
    """ffmpeg serves the clip as MPEG-TS over TCP at its own pace; live receives every frame, writes its
    audio as it goes and reports latency."""
    port = free_port()
    sender = subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-i", str(live_models["video"]), "-c:v", "mpeg2video",
                               "-q:v", "2", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"])
    try:
        _wait_until_bound(port, sender, socket.SOCK_STREAM)
        out = tmp_path / "net.wav"
        # --on-lag wait: every frame is kept however loaded the machine (this test is of the network path, not of dropping)
        code = main(["live", f"tcp://127.0.0.1:{port}", "--model", str(live_models["stream"]), "--vocoder",
                     str(live_models["vocoder"]), "-o", str(out), "--timeout", "5", "--on-lag", "wait"])
    finally:
        sender.wait(timeout=30)
    assert code == 0
    n = len(_frames(live_models["video"]))
    assert len(_wav(out)) == 640 * n
    err = capsys.readouterr().err
    assert f"{n} frames" in err and f"{n} with a face" in err and "latency p50" in err


def test_live_stream_that_stops_keeps_its_audio(live_models, tmp_path, capsys):
    """A UDP stream whose sender goes away: after --timeout the run ends, says so, keeps the audio, exits 0."""
    port = free_port()
    out = tmp_path / "udp.wav"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "lipspeech.cli", "live", f"udp://127.0.0.1:{port}", "--model", str(live_models["stream"]),
         "--vocoder", str(live_models["vocoder"]), "-o", str(out), "--timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_bound(port, receiver)
    subprocess.run(["ffmpeg", "-v", "error", "-re", "-i", str(live_models["video"]), "-c:v", "mpeg2video", "-q:v", "2",
                    "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], check=True, timeout=60)
    _, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 0, err
    assert "source stopped: no frame for 2 s" in err
    audio = _wav(out)
    assert len(audio) > 0 and len(audio) % 640 == 0


def test_live_face_leaves_the_frame(live_models, tmp_path, capsys):
    """Clip, 30 black frames, clip: the face is lost and found again (said), the audio keeps the timeline
    with exact silence while it is away."""
    frames = _frames(live_models["video"])
    h, w = frames.shape[1:]
    seq = np.concatenate([frames, np.zeros((30, h, w), np.uint8), frames])
    clip = tmp_path / "away.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", "25",
                    "-i", "pipe:", "-c:v", "ffv1", str(clip)], input=seq.tobytes(), check=True)
    out = tmp_path / "away.wav"
    assert main(["live", str(clip), "--model", str(live_models["stream"]), "--vocoder", str(live_models["vocoder"]),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    lost = re.search(r"face lost at ([0-9.]+) s", err)
    found = re.search(r"face found at ([0-9.]+) s", err)
    assert lost and found, err
    lost_from, found_at = round(float(lost.group(1)) * 25), round(float(found.group(1)) * 25)
    # noticed within a detection interval (5) and roi.max_gap (12) frames; found again on the first face frame
    assert len(frames) + 12 <= lost_from <= len(frames) + 5 + 12 + 1 and found_at == len(frames) + 30
    audio = _wav(out)
    assert len(audio) == 640 * len(seq)
    assert not audio[640 * lost_from : 640 * found_at].any()
    assert np.abs(audio[640 * (found_at + 10) :]).max() > 0


def test_live_errors(live_models, tmp_path, capsys):
    """A camera that does not exist, an offline model, no output: one line each, exit 1."""
    out = tmp_path / "x.wav"
    assert _live(live_models, "/dev/video97", out) == 1
    assert "/dev/video97: no such file or device" in capsys.readouterr().err
    assert main(["live", str(live_models["video"]), "--model", str(live_models["offline"]), "-o", str(out)]) == 1
    assert "not a streaming model" in capsys.readouterr().err
    assert main(["live", str(live_models["video"]), "--model", str(live_models["stream"])]) == 1
    assert "give -o" in capsys.readouterr().err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    assert _live(live_models, broken, out) == 1
    assert "broken.mp4: no frames" in capsys.readouterr().err


def test_live_reads_a_720p_source_at_720p(live_models, tmp_path, capsys):
    """The clip's face in a 1280x720 frame (H.264): live tracks it in 1280x720 frames and says so; --size 640x480
    scales into 640x480 (and says so); a --size that is not WIDTHxHEIGHT is one line and exit 1."""
    clip = tmp_path / "hd.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(live_models["video"]), "-vf", "pad=1280:720:(ow-iw)/2:(oh-ih)/2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    n = len(_frames(clip))
    for args, size, how in (([], "1280x720", "the source's own picture, the longer side at most 1920"),
                            (["--size", "640x480"], "640x480", "scaled into --size, aspect kept")):
        out = tmp_path / "hd.wav"
        assert main(["live", str(clip), "--model", str(live_models["stream"]), "--vocoder", str(live_models["vocoder"]),
                     "-o", str(out), *args]) == 0
        err = capsys.readouterr().err
        assert f"frames {size} ({how})" in err and f"{n} frames ({n / 25:.2f} s, {size})" in err, err
        assert f"{n} with a face" in err and len(_wav(out)) == 640 * n
    assert _live(live_models, clip, tmp_path / "x.wav", "--size", "640") == 1
    assert "--size 640: give WIDTHxHEIGHT, e.g. 640x480" in capsys.readouterr().err


def test_growing_wav_is_valid_at_every_write(tmp_path):
    import soundfile as sf

    from lipspeech.commands.live import GrowingWav, to_pcm

    wav = GrowingWav(tmp_path / "g.wav")
    for n in (100, 0, 640, 37):
        wav.write(to_pcm(np.full(n, 0.5, np.float32)))
        audio, rate = sf.read(str(tmp_path / "g.wav"), dtype="int16")
        assert rate == 16000 and len(audio) == wav.samples and (audio == 16384).all()
    wav.close()
