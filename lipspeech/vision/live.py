"""Mouth crops of a live source, frame by frame (``lipspeech live``).

The roi stage smooths a whole clip's landmarks with a centred quadratic (Savitzky-Golay)
window and interpolates short gaps between detections; both look ahead. Live, frame t's
crop is made once frame t + ``lag`` has been tracked: its landmarks are the quadratic fitted
to the ``smoothing`` frames ending at t + lag, evaluated at t. ``lag = smoothing // 2`` is
the roi stage's centred window (the same crops as :func:`~lipspeech.vision.roi.process_frames`
on a clip with a face in every frame; the first frames then wait for a whole window);
``lag = 0`` adds no latency (the fit's end point: a little more jitter). A frame without a
face keeps the last landmarks, for up to ``max_gap`` frames; after that the face is lost
(:attr:`StreamingRoi.lost`) until a detection finds it again.

The tracker fits landmarks in the box carried over from the previous frame and keeps them
when a key frame's detection fails but they look plausible (the roi stage's robustness to a
turned head or codec noise). On a live source that would follow a face that has gone (a
fit in an empty box can look plausible): here a failed key-frame detection starts a doubt,
every following frame is detected again, and ``max_gap`` frames in a row without a
detection lose the face.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from lipspeech.core.settings import RoiConfig
from lipspeech.vision.backends import LandmarkBackend
from lipspeech.vision.roi import crop_affines
from lipspeech.vision.tracking import LandmarkTracker


@dataclass
class LiveCrop:
    """One frame's output: its index and its mouth crop (S, S) uint8, or None (no face)."""

    t: int
    crop: Optional[np.ndarray]


def _quadratic_at(window: np.ndarray, x: np.ndarray, at: float) -> np.ndarray:
    """Least-squares quadratic through (x, window[i]) for every coordinate, evaluated at ``at``."""
    design = np.stack([np.ones_like(x), x, x * x], axis=1)
    coef, *_ = np.linalg.lstsq(design, window.reshape(len(window), -1), rcond=None)
    return (coef[0] + coef[1] * at + coef[2] * at * at).reshape(window.shape[1:])


class StreamingRoi:
    """Frame-by-frame mouth crops (module docstring).

    Args:
        backend: landmark backend (detector + 68-point predictor).
        cfg: the checkpoint's ROI settings (crop size, mouth fraction, smoothing, tracking, max_gap).
        lag: frames a crop waits for (0 .. smoothing // 2).
        keyframe_interval: detect every this many frames (None: ``cfg``'s, the roi stage's); live
            runs detect more often than the roi stage, so that a face that goes is noticed soon.
    """

    def __init__(self, backend: LandmarkBackend, cfg: RoiConfig, lag: int = 0,
                 keyframe_interval: Optional[int] = None):
        if keyframe_interval is not None:
            cfg = replace(cfg, keyframe_interval=int(keyframe_interval))
        w = cfg.smoothing if cfg.smoothing % 2 else cfg.smoothing + 1
        if not 0 <= lag <= w // 2:
            raise ValueError(f"ROI lag {lag}: must be between 0 and {w // 2} (half the smoothing window)")
        self.cfg, self.lag, self.window = cfg, lag, w
        self.tracker = LandmarkTracker(backend, cfg)
        self._frames: list[np.ndarray] = []  # frames tracked, not yet cropped: indices _first ..
        self._marks: list[Optional[np.ndarray]] = []  # landmarks (held over gaps; None: lost): _base ..
        self._first = self._base = 0
        self._held: Optional[np.ndarray] = None
        self._missing = 0  # consecutive frames without landmarks
        self._doubt = 0  # consecutive frames whose detection failed while the tracked face was kept
        self.lost = False
        self.faces_seen = 0

    def push(self, frame: np.ndarray) -> list[LiveCrop]:
        """Track one frame (gray (H, W) or RGB (H, W, 3) uint8); returns the crops now final."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        tracker = self.tracker
        if self._doubt:
            tracker.last_key = -(10**9)  # detect on this frame too
        kept, detections = tracker.kept, tracker.detections
        found = tracker.update(gray)
        tracker.forget(1)  # the landmarks are kept here, as far back as the fits need them
        if found is not None and tracker.kept > kept:
            self._doubt += 1
        elif found is not None and tracker.detections > detections:
            self._doubt = 0
        if self._doubt > self.cfg.max_gap:  # no detection for max_gap frames: the face has gone
            found, self._doubt, self._missing = None, 0, self.cfg.max_gap
            tracker.prev = None  # search anew from the next frame
        if found is not None:
            self._held, self._missing, self.lost = np.asarray(found, np.float64), 0, False
            self.faces_seen += 1
        else:
            self._missing += 1
            if self._missing > self.cfg.max_gap:
                self._held, self.lost = None, True
        self._frames.append(gray)
        self._marks.append(self._held)
        return self._emit(final=False)

    def flush(self) -> list[LiveCrop]:
        """End of the stream: the crops of the frames still waiting for their look-ahead."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> list[LiveCrop]:
        out = []
        known = self._base + len(self._marks)  # frames tracked so far
        while self._frames:
            t = self._first
            end = t if self.lag == 0 else max(t + self.lag, self.window - 1)
            if end >= known and not final:
                break
            out.append(LiveCrop(t, self._crop(t, min(end, known - 1))))
            self._frames.pop(0)
            self._first += 1
        # a later frame's fit reads at most window - 1 frames before it
        while self._base < self._first - (self.window - 1):
            self._marks.pop(0)
            self._base += 1
        return out

    def _crop(self, t: int, end: int) -> Optional[np.ndarray]:
        own = self._marks[t - self._base]
        if own is None:
            return None
        start = max(0, end - self.window + 1)
        # fit the frames of the window that have landmarks (a lost stretch has none)
        ts = [u for u in range(start, end + 1) if self._marks[u - self._base] is not None]
        pts = own
        if len(ts) >= 5:
            marks = np.stack([self._marks[u - self._base] for u in ts])
            pts = _quadratic_at(marks, np.asarray(ts, np.float64) - t, 0.0)
        affine = crop_affines(pts[None], self.cfg.crop_size, self.cfg.mouth_width_fraction)[0]
        size = self.cfg.crop_size
        return cv2.warpAffine(self._frames[0], affine, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
