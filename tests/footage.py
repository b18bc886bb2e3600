"""Footage made from real photos (skimage's astronaut, matplotlib's Grace Hopper) for the face tests and
``benchmarks/face_backends.py``: a face moved, turned, tilted, blurred, shrunk, darkened, re-encoded,
wearing glasses, with a microphone by the mouth or covered, and the true mouth centre of every frame.

The truth is the mean of the photo's mouth points (iBUG 48-67, fitted by dlib on the photo at its own
size, where the face is ~90 px wide and the fit reliable), carried through the same warp as the frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

Warp = Callable[[int, int, float, float, float], np.ndarray]


@functools.lru_cache(maxsize=None)
def photo(name: str = "astronaut") -> tuple[np.ndarray, np.ndarray]:
    """(gray photo, its 68 dlib landmarks)."""
    from lipspeech.data.synth.face import load_face_image
    from lipspeech.vision.backends import make_backend
    from lipspeech.vision.roi import RoiConfig

    img = cv2.cvtColor(load_face_image(name), cv2.COLOR_RGB2GRAY)
    cfg = RoiConfig.default()
    backend = make_backend("dlib", cfg.detect_max_side, cfg.detect_upsample)
    return img, backend.fit(img, backend.detect(img)[0])


def in_plane(max_deg: float) -> Warp:
    """A head tilted in the image plane, swinging between -max_deg and +max_deg."""
    def warp(t, T, f, x, y):
        a = np.deg2rad(max_deg * np.sin(2 * np.pi * t / T))
        rot = np.array([[f * np.cos(a), -f * np.sin(a), 0], [f * np.sin(a), f * np.cos(a), 0], [0, 0, 1]])
        return np.array([[1, 0, x + 256 * f], [0, 1, y + 256 * f], [0, 0, 1]]) @ rot @ np.array(
            [[1, 0, -256], [0, 1, -256], [0, 0, 1]])
    return warp


def yaw_like(max_deg: float, min_deg: float = 0.0) -> Warp:
    """One side of the face squeezed and tilted back, as a head turning by min_deg..max_deg looks in 2D."""
    def warp(t, T, f, x, y):
        deg = min_deg + (max_deg - min_deg) * (0.5 + 0.5 * np.sin(2 * np.pi * t / T))
        k = np.sin(np.deg2rad(deg))
        src = np.float32([[0, 0], [512, 0], [512, 512], [0, 512]])
        dst = np.float32([[0, 0], [512 * (1 - 0.3 * k), 40 * k], [512 * (1 - 0.3 * k), 512 - 40 * k], [0, 512]])
        return cv2.getPerspectiveTransform(src, dst * f + np.float32([x, y])).astype(np.float64)
    return warp


def glasses(img: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Dark-rimmed glasses drawn over the eyes (rims, bridge, temples)."""
    out = img.copy()
    eye_w = np.linalg.norm(L[45] - L[36]) / 2
    for eye in (slice(36, 42), slice(42, 48)):
        c = L[eye].mean(0)
        cv2.ellipse(out, (int(c[0]), int(c[1])), (int(0.55 * eye_w), int(0.38 * eye_w)), 0, 0, 360, 20, 4)
    a, b = L[39] + (L[42] - L[39]) * 0.15, L[42] - (L[42] - L[39]) * 0.15
    cv2.line(out, (int(a[0]), int(a[1]) - 3), (int(b[0]), int(b[1]) - 3), 20, 3)
    for i, j in ((36, 0), (45, 16)):
        e = L[i] + (L[i] - L[j + (1 if j == 0 else -1)]) * 0.0
        cv2.line(out, (int(e[0] - (0.5 if j == 0 else -0.5) * eye_w * 0.6), int(e[1])), (int(L[j][0]), int(L[j][1])), 20, 3)
    return out


def microphone(img: np.ndarray, L: np.ndarray) -> np.ndarray:
    """A headset microphone: a boom from the jaw line to a foam ball beside the mouth corner."""
    out = img.copy()
    w = np.linalg.norm(L[54] - L[48])
    ball = L[54] + np.array([0.35 * w, 0.15 * w])
    cv2.line(out, (int(L[14][0]), int(L[14][1])), (int(ball[0]), int(ball[1])), 30, max(2, int(0.08 * w)))
    cv2.circle(out, (int(ball[0]), int(ball[1])), int(0.28 * w), 25, -1)
    return out


