"""ROI stage: per shard, a stabilised 96x96 grayscale mouth crop of every video frame.

Per utterance: frames decoded at 25 fps (:func:`lipspeech.core.media.read_frames`)
-> 68 landmarks, detected on key frames and tracked in between (:func:`track_landmarks`)
-> short gaps interpolated, long ones rejected (:func:`fill_gaps`)
-> temporal smoothing (Savitzky-Golay, quadratic)
-> per frame, the similarity transform taking the stable points (eye corners, nose;
   not the mouth, which moves with speech) onto :data:`REFERENCE_FACE`
-> a ``crop_size`` square centred on the aligned mouth centre (mean of points 48..67),
   its side set so the reference mouth width is ``mouth_width_fraction`` of it.

Store ``roi/{shard}.parquet``: ``utt, n_frames, duration, detection_rate,
frames_interpolated, landmark_jitter, face_size, detections, faces`` and the arrays ``roi``
(uint8 ``(T, S, S)``), ``affine`` (float32 ``(T, 2, 3)``, frame pixels -> crop pixels,
so ``inv(affine)`` maps the crop centre ``((S-1)/2, (S-1)/2)`` back into the frame) and
``landmarks`` (float32 ``(T, 68, 2)``, smoothed, frame pixels). ``T`` is the decode
stage's ``n_frames``. ``roi/{shard}.qc.parquet`` has the QC figures of every utterance
(rejected ones too, with the reason); ``roi/{shard}.rejected.parquet`` the rejections.
Training takes random 88x88 crops of the 96x96 ROI, evaluation the centre one.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.media import MediaError, MediaInfo, iter_frames, probe, read_frames, require_ffmpeg
from lipspeech.core.settings import RoiConfig
from lipspeech.core.shards import open_input_store, refuse_rejections
from lipspeech.core.store import Store, StoreMeta, one_line, write_bytes_atomic, write_rejected, write_store
from lipspeech.core.timing import FPS
from lipspeech.vision.backends import LandmarkBackend, make_backend
from lipspeech.vision.tracking import RoiRejected, fill_gaps, smooth, track_landmarks

STAGE = "roi"
#: a clip whose 25 fps gray frames take at most this is decoded once and held in memory; a longer
#: one is decoded twice, a chunk at a time (a 60 s 1080p clip's frames are 3 GB)
FRAME_BUFFER_BYTES = 256 << 20

# Mean face (iBUG-68), canonical 256-unit frame: eyes level, eye centres 100 units apart
# at y = 100, centred at x = 128. Generalised Procrustes mean of dlib's landmarks on
# the two builtin SynthGRID photos (skimage astronaut, matplotlib grace_hopper) and
# their mirror images, so it is left/right symmetric.
REFERENCE_FACE = np.array([
    [21.8, 105.4], [24.4, 132.7], [28.1, 159.4], [32.6, 185.8], [43.2, 209.9], [58.4, 230.0], [79.2, 246.4],
    [102.2, 259.2], [128.0, 263.1], [153.8, 259.2], [176.8, 246.4], [197.6, 230.0], [212.8, 209.9], [223.4, 185.8],
    [227.9, 159.4], [231.6, 132.7], [234.2, 105.4], [37.7, 82.2], [49.6, 66.5], [68.3, 62.5], [87.9, 65.1],
    [105.6, 73.0], [150.4, 73.0], [168.1, 65.1], [187.7, 62.5], [206.4, 66.5], [218.3, 82.2], [128.0, 98.3],
    [128.0, 115.9], [128.0, 134.0], [128.0, 152.2], [104.2, 162.2], [115.8, 165.3], [128.0, 168.7], [140.2, 165.3],
    [151.8, 162.2], [59.8, 99.8], [71.2, 93.3], [85.1, 93.2], [97.6, 103.2], [84.3, 104.9], [70.0, 105.5],
    [158.4, 103.2], [170.9, 93.2], [184.8, 93.3], [196.2, 99.8], [186.0, 105.5], [171.7, 104.9], [81.5, 188.7],
    [99.1, 186.6], [116.6, 185.4], [128.0, 188.5], [139.4, 185.4], [156.9, 186.6], [174.5, 188.7], [157.5, 206.5],
    [140.8, 213.8], [128.0, 215.3], [115.2, 213.8], [98.5, 206.5], [88.0, 190.4], [116.1, 194.0], [128.0, 195.4],
    [139.9, 194.0], [168.0, 190.4], [139.9, 201.9], [128.0, 202.2], [116.1, 201.9],
], dtype=np.float64)

# Points that do not move with speech: eye corners and the nose.
STABLE_POINTS = np.array([36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35])
MOUTH = slice(48, 68)
REF_MOUTH_WIDTH = float(np.linalg.norm(REFERENCE_FACE[54] - REFERENCE_FACE[48]))


# --------------------------------------------------------------------------- transforms
def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst, as (2, 3)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    # complex-number form of 2D Procrustes: dst ~ z * src, z = scale * e^{i angle}
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    z = np.vdot(za, zb) / max(np.vdot(za, za).real, 1e-12)
    R = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.hstack([R, (md - R @ ms)[:, None]])


def crop_affines(L: np.ndarray, crop_size: int, mouth_width_fraction: float) -> np.ndarray:
    """(T, 68, 2) smoothed landmarks -> (T, 2, 3) frame -> crop transforms."""
    side = REF_MOUTH_WIDTH / mouth_width_fraction  # crop side in reference units
    k = crop_size / side
    centre = (crop_size - 1) / 2
    out = np.empty((len(L), 2, 3))
    for t, pts in enumerate(L):
        M = similarity(pts[STABLE_POINTS], REFERENCE_FACE[STABLE_POINTS])
        mouth = M[:, :2] @ pts[MOUTH].mean(0) + M[:, 2]
        out[t, :, :2] = k * M[:, :2]
        out[t, :, 2] = k * (M[:, 2] - mouth) + centre
    return out


def apply_affine(A: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ A[:2, :2].T + A[:2, 2]


def invert_affine(A: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(A, dtype=np.float64))


@dataclass
class RoiResult:
    roi: np.ndarray        # (T, S, S) uint8
    affine: np.ndarray     # (T, 2, 3) float32 frame -> crop
    landmarks: np.ndarray  # (T, 68, 2) float32 smoothed, frame pixels
    qc: dict[str, Any]


def process_frames(frames: np.ndarray, backend: LandmarkBackend, cfg: RoiConfig) -> RoiResult:
    """Mouth ROI of one utterance's frames ((T, H, W) gray or (T, H, W, 3) RGB uint8).

    QC figures: ``detection_rate`` (frames with a face before gap filling),
    ``frames_interpolated``, ``landmark_jitter`` (RMS distance, in crop pixels, between
    the raw and the smoothed mouth centre: the frame-to-frame noise smoothing removed),
    ``face_size`` (median outer-eye-corner distance, frame pixels), ``detections``
    (detector calls), ``keyframes_kept`` (key frames whose detection failed, where the
    tracked face was kept), ``followed`` (which face the crops follow), ``faces`` (most faces
    found on one frame: with more than one, the largest face of the first detection is followed
    throughout, so a clip with two people is cropped on one of them; filter on this column to drop
    such clips).
    Raises RoiRejected with a one-line reason.
    """
    return process_stream(lambda: iter(frames), backend, cfg)


def process_stream(frames: Callable[[], Iterable[np.ndarray]], backend: LandmarkBackend, cfg: RoiConfig) -> RoiResult:
    """:func:`process_frames` in two passes over ``frames()`` (called twice, the same frames each time):
    the landmarks of every frame, then (once smoothed, which looks ahead) the crops. Only the
    landmarks and the crops are kept, so a clip decoded anew for each pass needs memory for a
    frame at a time, whatever its length."""
    track = track_landmarks(frames(), backend, cfg)
    T = len(track.landmarks)
    if T == 0:
        raise RoiRejected("video has no frames")
    raw, n_interp, longest = fill_gaps(track.landmarks, cfg.max_gap)
    rate = 1.0 - n_interp / T
    if rate < cfg.min_detection_rate:
        raise RoiRejected(f"face found in {rate:.0%} of {T} frames (roi.min_detection_rate = {cfg.min_detection_rate})")
    if longest > cfg.max_gap:
        raise RoiRejected(f"face lost for {longest} consecutive frames (roi.max_gap = {cfg.max_gap})")
    L = smooth(raw, cfg.smoothing)
    A = crop_affines(L, cfg.crop_size, cfg.mouth_width_fraction)
    S = cfg.crop_size
    roi = np.empty((T, S, S), dtype=np.uint8)
    t = 0
    for frame in frames():
        if t == T:
            raise RoiRejected(f"the video gave more frames on a second reading than its {T}")
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        roi[t] = cv2.warpAffine(gray, A[t], (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        t += 1
    if t != T:
        raise RoiRejected(f"the video gave {t} frames on a second reading, {T} on the first")
    scale = np.hypot(A[:, 0, 0], A[:, 1, 0])  # crop pixels per frame pixel
    dev = np.linalg.norm(raw[:, MOUTH].mean(1) - L[:, MOUTH].mean(1), axis=1) * scale
    qc = {
        "detection_rate": float(rate),
        "frames_interpolated": int(n_interp),
        "landmark_jitter": float(np.sqrt(np.mean(dev**2))),
        "face_size": float(np.median(np.linalg.norm(L[:, 45] - L[:, 36], axis=1))),
        "detections": int(track.detections),
        "keyframes_kept": int(track.keyframes_kept),
        "faces": int(track.faces),
        # with several people in view, which one the crops follow
        "followed": "largest face, then the nearest" if track.faces > 1 else "the only face",
    }
    return RoiResult(roi, A.astype(np.float32), L.astype(np.float32), qc)


# --------------------------------------------------------------------------- contact sheet
def qc_label(utt: str, qc: Mapping[str, Any], rotation: int = 0) -> str:
    """One line of an utterance's QC figures, as the contact sheet prints it above its crops."""
    parts = [utt, f"found {qc['detection_rate']:.0%}", f"interp {qc['frames_interpolated']}",
             f"jitter {qc['landmark_jitter']:.2f} px", f"face {qc['face_size']:.0f} px"]
    if rotation:
        parts.append(f"rotated {rotation} deg")
    if qc.get("keyframes_kept"):
        parts.append(f"kept {qc['keyframes_kept']} key frames")
    if qc.get("faces", 1) > 1:
        parts.append(f"{qc['faces']} faces: {qc['followed']}")
    return "  ".join(parts)


