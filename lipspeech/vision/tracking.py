"""Following one face through a clip: landmarks per frame, gaps filled, smoothing.

:class:`LandmarkTracker` takes frames one at a time, so a clip need not be in memory at once
and a live source can be tracked as it arrives; :mod:`lipspeech.vision.roi` turns the track
into mouth crops. ``cfg`` is the ``roi`` section, a :class:`~lipspeech.core.settings.RoiConfig`
(the tracker reads ``keyframe_interval``, ``track_max_shift`` and ``track_max_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from lipspeech.core.settings import RoiConfig
from lipspeech.vision.backends import LandmarkBackend


class RoiRejected(RuntimeError):
    """An utterance gives no usable ROI; the message is one line for the rejected table."""


@dataclass
class Track:
    """Landmarks per frame, NaN where no face; ``detections`` = detector calls made."""

    landmarks: np.ndarray  # (T, 68, 2) float32
    detections: int
    faces: int = 0  # most faces the detector found on one frame (> 1: the tracker followed one of them)
    keyframes_kept: int = 0  # key frames whose detection found nothing, where the tracked face was kept


#: a frame shows the tracked face when its eyes-to-mouth patch correlates at least this much with the
#: patch of the last detection (normalised cross-correlation; benchmarks/face_backends.py measures it)
MIN_PATCH_MATCH = 0.5
#: a backend that scores its landmark fit (MediaPipe's face-presence probability) must give at least this
MIN_FIT_SCORE = 0.5
PATCH = 24


def face_patch(gray: np.ndarray, L: np.ndarray) -> np.ndarray:
    """The face from the brows to the chin, upright (eye line level), scaled by the face's size (not the
    eye distance, which a turned face shrinks), as a zero-mean unit-norm ``PATCH`` x ``PATCH`` vector;
    zeros where the frame is flat (a black or uniform frame matches nothing)."""
    d = L[42:48].mean(0) - L[36:42].mean(0)
    n = max(float(np.hypot(*d)), 1e-6)
    centre, size = _extent(L)
    k = PATCH / size
    c, s = d[0] / n * k, d[1] / n * k
    A = np.array([[c, s], [-s, c]])
    M = np.hstack([A, (np.array([PATCH / 2, PATCH / 2]) - A @ centre)[:, None]])
    p = cv2.warpAffine(gray, M, (PATCH, PATCH), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    p -= p.mean()
    norm = np.linalg.norm(p)
    return (p / norm).ravel() if norm > 1e-3 * PATCH else np.zeros(PATCH * PATCH)


def _extent(L: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and size (sqrt of the bounding-box area) of a landmark set."""
    lo, hi = L.min(0), L.max(0)
    return (lo + hi) / 2, float(np.sqrt(max(1.0, (hi[0] - lo[0]) * (hi[1] - lo[1]))))


