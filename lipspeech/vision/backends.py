"""Face landmark backends behind one interface (iBUG-68 points, (x, y) frame pixels).

A backend does two things, which the ROI stage's tracker combines (detect on key
frames, fit in the previous frame's box in between):

* ``detect(gray)`` -> face boxes ``(x0, y0, x1, y1)`` in frame pixels, most confident first;
* ``fit(gray, box)`` -> ``(68, 2)`` float32 landmarks of the face in that box.

Backends: ``dlib`` (HOG detector + ``shape_predictor_68_face_landmarks.dat`` of
``face_recognition_models``; offline, the default) and ``face_alignment`` (Bulat's
FAN, used only when the package and its weights are already on this machine; it is
never downloaded from here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

Box = tuple[float, float, float, float]


class BackendError(RuntimeError):
    """A landmark backend cannot be used here; the message is one line that says what to install."""


class LandmarkBackend(Protocol):
    name: str

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Face boxes of one (H, W) uint8 frame, frame pixels, most confident first."""

    def fit(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 landmarks of the face inside ``box``."""


class DlibBackend:
    """dlib HOG detector on a downscaled frame, 68-point shape predictor at full resolution.

    Args:
        detect_max_side: frames whose longer side exceeds this are downscaled to it for
            detection (HOG cost grows with the pixel count); when nothing is found there,
            detection is retried at full resolution, so one small face in a large frame
            is still found (HOG's smallest face is about 80 px).
        upsample: when full resolution finds nothing either, retry with the frame upsampled
            1..``upsample`` times (x2 each): HOG then finds faces down to about 40 px (a face
            40-60 px wide in a 720p webcam or YouTube frame), at about 4x the cost of a
            full-resolution pass, paid only on the key frames that need it.
            (dlib's CNN face detector, MMOD, was measured too: 5.5 s a 720p frame on one
            core without upsampling, and it still misses faces under 80 px: not used.)
    """

    name = "dlib"

    def __init__(self, detect_max_side: int, upsample: int):
        import dlib

        from lipspeech.vision.landmarks import dlib_model_path

        try:
            model = dlib_model_path("shape_predictor_68_face_landmarks.dat")
        except RuntimeError as exc:
            raise BackendError(str(exc)) from None
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self.detect_max_side = int(detect_max_side)
        self.upsample = int(upsample)

    def _detect_at(self, gray: np.ndarray, scale: float, upsample: int = 0) -> list[Box]:
        img = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(img), upsample, 0.0)
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        return [(rects[i].left() / scale, rects[i].top() / scale, (rects[i].right() + 1) / scale,
                 (rects[i].bottom() + 1) / scale) for i in order]

    def detect(self, gray: np.ndarray) -> list[Box]:
        scale = min(1.0, self.detect_max_side / max(gray.shape[:2]))
        boxes = self._detect_at(gray, scale)
        if not boxes and scale < 1.0:
            boxes = self._detect_at(gray, 1.0)
        for up in range(1, self.upsample + 1):
            if boxes:
                break
            boxes = self._detect_at(gray, 1.0, up)
        return boxes

    def fit(self, gray: np.ndarray, box: Box) -> np.ndarray:
        rect = self._dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        shape = self._predictor(np.ascontiguousarray(gray), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _torch_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


class FaceAlignmentBackend:
    """Thin adapter over the ``face_alignment`` package (2D FAN, S3FD detector), same 68 points."""

    name = "face_alignment"
    HOW = ("pip install face-alignment, and put its weights (2DFAN4*.zip and s3fd*.pth) into "
           "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints); lipspeech never downloads them")

    def __init__(self, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError:
            raise BackendError(f"roi.backend face_alignment: package not installed: {self.HOW}") from None
        ckpt = _torch_checkpoints()
        missing = [w for w in ("2DFAN4", "s3fd") if not any(ckpt.glob(w + "*"))]
        if missing:
            raise BackendError(f"roi.backend face_alignment: weights {', '.join(missing)} not found in {ckpt}: {self.HOW}")
        lt = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self._fa = face_alignment.FaceAlignment(lt, device=device, face_detector="sfd", flip_input=False)

    def detect(self, gray: np.ndarray) -> list[Box]:
        bgr = np.repeat(gray[..., None], 3, axis=2)
        dets = self._fa.face_detector.detect_from_image(bgr) or []
        dets = sorted(dets, key=lambda d: -float(d[4]) if len(d) > 4 else 0.0)
        return [tuple(float(v) for v in d[:4]) for d in dets]

    def fit(self, gray: np.ndarray, box: Box) -> np.ndarray:
        rgb = np.repeat(gray[..., None], 3, axis=2)
        out = self._fa.get_landmarks_from_image(rgb, detected_faces=[np.array([*box, 1.0])])
        return np.asarray(out[0][:, :2], dtype=np.float32)


BACKENDS = ("dlib", "mediapipe", "face_alignment")


def make_backend(name: str, detect_max_side: int, upsample: int) -> LandmarkBackend:
    """The backend named in ``roi.backend``, with ``roi.detect_max_side`` and ``roi.detect_upsample``
    (face_alignment takes neither); BackendError (one line) when it cannot run here."""
    if name == "dlib":
        return DlibBackend(detect_max_side=detect_max_side, upsample=upsample)
    if name == "mediapipe":
        from lipspeech.vision.facemesh import MediaPipeBackend
        return MediaPipeBackend(detect_max_side=detect_max_side, upsample=upsample)
    if name == "face_alignment":
        return FaceAlignmentBackend()
    raise BackendError(f"unknown landmark backend {name!r} (one of {', '.join(BACKENDS)})")
