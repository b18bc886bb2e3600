"""dlib 68-point face landmarks (iBUG-68 order), with the models of ``face_recognition_models``."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

# iBUG-68 index groups
JAW = slice(0, 17)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)    # image-left eye (the subject's right)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)


def dlib_model_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of one of the .dat models shipped by the ``face_recognition_models`` package.

    The package is located without importing it (its __init__ needs pkg_resources).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        p = Path(loc) / "models" / name
        if p.is_file():
            return p
    raise RuntimeError(f"dlib model {name} not found: pip install face_recognition_models")


@functools.lru_cache(maxsize=None)
def _detector():
    import dlib
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _predictor(name: str = "shape_predictor_68_face_landmarks.dat"):
    import dlib
    return dlib.shape_predictor(str(dlib_model_path(name)))


def detect_faces(image_rgb: np.ndarray, upsample: int = 0) -> list:
    """dlib HOG face rectangles, largest first."""
    img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    rects = list(_detector()(img, upsample))
    rects.sort(key=lambda r: -r.width() * r.height())
    return rects


def landmarks_in_rect(image_rgb: np.ndarray, rect) -> np.ndarray:
    """68x2 float32 (x, y) landmarks inside a dlib rectangle."""
    img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    shape = _predictor()(img, rect)
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32)


def detect_landmarks_68(image_rgb: np.ndarray, upsample: int = 0) -> np.ndarray | None:
    """68 landmarks (68x2 float32, x/y pixels) of the largest face, or None when no face.

    Uses the HOG frontal face detector (retrying once with 1x upsampling for small faces)
    and shape_predictor_68_face_landmarks.dat.
    """
    if image_rgb.ndim == 2:
        image_rgb = np.stack([image_rgb] * 3, -1)
    rects = detect_faces(image_rgb, upsample)
    if not rects and upsample == 0:
        rects = detect_faces(image_rgb, 1)
    if not rects:
        return None
    return landmarks_in_rect(image_rgb, rects[0])
