"""MediaPipe's face detector (BlazeFace) and face mesh, run with LiteRT, as a landmark backend.

The models are the ``.tflite`` files that ship inside the ``mediapipe`` 0.10.x wheel
(``mediapipe/modules/face_detection`` and ``face_landmark``); only those files are read, found
without importing the package (whose Python layer wants protobuf < 5 and numpy < 2), and run
with the ``ai-edge-litert`` interpreter. What MediaPipe's graphs do around the networks is
written here: the detector's anchors, box decoding and suppression, the mesh's rotated crop and
its face-presence score.

* :meth:`MediaPipeBackend.detect`: BlazeFace's full-range model on the whole (letterboxed) frame,
  then its short-range model (a face near the camera, e.g. turned and noisy); when neither finds
  a face, the full-range model on overlapping square tiles of the frame, so a face of ~40 px in a 720p
  frame (6 px in the whole-frame input, too small) is seen at 3-4x that size.
* :meth:`MediaPipeBackend.fit` / :meth:`~MediaPipeBackend.track`: the 468-point mesh in a square
  around the box (or around the previous frame's face, turned by its roll, as MediaPipe's video
  mode follows a face), refitted until its roll holds, and its face-presence probability (low
  when the square holds no face: covered, blacked out, turned away), which the tracker uses to
  drop a face that is no longer there. The iBUG-68 points the ROI stage aligns on are then dlib's
  shape predictor in the box the mesh gives (``refine``; measured on SynthGRID, whose true mouth
  positions come from dlib's points on the photos, the mesh's own points mapped to iBUG-68
  (:data:`lipspeech.vision.meshmap.MESH_TO_IBUG68`) sat 1-3 px off per face, dlib's 0.5-1.7), or without it the mesh's
  points mapped.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipspeech.vision.backends import BackendError, Box
from lipspeech.vision.meshmap import to_ibug68

HOW = ("pip install ai-edge-litert and, without its dependencies, mediapipe 0.10.x "
       "(pip install --no-deps 'mediapipe>=0.10.14,<0.11'; its 1.x wheels no longer ship the face models)")


#: iBUG points whose dlib and mesh positions must agree for dlib's to be used: eye corners, nose, mouth
AGREE = np.r_[36, 39, 42, 45, 27:36, 48:68]
#: their mean distance, in units of the mesh's size, above which the mesh's own points are used (measured:
#: 0.01-0.03 on the footage conditions, 0.06 at most; 0.17 on the near-profile face of skimage's cameraman)
MAX_DISAGREEMENT = 0.08


def _size(mesh: np.ndarray) -> float:
    """sqrt of the area of the mesh's bounding box (frame px)."""
    lo, hi = mesh.min(0), mesh.max(0)
    return float(np.sqrt(max(1.0, (hi[0] - lo[0]) * (hi[1] - lo[1]))))