class LandmarkTracker:
    """Detect on key frames, fit in the box carried over from the previous frame in between.

    Frames are given one at a time (:meth:`update`), so a clip need not be in memory at once
    (and a live source can be tracked as it arrives). The detector box of the last key frame
    is stored relative to the landmarks it gave (offset and size in units of the landmarks'
    extent), so a tracked box follows the face as the previous frame's landmarks move. A frame
    is re-detected when it is a key frame (every ``keyframe_interval`` frames), when the
    previous frame had no face, or when the tracked landmarks look unreliable: their centre
    moved by more than ``track_max_shift`` face sizes or their size changed by more than
    ``track_max_scale``. With several faces, a track starts on the largest one and key frames
    keep to the face nearest the previous frame's, so one clip is cropped on one person
    throughout. A key frame whose detection finds nothing (codec noise, a turned head, motion
    blur) keeps the tracked landmarks when they pass the same plausibility check, and the next
    detection waits a full interval, instead of losing the face until a detection succeeds again.
    """

    def __init__(self, backend: LandmarkBackend, cfg: RoiConfig):
        self.backend, self.cfg = backend, cfg
        self.landmarks: list[np.ndarray] = []
        self.detections = self.faces = self.kept = self.lost = 0
        self.ref: np.ndarray | None = None  # face_patch of the last detection
        self.seen: tuple[int, np.ndarray] | None = None  # the last frame with a face, and its landmarks
        self.refound = 0  # frames whose face was found where it was last seen, after the detector missed
        self.prev: np.ndarray | None = None
        self.rel: tuple[np.ndarray, float] | None = None  # box centre offset, box size, per landmark size
        self.last_key = -10**9

    def _detect(self, gray: np.ndarray, t: int) -> np.ndarray | None:
        self.detections += 1
        boxes = []
        near = getattr(self.backend, "detect_near", None)
        if near is not None and self.seen is not None:
            # first around the face last seen (4x its size): one detector pass where a whole-frame
            # search for a small face in a large frame takes many (MediaPipe's tiles)
            c, s = _extent(self.seen[1])
            boxes = near(gray, (c[0] - 2 * s, c[1] - 2 * s, c[0] + 2 * s, c[1] + 2 * s))
        if not boxes:
            boxes = self.backend.detect(gray)
        self.faces = max(self.faces, len(boxes))
        if not boxes:
            return None
        # a new track starts on the largest face: nearest the camera, the speaker of a talking-head
        # clip (with two people, HOG confidence says nothing about who matters)
        box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        if self.prev is not None and len(boxes) > 1:
            # keep following the face we had (another face or a false positive may score higher)
            c, _ = _extent(self.prev)
            box = min(boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - c[0], (b[1] + b[3]) / 2 - c[1]))
        L, score = self._fit(gray, box)
        patch = face_patch(gray, L)
        if score < MIN_FIT_SCORE or not patch.any():
            return None  # the detector's box holds no face the landmark fit believes in
        self.ref = patch
        c, s = _extent(L)
        bc = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        self.rel = ((bc - c) / s, (box[2] - box[0]) / s)
        self.last_key = t
        return L

    def _near(self, L: np.ndarray, ref: np.ndarray) -> bool:
        """Whether landmarks ``L`` lie where ``ref`` does (the tracker's shift limit)."""
        c, s = _extent(ref)
        return bool(np.linalg.norm(_extent(L)[0] - c) <= self.cfg.track_max_shift * s)

    def _fit(self, gray: np.ndarray, box) -> tuple[np.ndarray, float]:
        """Landmarks in a detector's box and the backend's fit score (1 where it gives none)."""
        fit_scored = getattr(self.backend, "fit_scored", None)
        return fit_scored(gray, box) if fit_scored is not None else (self.backend.fit(gray, box), 1.0)

    def _track(self, gray: np.ndarray, prev: np.ndarray) -> np.ndarray | None:
        """The face of landmarks ``prev`` in this frame, or None when it is not plausibly there: the
        backend scores the fit low, the landmarks jumped or changed size, or the face no longer looks
        like the face of the last detection (covered, blacked out, turned away)."""
        cfg = self.cfg
        c, s = _extent(prev)
        track = getattr(self.backend, "track", None)
        if track is not None:  # the backend follows from the previous landmarks itself (MediaPipe's video mode)
            L, score = track(gray, prev)
        else:
            bc = c + self.rel[0] * s
            half = self.rel[1] * s / 2
            L, score = self._fit(gray, (bc[0] - half, bc[1] - half, bc[0] + half, bc[1] + half))
        c2, s2 = _extent(L)
        if np.linalg.norm(c2 - c) > cfg.track_max_shift * s or abs(s2 / s - 1) > cfg.track_max_scale:
            return None
        if score < MIN_FIT_SCORE or (self.ref is not None and float(face_patch(gray, L) @ self.ref) < MIN_PATCH_MATCH):
            self.lost += 1
            return None
        return L

    def update(self, frame: np.ndarray) -> np.ndarray | None:
        """The next frame's landmarks ((68, 2), frame pixels), or None when it has no face."""
        t, cfg = len(self.landmarks), self.cfg
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        tracked = None
        if self.prev is not None and self.rel is not None:
            tracked = self._track(gray, self.prev)
        key_frame = t - self.last_key >= cfg.keyframe_interval
        L = tracked if not key_frame else None
        if L is None:
            before = self.ref, self.rel
            L = self._detect(gray, t)
            if L is not None and tracked is not None and not self._near(L, tracked):
                # a key frame's detection elsewhere than the face still tracked: another face or a
                # false detection (a motion-blurred frame), not a reason to jump
                L, (self.ref, self.rel) = None, before
            if L is None and tracked is not None:
                L, self.last_key = tracked, t
                self.kept += 1
            elif L is None and self.seen is not None and t - self.seen[0] <= cfg.keyframe_interval:
                # the detector missed, but the face may still be where it was last seen: fitted there,
                # it counts only if it passes the same checks as a tracked face (a face a detector
                # misses on noisy or turned frames, which the fit still finds)
                L = self._track(gray, self.seen[1])
                self.refound += L is not None
        if L is not None:
            self.seen = (t, L)
        self.landmarks.append(np.asarray(L, np.float32) if L is not None else np.full((68, 2), np.nan, np.float32))
        self.prev = L
        return L

    def forget(self, keep: int) -> None:
        """Keep only the last ``keep`` frames' landmarks (a live source runs for hours); the key-frame
        schedule and the tracking state are unchanged."""
        drop = len(self.landmarks) - keep
        if drop > 0:
            del self.landmarks[:drop]
            self.last_key -= drop  # frame indices below are relative to the first landmarks kept
            if self.seen is not None:
                self.seen = (self.seen[0] - drop, self.seen[1])

    def track(self) -> Track:
        """The landmarks of every frame so far (NaN where no face) and the tracker's counts."""
        out = np.stack(self.landmarks) if self.landmarks else np.zeros((0, 68, 2), np.float32)
        return Track(out, self.detections, self.faces, self.kept)


