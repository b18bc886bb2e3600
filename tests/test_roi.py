"""ROI stage: crop centre vs the generator's true mouth centre, tracking of a moving face,
gap filling, rejections, the shard's stores."""

import subprocess
from dataclasses import replace

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from needs import have_espeak, have_ffmpeg

from lipspeech.core.config import validate_config
from lipspeech.core.store import Store, StoreMeta, write_store
from lipspeech.vision.backends import BackendError, make_backend
from lipspeech.vision.roi import RoiConfig, RoiRejected, apply_affine, process_frames, similarity

ROI = RoiConfig.default()

CENTRE = (96 - 1) / 2


def centre_error_crop_px(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance (crop pixels) between the crop centre and frame points mapped into the crop."""
    return np.array([np.linalg.norm(apply_affine(A.astype(np.float64), p[None])[0] - CENTRE)
                     for A, p in zip(affine, points)])


@pytest.fixture(scope="module")
def roi_shard_run(tmp_path_factory):
    """SynthGRID 1 speaker x 2 utterances at 360x288 plus a faceless video, as one shard:
    manifest -> decode -> roi."""
    if not have_ffmpeg() or not have_espeak():
        pytest.skip("needs ffmpeg/ffprobe and libespeak-ng")
    from lipspeech.data.decode import decode_shard
    from lipspeech.data.synth.corpus import generate_corpus
    from lipspeech.vision.roi import roi_shard

    tmp = tmp_path_factory.mktemp("roi")
    raw = tmp / "raw"
    cfg = {"seed": 7, "speakers": ["s1"], "utterances_per_speaker": 2, "faces": ["astronaut"], "frame_size": [360, 288]}
    generate_corpus(cfg, raw, threads=2, progress=False)
    videos = sorted((raw / "s1").glob("*.mpg"))
    noface = raw / "noface.mpg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=360x288:r=25:d=1.6",
                    "-f", "lavfi", "-i", "sine=f=300:d=1.6", "-c:v", "mpeg1video", "-c:a", "mp2", "-f", "mpeg",
                    str(noface)], check=True)
    utts = [f"s1_{v.stem}" for v in videos] + ["x_noface"]
    paths = [str(v) for v in videos] + [str(noface)]
    write_store(tmp / "manifest.parquet", StoreMeta("manifest", "test"), utts,
                {"shard": pa.array([0] * 3, type=pa.int32()), "video_path": paths, "audio_path": paths})
    res = tmp / "results"
    decode_shard(tmp / "manifest.parquet", 0, validate_config({})["decode"], res / "audio/000.parquet",
                 res / "audio/000.rejected.parquet", progress=False, fail_fast=False)
    roi_cfg = dict(validate_config({})["roi"], contact_sheet=2)
    ok, bad = roi_shard(tmp / "manifest.parquet", res / "audio/000.parquet", roi_cfg, res / "roi/000.parquet",
                        res / "roi/000.qc.parquet", res / "roi/000.rejected.parquet", threads=2, progress=False,
                        fail_fast=False)
    return {"raw": raw, "res": res, "ok": ok, "bad": bad, "videos": dict(zip(utts, videos)), "tmp": tmp,
            "roi_cfg": roi_cfg}


def test_two_threads_give_what_one_gives(roi_shard_run):
    """threads=2 (the fixture) and one thread in order give the same crops, landmarks, QC and rejections."""
    from lipspeech.vision.roi import roi_shard

    tmp, res = roi_shard_run["tmp"], roi_shard_run["res"]
    one = tmp / "one"
    assert roi_shard(tmp / "manifest.parquet", res / "audio/000.parquet", roi_shard_run["roi_cfg"], one / "roi.parquet",
                     one / "qc.parquet", one / "rejected.parquet", threads=1, progress=False, fail_fast=False) == (2, 1)
    a, b = Store(res / "roi/000.parquet", expect_stage="roi"), Store(one / "roi.parquet", expect_stage="roi")
    assert a.utts == b.utts and len(a) == 2
    for i in range(len(a)):
        for name in ("roi", "affine", "landmarks"):
            np.testing.assert_array_equal(a.array(name, i), b.array(name, i))
    assert pq.read_table(res / "roi/000.qc.parquet").equals(pq.read_table(one / "qc.parquet"))
    assert pq.read_table(res / "roi/000.rejected.parquet").column("reason").to_pylist() == \
        pq.read_table(one / "rejected.parquet").column("reason").to_pylist()


def test_crop_centre_on_true_mouth_centre(roi_shard_run):
    res = roi_shard_run["res"]
    roi = Store(res / "roi/000.parquet", expect_stage="roi")
    audio = Store(res / "audio/000.parquet", expect_stage="decode")
    n_frames = dict(zip(audio.utts, audio.df["n_frames"]))
    assert len(roi) == 2
    errs = []
    for i, utt in enumerate(roi.utts):
        crops, affine = roi.array("roi", i), roi.array("affine", i)
        assert crops.dtype == np.uint8 and crops.shape == (n_frames[utt], 96, 96)
        assert affine.shape == (n_frames[utt], 2, 3)
        video = roi_shard_run["videos"][utt]
        true = np.load(video.parent / "mouth" / f"{video.stem}.npz")["centre"]
        assert len(true) == n_frames[utt]
        errs.append(centre_error_crop_px(affine, true))
    err = np.concatenate(errs)
    # within 3 px, measured in the 96x96 crop's pixel scale, on >= 99 % of frames
    assert (err <= 3.0).mean() >= 0.99, np.round(err, 2)


def test_rejected_faceless_video_and_qc(roi_shard_run):
    res = roi_shard_run["res"]
    assert (roi_shard_run["ok"], roi_shard_run["bad"]) == (2, 1)
    rejected = pq.read_table(res / "roi/000.rejected.parquet").to_pylist()
    assert [(r["utt"], r["stage"]) for r in rejected] == [("x_noface", "roi")]
    assert "no face" in rejected[0]["reason"] and "\n" not in rejected[0]["reason"]
    qc = Store(res / "roi/000.qc.parquet").df.set_index("utt")
    assert set(qc.index) == {*Store(res / "roi/000.parquet").utts, "x_noface"}
    good = qc.drop(index="x_noface")
    assert (good["reason"] == "").all() and (good["detection_rate"] >= 0.99).all()
    assert (good["face_size"] > 40).all() and (good["landmark_jitter"] < 1.5).all()
    # tracking: the detector ran on a few key frames only
    roi = Store(res / "roi/000.parquet").df
    assert (roi["detections"] <= roi["n_frames"] / 10).all()
    assert qc.loc["x_noface", "reason"] == rejected[0]["reason"]
    assert (res / "roi/000.sheet.png").stat().st_size > 1000


# --------------------------------------------------------------------------- a photo moving along a path
def moving_astronaut(n: int = 50, size=(480, 360)):
    """skimage's astronaut translated (sub-pixel) along a Lissajous path; returns frames, offsets."""
    import skimage.data
    img = skimage.data.astronaut()
    t = np.arange(n) / n
    offsets = np.stack([40 * np.sin(2 * np.pi * t) + 30 * t - 30, 25 * np.sin(4 * np.pi * t) - 20], 1)
    frames = np.stack([cv2.warpAffine(img, np.array([[1, 0, dx], [0, 1, dy]], np.float64), size,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
                       for dx, dy in offsets])
    return frames, offsets


@pytest.fixture(scope="module")
def dlib_backend():
    return make_backend("dlib", ROI.detect_max_side, ROI.detect_upsample)


def test_moving_face_every_frame_cropped_low_jitter(dlib_backend):
    frames, offsets = moving_astronaut()
    r = process_frames(frames, dlib_backend, RoiConfig.default())
    assert r.roi.shape == (50, 96, 96) and r.qc["detection_rate"] == 1.0 and r.qc["frames_interpolated"] == 0
    assert r.qc["detections"] <= 5
    # crop centre mapped back to the frame, minus the known motion: constant for a perfect tracker
    inv = np.stack([cv2.invertAffineTransform(A.astype(np.float64)) for A in r.affine])
    centre = inv[:, :, :2] @ np.array([CENTRE, CENTRE]) + inv[:, :, 2]
    residual = centre - offsets
    scale = np.hypot(r.affine[:, 0, 0], r.affine[:, 1, 0])  # crop pixels per frame pixel
    dev = np.linalg.norm(residual - np.median(residual, 0), axis=1) * scale
    # jitter measure: deviation (crop px) of the motion-compensated crop centre from its median
    assert dev.max() < 1.5 and np.sqrt(np.mean(dev**2)) < 0.6, np.round(dev, 2)
    assert np.ptp(scale) / scale.mean() < 0.03  # the crop scale holds still too


def test_short_gap_interpolated_long_gap_rejected(dlib_backend):
    frames, _ = moving_astronaut(40)
    gappy = frames.copy()
    gappy[10:15] = 90  # 5 faceless frames
    r = process_frames(gappy, dlib_backend, RoiConfig.default())
    assert r.roi.shape[0] == 40 and r.qc["frames_interpolated"] == 5 and r.qc["detection_rate"] == pytest.approx(35 / 40)
    gappy[10:25] = 90  # 15 > max_gap 12
    with pytest.raises(RoiRejected, match="face lost for 15 consecutive frames"):
        process_frames(gappy, dlib_backend, replace(RoiConfig.default(), min_detection_rate=0.5))
    with pytest.raises(RoiRejected, match="min_detection_rate"):
        process_frames(gappy, dlib_backend, RoiConfig.default())


def test_small_face_in_large_frame(dlib_backend):
    """A 1280x720 frame with a small face: detected on the downscaled frame or at full size."""
    import skimage.data
    face = cv2.resize(skimage.data.astronaut()[40:260, 110:330], (130, 130))
    frames = np.full((6, 720, 1280, 3), 100, np.uint8)
    for t in range(6):
        frames[t, 400:530, 900 + 2 * t : 1030 + 2 * t] = face
    r = process_frames(frames, dlib_backend, RoiConfig.default())
    assert r.roi.shape == (6, 96, 96) and r.qc["detection_rate"] == 1.0
    mouth = r.landmarks[:, 48:68].mean(1)
    assert (mouth[:, 0] > 900).all() and (mouth[:, 1] > 400).all()


def test_similarity_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(13, 2)) * 50
    a, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    M = similarity(src, src @ R.T + t)
    assert np.allclose(M[:, :2], R) and np.allclose(M[:, 2], t)


def test_face_alignment_backend_says_how_to_provide_it():
    pytest.importorskip("dlib")
    try:
        import face_alignment  # noqa: F401
        pytest.skip("face_alignment is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="pip install face-alignment.*never downloads"):
        make_backend("face_alignment", ROI.detect_max_side, ROI.detect_upsample)


def test_a_clip_too_long_to_hold_is_streamed_to_the_same_crops(roi_shard_run, dlib_backend, monkeypatch):
    # with no frame budget every clip is decoded twice a chunk at a time (what a 10-minute 1080p clip
    # gets): the same landmarks, crops and QC as decoding it once into memory
    import lipspeech.core.media as media
    import lipspeech.vision.roi as roi

    utt, video = next(iter(roi_shard_run["videos"].items()))
    n = len(media.read_frames(video, gray=True))
    cfg = RoiConfig.from_section(validate_config({})["roi"])
    held = roi.roi_utterance(str(video), n + 1, dlib_backend, cfg)  # one frame short: edge-padded
    chunks = []
    real_iter = media.iter_frames

    def small_chunks(*args, **kwargs):
        for chunk in real_iter(*args, **{**kwargs, "chunk_bytes": 7 * 360 * 288}):
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(roi, "FRAME_BUFFER_BYTES", 0)
    monkeypatch.setattr(roi, "iter_frames", small_chunks)
    streamed = roi.roi_utterance(str(video), n + 1, dlib_backend, cfg)
    assert len(chunks) > 4 and max(chunks) == 7  # two passes of 7-frame chunks
    np.testing.assert_array_equal(streamed.roi, held.roi)
    np.testing.assert_array_equal(streamed.landmarks, held.landmarks)
    assert streamed.qc == held.qc and len(streamed.roi) == n + 1
    with pytest.raises(RoiRejected, match="decode counted"):
        roi.roi_utterance(str(video), n + 5, dlib_backend, cfg)
