"""Real-footage decoding: a phone's rotation tag, non-square pixels and interlacing give the frames a
viewer sees, in every reader (manifest's probe, read_frames, the ROI stage)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipspeech.data.media import display_size, probe, read_frames

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def encode(frames: np.ndarray, out: Path, *args: str) -> Path:
    """(T, H, W) gray uint8 frames at 25 fps -> ``out`` (codec arguments ``args``)."""
    t, h, w = frames.shape
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", "25",
                    "-i", "pipe:", *args, str(out)], input=frames.tobytes(), check=True)
    return out


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """The moving astronaut (tests/test_roi.py) at 480x360 as H.264, its decoded frames, and the folder."""
    from test_roi import moving_astronaut

    tmp = tmp_path_factory.mktemp("footage")
    frames, _ = moving_astronaut(30)
    gray = np.ascontiguousarray(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]))
    clip = encode(gray, tmp / "clip.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18")
    return tmp, clip, read_frames(clip, gray=True)


def test_display_size():
    assert display_size(640, 480, 1.0, 0) == (640, 480)
    assert display_size(640, 480, 1.0, 90) == (480, 640) and display_size(640, 480, 1.0, 270) == (480, 640)
    assert display_size(720, 576, 16 / 15, 0) == (768, 576)  # PAL 4:3 DV
    assert display_size(360, 480, 2.0, 90) == (480, 720)


@pytest.mark.parametrize("tag", ["90", "180", "270"])
def test_rotation_tag_gives_the_upright_frames(face_clip, tag):
    tmp, clip, upright = face_clip
    tagged = tmp / f"rot{tag}.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", str(tagged))
    info = probe(tagged)
    # which way a 'rotate' tag turns has changed between ffmpeg releases; the display matrix it is
    # written into is what players (and ffmpeg's autorotation) follow, and what probe reports
    assert info.rotation == (180 if tag == "180" else info.rotation) and info.rotation in (90, 180, 270)
    assert (info.coded_width, info.coded_height) == (480, 360)
    frames = read_frames(tagged, gray=True)
    # the decoded frames are the stored pixels turned clockwise by `rotation`, at the size probe reports
    expected = np.rot90(upright, k=-info.rotation // 90, axes=(1, 2))
    assert frames.shape[1:] == (info.height, info.width) == expected.shape[1:]
    assert np.array_equal(frames, expected)


def test_rotation_tagged_clip_gives_the_crops_of_the_physically_rotated_clip(face_clip):
    """A portrait phone clip (pixels stored sideways + a display rotation that turns them upright)
    and the same clip rotated for real (lossless, no tag) give the same mouth crops."""
    from lipspeech.config import validate_config
    from lipspeech.vision.backends import make_backend
    from lipspeech.vision.roi import RoiConfig, roi_utterance

    tmp, clip, upright = face_clip
    sideways = encode(np.ascontiguousarray(np.rot90(upright, k=1, axes=(1, 2))), tmp / "sideways.mp4",
                      "-c:v", "libx264", "-crf", "18")
    stored = read_frames(sideways, gray=True)
    tagged = tmp / "portrait.mp4"
    for tag in ("90", "270"):  # the tag whose display matrix turns the pixels 90 degrees clockwise
        ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", str(tagged))
        if probe(tagged).rotation == 90:
            break
    assert probe(tagged).rotation == 90
    physical = encode(np.ascontiguousarray(np.rot90(stored, k=-1, axes=(1, 2))), tmp / "physical.mkv", "-c:v", "ffv1")
    assert probe(physical).rotation == 0
    cfg = validate_config({})["roi"]
    backend = make_backend(cfg["backend"])
    roi = RoiConfig.from_section(cfg)
    a = roi_utterance(str(tagged), len(upright), backend, roi)
    b = roi_utterance(str(physical), len(upright), backend, roi)
    assert a.roi.shape == b.roi.shape == (len(upright), cfg["crop_size"], cfg["crop_size"])
    assert np.array_equal(a.roi, b.roi)
    assert a.qc["detection_rate"] == b.qc["detection_rate"] > 0.9
    # before the display rotation was applied, this clip was decoded sideways: no face
    with pytest.raises(Exception, match="no face"):
        roi_utterance(str(sideways), len(upright), backend, roi)


def test_non_square_pixels_are_made_square(face_clip):
    tmp, clip, upright = face_clip
    # anamorphic: half the columns, each pixel twice as wide as it is high
    squeezed = tmp / "anamorphic.mp4"
    ffmpeg("-i", str(clip), "-vf", "scale=240:360,setsar=2", "-c:v", "libx264", "-crf", "18", str(squeezed))
    info = probe(squeezed)
    assert info.sar == pytest.approx(2.0) and (info.width, info.height) == (480, 360)
    frames = read_frames(squeezed, gray=True)
    assert frames.shape == upright.shape
    # the same picture as the square-pixel original, less the detail half the columns lost
    err = np.abs(frames.astype(float) - upright.astype(float))
    assert err.mean() < 6 and np.corrcoef(frames.ravel(), upright.ravel())[0, 1] > 0.98


def test_interlaced_source_is_deinterlaced(face_clip):
    tmp, clip, upright = face_clip
    interlaced = tmp / "interlaced.mp4"
    ffmpeg("-i", str(clip), "-c:v", "libx264", "-flags", "+ilme+ildct", "-x264opts", "tff=1", "-crf", "18",
           "-field_order", "tt", str(interlaced))
    info = probe(interlaced)
    assert info.interlaced
    frames = read_frames(interlaced, gray=True)
    assert frames.shape == upright.shape  # yadif in send-frame mode: one frame per frame
    assert np.abs(frames.astype(float) - upright.astype(float)).mean() < 6


def test_manifest_records_rotation_and_sar(face_clip):
    from lipspeech.data.corpora import Entry
    from lipspeech.data.manifest import _probe_entry

    tmp, clip, _ = face_clip
    with_audio = tmp / "talk.mp4"
    ffmpeg("-i", str(clip), "-f", "lavfi", "-i", "sine=f=200:d=1.2", "-c:v", "copy", "-c:a", "aac", "-shortest",
           "-metadata:s:v:0", "rotate=90", str(with_audio))
    row = _probe_entry(Entry(utt="u", speaker="s", video_path=with_audio), {"min_duration": 0.1,
                                                                                  "max_duration": 60})
    assert row["rotation"] in (90, 270) and (row["sar"], row["interlaced"]) == (1.0, False)
    assert (row["width"], row["height"]) == (360, 480)