def track_landmarks(frames: Iterable[np.ndarray], backend: LandmarkBackend, cfg: RoiConfig) -> Track:
    """:class:`LandmarkTracker` over ``frames`` (an array or chunks' frames, any iterable of frames)."""
    tracker = LandmarkTracker(backend, cfg)
    for frame in frames:
        tracker.update(frame)
    return tracker.track()


def fill_gaps(L: np.ndarray, max_gap: int) -> tuple[np.ndarray, int, int]:
    """Linearly interpolate frames without landmarks (edges: copy the nearest).

    Returns (filled (T, 68, 2), frames interpolated, longest gap). Raises RoiRejected
    when no frame has a face.
    """
    found = ~np.isnan(L[:, 0, 0])
    T = len(L)
    if not found.any():
        raise RoiRejected(f"no face detected in any of {T} frames")
    longest, run = 0, 0
    for f in found:
        run = 0 if f else run + 1
        longest = max(longest, run)
    if found.all():
        return L.copy(), 0, 0
    idx = np.flatnonzero(found)
    flat = L.reshape(T, -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(np.arange(T), idx, flat[idx, j])
    return filled.reshape(L.shape), int((~found).sum()), longest


def smooth(L: np.ndarray, window: int) -> np.ndarray:
    """Savitzky-Golay smoothing over ``window`` frames (quadratic fits; 1 = none).

    A quadratic fit follows a moving head without the lag and the flattening of turns
    that a moving average has; the ends are fitted, not padded.
    """
    L = L.astype(np.float64)
    window = min(window if window % 2 else window + 1, len(L) if len(L) % 2 else len(L) - 1)
    if window < 5:  # too short to fit a quadratic and still smooth
        return L
    from scipy.signal import savgol_filter

    return savgol_filter(L, window, 2, axis=0, mode="interp")