@dataclass
class Condition:
    """How one clip is made: a warp per frame, the face's width (jaw, px), the frame, what is added."""

    warp: Warp = field(default_factory=lambda: in_plane(0))
    face_px: float = 70
    size: tuple[int, int] = (1280, 720)
    blur: int = 0
    second_face: bool = False
    decorate: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    light: float = 1.0          # gain on the photo (low light: 0.25, with sensor noise raised to match)
    noise: float = 2.0          # sensor noise, grey levels
    jpeg: int = 0               # JPEG quality of every frame (a webcam's MJPEG), 0 = none
    cover: tuple[int, int] | None = None  # frames [a, b) blacked out where the face is
    photo: str = "astronaut"


def clip(cond: Condition, T: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) gray uint8 frames and the (T, 2) true mouth centre of the main face."""
    img, L0 = photo(cond.photo)
    if cond.decorate is not None:
        img = cond.decorate(img, L0)
    f = cond.face_px / np.linalg.norm(L0[16] - L0[0])
    other = cv2.resize(photo("grace_hopper")[0], (170, 200))
    rng = np.random.default_rng(1)
    w, h = cond.size
    frames, truth = [], []
    for t in range(T):
        M = cond.warp(t, T, f, 0.0, 0.0)
        # the face's centre follows a Lissajous path around the middle of the frame
        q = M @ np.array([*L0.mean(0), 1.0])
        target = (w / 2 + 40 * w / 1280 * np.sin(2 * np.pi * t / T), h * 0.45 + 15 * h / 720 * np.sin(4 * np.pi * t / T))
        M = np.array([[1, 0, target[0] - q[0] / q[2]], [0, 1, target[1] - q[1] / q[2]], [0, 0, 1]]) @ M
        frame = cv2.warpPerspective(img, M, cond.size, borderMode=cv2.BORDER_CONSTANT, borderValue=90)
        if cond.second_face:
            frame[60:260, w - 280:w - 110] = other
        if cond.blur:
            kernel = np.zeros((cond.blur, cond.blur))
            kernel[cond.blur // 2] = 1.0 / cond.blur
            frame = cv2.filter2D(frame, -1, kernel)
        p = M @ np.array([*L0[48:68].mean(0), 1.0])
        truth.append(p[:2] / p[2])
        if cond.cover and cond.cover[0] <= t < cond.cover[1]:
            face = np.array([M @ np.array([*q, 1.0]) for q in L0])
            face = face[:, :2] / face[:, 2:]
            x0, y0 = face.min(0) - 0.3 * cond.face_px
            x1, y1 = face.max(0) + 0.3 * cond.face_px
            frame[max(0, int(y0 - 0.4 * cond.face_px)):int(y1), max(0, int(x0)):int(x1)] = 0
        frame = frame.astype(np.float64) * cond.light + rng.normal(0, cond.noise, frame.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        if cond.jpeg:
            frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg])[1], cv2.IMREAD_GRAYSCALE)
        frames.append(frame)
    return np.stack(frames), np.array(truth)


#: the conditions of the footage tests and of the backend table (benchmarks/face_backends.py)
CONDITIONS: dict[str, Condition] = {
    "frontal 70 px": Condition(),
    "tilt 10 deg": Condition(warp=in_plane(10)),
    "tilt 20 deg": Condition(warp=in_plane(20)),
    "tilt 30 deg": Condition(warp=in_plane(30)),
    "turned 20 deg": Condition(warp=yaw_like(20, 20)),
    "turned 20-45 deg": Condition(warp=yaw_like(45, 20)),
    "motion blur 15 px": Condition(blur=15),
    "second face": Condition(warp=in_plane(10), second_face=True),
    "glasses": Condition(decorate=glasses),
    "microphone": Condition(decorate=microphone),
    "low light": Condition(light=0.25, noise=3.0, jpeg=70),
    "small 40 px in 720p": Condition(face_px=40),
    "webcam 360x288: turned, glasses, mic, JPEG": Condition(
        warp=yaw_like(30, 10), face_px=100, size=(360, 288), jpeg=30, noise=3.0,
        decorate=lambda img, L: microphone(glasses(img, L), L)),
}


def crop_centre_error(affine: np.ndarray, points: np.ndarray, crop_size: int = 96) -> np.ndarray:
    """Distance (crop pixels) between each crop's centre and the frame point mapped into it."""
    c = (crop_size - 1) / 2
    A = np.asarray(affine, np.float64)
    mapped = np.einsum("tij,tj->ti", A[:, :, :2], points) + A[:, :, 2]
    return np.linalg.norm(mapped - c, axis=1)
