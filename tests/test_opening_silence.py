"""benchmarks/opening_silence.py: the level of an opening in dB, the murmur share, and the still-face stream
that ``--live`` sends through ``lipspeech live`` (each clip after its own first frame held, where it says)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from benchscripts import script

from lipspeech.core.media import read_frames

opening = script("opening_silence")


def test_levels_are_the_mean_square_in_db_with_silence_at_the_floor():
    t = np.arange(16000) / 16000
    assert opening.level_db(0.1 * np.sin(2 * np.pi * 440 * t)) == pytest.approx(10 * np.log10(0.01 / 2), abs=1e-3)
    assert opening.level_db(np.zeros(100)) == pytest.approx(-100.0)
    assert np.isnan(opening.level_db(np.zeros(0)))


def test_the_summary_is_mean_95th_percentile_and_share_above_minus_80():
    levels = [-100.0] * 18 + [-60.0, -40.0, float("nan")]
    mean = (18 * -100 - 100) / 20
    p95 = np.percentile([-100.0] * 18 + [-60.0, -40.0], 95)
    assert opening.summary(levels) == f"{mean:.1f} | {p95:.1f} | 10 %"
    assert opening.summary([float("nan")]) == "- | - | -"


def solid_clip(path: Path, colours: list[tuple[int, int, int]]) -> str:
    frames = np.stack([np.full((32, 48, 3), c, np.uint8) for c in colours])
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "48x32", "-r", "25", "-i", "-", "-c:v", "ffv1", str(path)], input=frames.tobytes(), check=True)
    return str(path)


def test_the_stream_holds_each_clips_first_frame_for_the_still_seconds(tmp_path):
    red, green, blue, white = (200, 30, 30), (30, 200, 30), (30, 30, 200), (230, 230, 230)
    a = solid_clip(tmp_path / "a.mkv", [red, green, green])
    b = solid_clip(tmp_path / "b.mkv", [blue, white, white, white, white])
    starts = opening.still_stream([a, b], 0.2, tmp_path / "stream.mkv")  # 0.2 s = 5 frames
    assert starts == [5, 13]
    frames = read_frames(tmp_path / "stream.mkv").astype(int)
    expected = [red] * 5 + [red, green, green] + [blue] * 5 + [blue] + [white] * 4
    assert len(frames) == len(expected) == 18
    assert np.abs(frames.mean(axis=(1, 2)) - np.array(expected)).max() < 4


def test_no_still_face_leaves_the_clips_back_to_back(tmp_path):
    a = solid_clip(tmp_path / "a.mkv", [(200, 30, 30)] * 3)
    b = solid_clip(tmp_path / "b.mkv", [(30, 30, 200)] * 4)
    assert opening.still_stream([a, b], 0.0, tmp_path / "stream.mkv") == [0, 3]
    assert len(read_frames(tmp_path / "stream.mkv")) == 7


def test_live_levels_read_each_still_stretch_and_opening_where_the_stream_put_them(tmp_path, monkeypatch):
    """run_live replaced by a stand-in that speaks each frame as 640 samples of its brightness: a clip that
    opens on one dark frame, then is bright, must give dark levels for its still stretch and its opening."""
    import soundfile as sf

    import lipspeech.commands.live as live

    def brightness_live(source, ckpt, out, options):
        frames = read_frames(source).mean(axis=(1, 2, 3)) / 255.0
        sf.write(out, np.repeat(frames, 640).astype(np.float32), 16000)

    monkeypatch.setattr(live, "run_live", brightness_live)
    dark, bright = (10, 10, 10), (240, 240, 240)
    a = solid_clip(tmp_path / "a.mkv", [dark, bright, bright])
    b = solid_clip(tmp_path / "b.mkv", [dark, dark, bright, bright])
    added, own, speech = opening.live_levels(Path("model.pt"), [a, b], [slice(640, 1920), slice(1280, 2560)], 0.4,
                                             tmp_path, 1)
    dark_db, bright_db = (opening.level_db(np.full(640, v / 255)) for v in (10, 240))  # about -28 and -0.5 dB
    assert np.allclose(added + own, dark_db, atol=1.0) and np.allclose(speech, bright_db, atol=1.0)
    added, own, _ = opening.live_levels(Path("model.pt"), [a, b], [slice(1280, None), slice(1920, None)], 0.0,
                                        tmp_path, 1)
    assert np.isnan(added).all() and own[0] > dark_db + 20 and own[1] > dark_db + 10