def contact_sheet(items: list[tuple[str, RoiResult]], per_row: int = 8,
                  rejected: Sequence[tuple[str, str]] = (), rotation: Mapping[str, int] | None = None) -> np.ndarray:
    """One row per utterance: its QC line (:func:`qc_label`) over ``per_row`` evenly spaced crops with
    the landmarks drawn; then one line per rejected utterance with its reason (BGR)."""
    S = items[0][1].roi.shape[1] if items else 96
    label_h = 14
    width = per_row * S
    sheet = np.zeros((len(items) * (S + label_h) + len(rejected) * label_h + (4 if rejected else 0), width, 3), np.uint8)
    for r, (utt, res) in enumerate(items):
        y0 = r * (S + label_h)
        label = qc_label(utt, res.qc, (rotation or {}).get(utt, 0))
        cv2.putText(sheet, label, (2, y0 + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        for c, t in enumerate(np.linspace(0, len(res.roi) - 1, per_row).round().astype(int)):
            tile = cv2.cvtColor(res.roi[t], cv2.COLOR_GRAY2BGR)
            for x, y in apply_affine(res.affine[t].astype(np.float64), res.landmarks[t].astype(np.float64)):
                if 0 <= x < S and 0 <= y < S:
                    cv2.circle(tile, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
            cv2.drawMarker(tile, (S // 2, S // 2), (0, 0, 255), cv2.MARKER_CROSS, 6, 1)
            sheet[y0 + label_h : y0 + label_h + S, c * S : (c + 1) * S] = tile
    y = len(items) * (S + label_h) + 4
    for utt, reason in rejected:
        cv2.putText(sheet, f"{utt}: rejected, {reason}", (2, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (80, 80, 255), 1,
                    cv2.LINE_AA)
        y += label_h
    return sheet


# --------------------------------------------------------------------------- shard
def _fitted(frames: Iterable[np.ndarray], n_frames: int, max_mismatch: int) -> Iterator[np.ndarray]:
    """The first ``n_frames`` frames of chunks of frames, the last repeated when there are fewer
    (:func:`~lipspeech.core.timing.fit_length`'s edge padding); RoiRejected when the video's count is
    more than ``max_mismatch`` away from ``n_frames``."""
    n, last = 0, None
    for chunk in frames:
        for frame in chunk:
            if n < n_frames:
                yield frame
            n, last = n + 1, frame
    if abs(n - n_frames) > max_mismatch:
        raise RoiRejected(f"video decoded to {n} frames but decode counted {n_frames} "
                          f"(more than roi.max_length_mismatch = {max_mismatch} apart)")
    for _ in range(n, n_frames):
        yield last


def roi_utterance(video_path: str, n_frames: int, backend: LandmarkBackend, cfg: RoiConfig,
                  info: MediaInfo | None = None) -> RoiResult:
    """Decode one video at 25 fps and crop its mouth; T is fitted to the decode stage's ``n_frames``.

    A clip whose frames fit in :data:`FRAME_BUFFER_BYTES` is decoded once and held; a longer one is
    decoded twice, a chunk at a time (:func:`process_stream`), so memory does not grow with its length.
    The crops are the same either way. ``info``: the clip's probe where the caller has it
    (:func:`recorded_info`); probed here otherwise.
    """
    try:
        info = info if info is not None else probe(video_path)
        held = ([read_frames(video_path, fps=FPS, gray=True, info=info)]  # one chunk, read by both passes
                if n_frames * info.width * info.height <= FRAME_BUFFER_BYTES else None)

        def frames() -> Iterator[np.ndarray]:
            chunks = held if held is not None else iter_frames(video_path, fps=FPS, gray=True, info=info)
            return _fitted(chunks, n_frames, cfg.max_length_mismatch)

        return process_stream(frames, backend, cfg)
    except MediaError as exc:
        raise RoiRejected(str(exc)) from None


def recorded_info(row: Mapping[str, Any]) -> MediaInfo | None:
    """What the manifest stage's probe of a clip recorded (``width``, ``height``, ``sar``,
    ``interlaced``, ``rotation``: all that decoding its frames needs), so this stage does not
    start ffprobe again (~0.07 s of CPU a clip, a tenth of the demo's ROI); None where the row
    lacks them (a manifest from before those columns, a clip without a picture): then it probes."""
    try:
        width, height = int(row["width"]), int(row["height"])
        info = MediaInfo(duration=float(row["duration"]), fps=float(row["fps"]), width=width, height=height,
                         n_video_frames=None, sample_rate=None, channels=None, has_video=True, has_audio=False,
                         rotation=int(row["rotation"]), sar=float(row["sar"]), interlaced=bool(row["interlaced"]))
    except (KeyError, TypeError, ValueError):
        return None
    return info if width > 0 and height > 0 else None


QC_FIELDS = {"detection_rate": pa.float64(), "frames_interpolated": pa.int32(), "landmark_jitter": pa.float64(),
             "face_size": pa.float64(), "detections": pa.int32(), "keyframes_kept": pa.int32(), "faces": pa.int32(),
             "followed": pa.string()}


def roi_shard(
    manifest_path: Path, audio_path: Path, roi_cfg: Mapping[str, Any], out: Path, qc_out: Path, rejected_out: Path,
    threads: int = 1, progress: bool = True, *, fail_fast: bool,
) -> tuple[int, int]:
    """Mouth ROIs of every utterance of one decode store; returns (n_ok, n_rejected).

    Utterances the decode stage rejected are not in its store and are skipped here
    (their reason is already in decode's rejected table); an unreadable decode store
    rejects the shard's utterances (named by the manifest). With ``roi.contact_sheet: N``
    the first N utterances are drawn to ``{out stem}.sheet.png`` beside the store.
    With ``fail_fast`` any rejection fails the stage (StageError) and nothing is written.
    """
    require_ffmpeg()
    cfg = RoiConfig.from_section(roi_cfg)
    audio, unreadable = open_input_store(audio_path, "decode", manifest_path, fail_fast)
    n_frames = dict(zip(audio.utts, (int(n) for n in audio.df["n_frames"]))) if audio is not None and len(audio) else {}
    manifest = Store(manifest_path, expect_stage="manifest").df.set_index("utt")
    utts = sorted(n_frames)
    local = threading.local()

    def backend() -> LandmarkBackend:  # one per thread: dlib objects are not shared across threads
        if not hasattr(local, "b"):
            local.b = make_backend(cfg.backend, cfg.detect_max_side, cfg.detect_upsample)
        return local.b

    backend()  # a backend that cannot run here fails the stage at once, in one line

    def work(utt: str) -> tuple[str, RoiResult | str]:
        try:
            row = manifest.loc[utt]
            return utt, roi_utterance(str(row["video_path"]), n_frames[utt], backend(), cfg, recorded_info(row))
        except RoiRejected as exc:
            return utt, one_line(exc)
        except KeyError:
            return utt, "not in the manifest"

    ok: list[tuple[str, RoiResult]] = []
    rejected: list[tuple[str, str]] = list(unreadable)
    qc_rows: list[dict[str, Any]] = [{"utt": u, **{k: None for k in QC_FIELDS}, "reason": r} for u, r in unreadable]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        bar = tqdm(pool.map(work, utts), total=len(utts), desc=f"roi {audio_path.stem}", unit="utt", disable=not progress)
        for utt, res in bar:
            if isinstance(res, str):
                rejected.append((utt, res))
                qc_rows.append({"utt": utt, **{k: None for k in QC_FIELDS}, "reason": res})
            else:
                ok.append((utt, res))
                qc_rows.append({"utt": utt, **res.qc, "reason": ""})
    refuse_rejections(STAGE, rejected, fail_fast)
    h = config_hash(dict(roi_cfg))
    extra = {"crop_size": cfg.crop_size, "fps": FPS, "backend": cfg.backend,
             "affine": "frame pixels -> crop pixels; crop centre = ((S-1)/2, (S-1)/2)"}
    write_store(
        out, StoreMeta(STAGE, h, extra=extra), [u for u, _ in ok],
        {
            "n_frames": pa.array([len(r.roi) for _, r in ok], type=pa.int32()),
            "duration": pa.array([len(r.roi) / FPS for _, r in ok], type=pa.float64()),
            **{k: pa.array([r.qc[k] for _, r in ok], type=typ) for k, typ in QC_FIELDS.items()},
        },
        {name: [getattr(r, name) for _, r in ok] for name in ("roi", "affine", "landmarks")},
    )
    # the display rotation decode applied (manifest), beside the tracker's figures
    rotation = {u: int(r) for u, r in manifest["rotation"].items()} if "rotation" in manifest.columns else {}
    write_store(
        qc_out, StoreMeta("roi-qc", h), [r["utt"] for r in qc_rows],
        {**{k: pa.array([r[k] for r in qc_rows], type=typ) for k, typ in QC_FIELDS.items()},
         "rotation": pa.array([rotation.get(r["utt"], 0) for r in qc_rows], type=pa.int32()),
         "reason": pa.array([r["reason"] for r in qc_rows], type=pa.string())},
    )
    write_rejected(rejected_out, STAGE, rejected)
    if cfg.contact_sheet > 0 and (ok or rejected):
        png = cv2.imencode(".png", contact_sheet(ok[: cfg.contact_sheet], rejected=rejected[: cfg.contact_sheet],
                                                 rotation=rotation))[1].tobytes()
        write_bytes_atomic(Path(out).with_suffix(".sheet.png"), png)
    return len(ok), len(rejected)