def model_path(name: str) -> Path:
    """``mediapipe/modules/{name}`` of the installed mediapipe wheel (not imported)."""
    spec = importlib.util.find_spec("mediapipe")
    for loc in list(spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / "modules" / name
        if p.is_file():
            return p
    raise BackendError(f"roi.backend mediapipe: model {name} not found: {HOW}")


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendError(f"roi.backend mediapipe: the LiteRT interpreter is not installed: {HOW}") from None
    # LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the
    # process's stderr (file descriptor 2, past Python's sys.stderr) for every model it loads: that
    # line is held back, anything else it writes is passed on
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            it = Interpreter(model_path=str(path), num_threads=1)
            it.allocate_tensors()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = [ln for ln in held.read().decode(errors="replace").splitlines() if "XNNPACK delegate" not in ln]
    if rest:
        print("\n".join(rest), file=sys.stderr)
    return it


class _Net:
    """One .tflite network: float32 NHWC input -> its outputs, in output order."""

    def __init__(self, path: Path):
        self.it = _interpreter(path)
        self.inp = self.it.get_input_details()[0]["index"]
        self.outs = [d["index"] for d in self.it.get_output_details()]
        self.size = int(self.it.get_input_details()[0]["shape"][1])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.it.set_tensor(self.inp, x[None].astype(np.float32))
        self.it.invoke()
        return [self.it.get_tensor(i)[0] for i in self.outs]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def anchors(size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    """SSD anchor centres ((N, 2), fractions of the input) of a BlazeFace model: ``per_cell[i]``
    anchors at the centre of every cell of the ``size / strides[i]`` grid, in row-major order."""
    out = []
    for stride, k in zip(strides, per_cell):
        g = size // stride
        ys, xs = np.mgrid[0:g, 0:g]
        c = np.stack([(xs + 0.5) / g, (ys + 0.5) / g], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, k, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, keep = list(np.argsort(-scores, kind="stable")), []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = np.array(order, dtype=np.int64)
        if not len(rest):
            break
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = [j for j, o in zip(order, overlap) if o <= iou]
    return keep


class BlazeFace:
    """MediaPipe's face detector: ``detect(rgb)`` -> [(box in frame pixels, score)], best first."""

    def __init__(self, full_range: bool = True, min_score: float = 0.5):
        name = "face_detection/face_detection_full_range_sparse.tflite" if full_range else \
            "face_detection/face_detection_short_range.tflite"
        self.net = _Net(model_path(name))
        self.min_score = float(min_score)
        n = self.net.it.get_output_details()[0]["shape"][1]
        self.anchors = anchors(self.net.size, [4], [1]) if full_range else anchors(self.net.size, [8, 16], [2, 6])
        assert len(self.anchors) == n, (len(self.anchors), n)

    def detect(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        h, w = rgb.shape[:2]
        s = self.net.size
        k = s / max(h, w)  # letterbox: the whole frame, aspect kept, padded
        nh, nw = max(1, round(h * k)), max(1, round(w * k))
        img = np.zeros((s, s, 3), np.float32)
        oy, ox = (s - nh) // 2, (s - nw) // 2
        img[oy:oy + nh, ox:ox + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        reg, cls = self.net(img / 127.5 - 1.0)
        score = _sigmoid(cls[:, 0])
        ok = np.flatnonzero(score >= self.min_score)
        if not len(ok):
            return []
        r, a = reg[ok], self.anchors[ok]
        cx, cy = r[:, 0] / s + a[:, 0], r[:, 1] / s + a[:, 1]
        bw, bh = r[:, 2] / s, r[:, 3] / s
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * s
        boxes -= np.array([ox, oy, ox, oy])
        boxes /= k
        keep = _nms(boxes, score[ok], 0.3)
        return [(tuple(float(v) for v in boxes[i]), float(score[ok][i])) for i in keep]


@dataclass
class MeshFit:
    points: np.ndarray  # (468, 2) float32, frame pixels
    score: float        # face-presence probability of the crop
    roll: float         # degrees, the eye line's angle in the frame


class FaceMesh:
    """MediaPipe's 468-point face mesh on a square crop around a face box."""

    #: crop side / box side, as MediaPipe's graph enlarges a detection for the mesh
    SCALE = 1.5

    def __init__(self):
        self.net = _Net(model_path("face_landmark/face_landmark.tflite"))

    def _run(self, rgb: np.ndarray, centre: np.ndarray, side: float, roll_deg: float) -> MeshFit:
        s = self.net.size
        a = np.deg2rad(roll_deg)
        c, sn = np.cos(a), np.sin(a)
        k = s / side
        # frame -> crop: rotate by -roll about the centre, scale, centre in the crop
        R = np.array([[c, sn], [-sn, c]]) * k
        M = np.hstack([R, (np.array([s / 2, s / 2]) - R @ centre)[:, None]])
        crop = cv2.warpAffine(rgb, M, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        pts, flag = self.net(crop.astype(np.float32) / 255.0)
        p = pts.reshape(-1, 3)[:, :2]
        Mi = cv2.invertAffineTransform(M)
        frame_pts = (p @ Mi[:, :2].T + Mi[:, 2]).astype(np.float32)
        d = frame_pts[263] - frame_pts[33]  # outer eye corners: image-left to image-right
        return MeshFit(frame_pts, float(_sigmoid(np.asarray(flag).ravel()[0])), float(np.degrees(np.arctan2(d[1], d[0]))))

    def fit(self, rgb: np.ndarray, centre: np.ndarray, side: float, roll: float = 0.0) -> MeshFit:
        """The mesh in a square of ``side`` px around ``centre`` turned by ``roll``, then again in the
        square its own points span, turned upright by the roll it measured, until that roll holds (at
        most 3 passes). The mesh's points shift with the face's place in the crop and bend on a
        leaning face; a box carried over from the previous frame lags a moving face, so the later
        crops, which depend on the face alone, take both out (``benchmarks/face_backends.py``:
        mouth error on a moving face 1.4 -> 0.4 px)."""
        used, fit = roll, self._run(rgb, np.asarray(centre, np.float64), side, roll)
        for _ in range(2):
            roll = fit.roll if abs(fit.roll) > 8.0 else 0.0
            a = np.deg2rad(roll)
            R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # frame -> upright
            up = fit.points @ R.T
            lo, hi = up.min(0), up.max(0)
            settled = abs(roll - used) <= 4.0
            used, fit = roll, self._run(rgb, ((lo + hi) / 2) @ R, self.SCALE * float(max(hi - lo)), roll)
            if settled:
                break
        return fit

    def fit_box(self, rgb: np.ndarray, box: Box) -> MeshFit:
        """:meth:`fit` starting from a detector's box (enlarged by :attr:`SCALE`, as MediaPipe's graph does)."""
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        return self.fit(rgb, centre, self.SCALE * max(box[2] - box[0], box[3] - box[1]))


class MediaPipeBackend:
    """MediaPipe face detector + face mesh, giving iBUG-68 points (see the module doc).

    Args:
        detect_max_side: ``roi.detect_max_side``; BlazeFace scales every frame itself, so only the
            dlib refiner gets it (and never detects with it).
        upsample: ``roi.detect_upsample``: passes of tiled retries when the whole frame has no face.
    """

    name = "mediapipe"

    def __init__(self, detect_max_side: int, upsample: int, min_score: float = 0.5, refine: bool = True):
        self.detector = BlazeFace(full_range=True, min_score=min_score)
        self.near = BlazeFace(full_range=False, min_score=min_score)
        self.mesh = FaceMesh()
        self.refine, self.disagreement = None, 0.0
        if refine:
            from lipspeech.vision.backends import DlibBackend
            # only its shape predictor is used (fit), never its detector: the detection settings are moot
            self.refine = DlibBackend(detect_max_side, upsample)
        self.tile_passes = int(upsample)  # tiled retries (0: whole frame only)

    def detect(self, gray: np.ndarray) -> list[Box]:
        rgb = gray if gray.ndim == 3 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        found = self.detector.detect(rgb) or self.near.detect(rgb)  # the short-range model: a face near the camera
        if not found and self.tile_passes:
            found = self._detect_tiles(rgb)
        return [b for b, _ in found]

    def detect_near(self, gray: np.ndarray, region: Box) -> list[Box]:
        """Face boxes inside ``region`` (frame px, clipped to the frame): the detector run on that crop
        alone, where a small face of a large frame is big enough for it (one pass instead of the tiles)."""
        h, w = gray.shape[:2]
        x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
        x1, y1 = min(w, int(np.ceil(region[2]))), min(h, int(np.ceil(region[3])))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return []
        crop = gray[y0:y1, x0:x1]
        rgb = crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
        found = self.detector.detect(rgb) or self.near.detect(rgb)
        return [(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0) for b, _ in found]

    def _detect_tiles(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        h, w = rgb.shape[:2]
        side = max(64, min(h, w) // 2)
        step = side // 2
        found: list[tuple[Box, float]] = []
        for y in range(0, max(1, h - side + step), step):
            for x in range(0, max(1, w - side + step), step):
                y0, x0 = min(y, max(0, h - side)), min(x, max(0, w - side))
                for b, sc in self.detector.detect(rgb[y0:y0 + side, x0:x0 + side]):
                    found.append(((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), sc))
        if not found:
            return []
        boxes = np.array([b for b, _ in found])
        scores = np.array([s for _, s in found])
        return [found[i] for i in _nms(boxes, scores, 0.3)]

    def fit_scored(self, gray: np.ndarray, box: Box) -> tuple[np.ndarray, float]:
        """iBUG-68 points of the face in a detector's ``box`` and the mesh's face-presence score."""
        rgb = gray if gray.ndim == 3 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        m = self.mesh.fit_box(rgb, box)
        return self._points(gray, m.points), m.score

    def fit(self, gray: np.ndarray, box: Box) -> np.ndarray:
        return self.fit_scored(gray, box)[0]

    def track(self, gray: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, float]:
        """The face of the previous frame's iBUG-68 points ``prev`` in this frame, as MediaPipe's
        video mode follows a face: the crop from the previous points, turned by their roll."""
        rgb = gray if gray.ndim == 3 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        d = prev[45] - prev[36]
        roll = float(np.degrees(np.arctan2(d[1], d[0])))
        roll = roll if abs(roll) > 8.0 else 0.0
        a = np.deg2rad(roll)
        R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        up = prev @ R.T
        lo, hi = up.min(0), up.max(0)
        # the 68 points span jaw to brows; the mesh's box reaches the forehead, ~1.2x that
        m = self.mesh.fit(rgb, ((lo + hi) / 2) @ R, FaceMesh.SCALE * 1.2 * float(max(hi - lo)), roll)
        return self._points(gray, m.points), m.score

    def _points(self, gray: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """iBUG-68 points: dlib's shape predictor in the box the mesh gives, where it agrees with the
        mesh (a near-frontal face); the mesh's own points mapped where it does not (a face turned
        further than dlib's frontal shape model reaches, which it squeezes into the cheek)."""
        L = to_ibug68(mesh)
        if self.refine is None:
            return L
        g = gray if gray.ndim == 2 else cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
        c = (L.min(0) + L.max(0)) / 2
        half = 0.5 * float(np.linalg.norm(L[16] - L[0]))
        D = self.refine.fit(g, (c[0] - half, c[1] - half, c[0] + half, c[1] + half))
        self.disagreement = float(np.linalg.norm(D[AGREE] - L[AGREE], axis=1).mean() / _size(mesh))
        return D if self.disagreement <= MAX_DISAGREEMENT else L
