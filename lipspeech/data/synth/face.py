"""Per-speaker face preparation for SynthGRID.

A photo is framed GRID-like (head and shoulders, eyes level, face about half the frame
height), its 68 landmarks are located with dlib (with MediaPipe's backend where dlib's
frontal detector finds no face, as on the turned face of skimage's cameraman), the original mouth is removed by
inpainting, and everything the per-frame renderer needs is precomputed once:
the mouth's rest geometry and colours, and the jaw-drop displacement field.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lipspeech.vision.landmarks import detect_landmarks_68

BUILTIN_FACES = ("astronaut", "grace_hopper", "cameraman")


def load_face_image(spec: str) -> np.ndarray:
    """RGB uint8 image of a builtin face name or an image file path."""
    if spec == "astronaut":
        import skimage.data
        return np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    if spec == "cameraman":  # skimage's cameraman (gray): a real face, turned nearly to profile
        import skimage.data
        return np.ascontiguousarray(np.repeat(skimage.data.camera()[..., None], 3, axis=2))
    if spec == "grace_hopper":
        # found without importing matplotlib, whose import creates ~/.config/matplotlib (a stage
        # writes nothing outside results/)
        mpl = importlib.util.find_spec("matplotlib")
        locs = list(mpl.submodule_search_locations or []) if mpl is not None else []
        path = next((p for loc in locs if (p := Path(loc) / "mpl-data" / "sample_data" / "grace_hopper.jpg").is_file()),
                    None)
        if path is None:
            raise RuntimeError("matplotlib sample data grace_hopper.jpg not found (pip install matplotlib)")
        spec = str(path)
    img = cv2.imread(str(spec), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"cannot read face image {spec!r} (builtin faces: {', '.join(BUILTIN_FACES)})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class FaceVariant:
    """How one use of a photo is made to look like a different speaker."""
    mirror: bool = False
    scale: float = 1.0            # relative face size
    dx: float = 0.0               # horizontal offset, fraction of frame width
    dy: float = 0.0               # vertical offset, fraction of frame height
    tint: tuple = (1.0, 1.0, 1.0)  # per-channel RGB gain
    open_scale: float = 1.0       # speaking style: how wide the mouth opens
    teeth_show: float = 1.0       # how much teeth show

    def to_dict(self) -> dict:
        return {"mirror": bool(self.mirror), "scale": round(float(self.scale), 4),
                "dx": round(float(self.dx), 4), "dy": round(float(self.dy), 4),
                "tint": [round(float(t), 4) for t in self.tint],
                "open_scale": round(float(self.open_scale), 4),
                "teeth_show": round(float(self.teeth_show), 4)}


def make_variant(use_index: int, rng: np.random.Generator) -> FaceVariant:
    """Variant for the use_index-th speaker sharing a photo (0 = the photo as it is)."""
    style = dict(open_scale=float(rng.uniform(0.9, 1.12)), teeth_show=float(rng.uniform(0.7, 1.0)))
    if use_index == 0:
        return FaceVariant(**style)
    tint = tuple(float(x) for x in 1.0 + rng.uniform(-0.09, 0.09, 3))
    return FaceVariant(mirror=(use_index % 2 == 1), scale=float(rng.uniform(0.9, 1.08)),
                       dx=float(rng.uniform(-0.07, 0.07)), dy=float(rng.uniform(-0.04, 0.04)),
                       tint=tint, **style)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class SpeakerFace:
    """Everything the frame renderer needs for one speaker (in output pixel coordinates)."""
    base: np.ndarray              # (H, W, 3) uint8, framed photo with the mouth removed
    landmarks: np.ndarray         # (68, 2) float32 landmarks of the framed photo (before removal)
    mouth_centre: np.ndarray      # (2,) rest position of the lip seam centre
    mouth_angle: float            # radians, rotation of the mouth axis
    w0: float                     # rest half-width of the mouth (px)
    lip_rgb: np.ndarray           # (3,) float32
    skin_rgb: np.ndarray          # (3,) float32
    teeth_rgb: np.ndarray         # (3,) float32
    jaw_roi: tuple                # (x0, y0, x1, y1) region affected by the jaw drop
    jaw_weight: np.ndarray        # (y1-y0, x1-x0) float32 displacement weight (1 = moves with jaw)
    face_centre: np.ndarray       # (2,) centre for head rotation
    face_height: float            # brow-to-chin distance (px)
    variant: FaceVariant = field(default_factory=FaceVariant)
    lip_texture: np.ndarray | None = None   # (h, w) float32 ~N(0,1), centred on the mouth
    info: dict = field(default_factory=dict)


def _framing_matrix(L: np.ndarray, size: tuple[int, int], variant: FaceVariant) -> np.ndarray:
    """Similarity (2x3) from photo to output frame: eyes level, face ~ half the height."""
    W, H = size
    le, re = L[36:42].mean(0), L[42:48].mean(0)
    brow = L[17:27].mean(0)
    chin = L[8]
    ang = np.arctan2(re[1] - le[1], re[0] - le[0])
    face_h = np.linalg.norm(chin - brow) * 1.3  # brow-chin plus forehead
    s = 0.5 * H / face_h * variant.scale
    c, si = np.cos(-ang) * s, np.sin(-ang) * s
    R = np.array([[c, -si], [si, c]])
    eyes = (le + re) / 2
    # place the eye midpoint: horizontally centred, vertically at ~40% of the height
    target = np.array([W * (0.5 + variant.dx), H * (0.40 + variant.dy)])
    t = target - R @ eyes
    return np.hstack([R, t[:, None]]).astype(np.float64)


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts @ M[:, :2].T + M[:, 2]).astype(np.float32)


def _poly_mask(shape, pts, dilate: int = 0) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255, cv2.LINE_8)
    if dilate > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        m = cv2.dilate(m, k)
    return m


def _robust_colour(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    px = img[mask > 0].reshape(-1, 3).astype(np.float32)
    if len(px) < 5:
        return None
    lum = px.mean(1)
    lo, hi = np.percentile(lum, [20, 85])
    sel = px[(lum >= lo) & (lum <= hi)]
    return (sel if len(sel) else px).mean(0)


#: the MediaPipe search of :func:`photo_landmarks`: the generator's own, fixed (the corpus must not change with
#: the ROI stage's roi.detect_max_side / roi.detect_upsample): one pass of tiled retries; the size cap reaches
#: only the backend's dlib refiner, which never detects
PHOTO_DETECT_MAX_SIDE, PHOTO_DETECT_UPSAMPLE = 640, 1


def photo_landmarks(img: np.ndarray) -> np.ndarray | None:
    """68 landmarks of the photo's face: dlib's (what the frontal builtin faces have always used), else
    the MediaPipe backend's (a turned face that dlib's frontal detector misses); None without a face."""
    L = detect_landmarks_68(img)
    if L is None:
        from lipspeech.vision.backends import BackendError, make_backend
        try:
            backend = make_backend("mediapipe", PHOTO_DETECT_MAX_SIDE, PHOTO_DETECT_UPSAMPLE)
        except BackendError:
            return None
        boxes = backend.detect(img)
        L = backend.fit(img, boxes[0]) if boxes else None
    return L


def _framed_face(spec: str, W: int, H: int, variant: FaceVariant) -> tuple[np.ndarray, np.ndarray]:
    """The face image framed as the variant says, and its 68 landmarks (refined on the framed image)."""
    img = load_face_image(spec)
    if variant.mirror:
        img = np.ascontiguousarray(img[:, ::-1])
    L0 = photo_landmarks(img)
    if L0 is None:
        raise RuntimeError(f"no face found (dlib, MediaPipe) in face image {spec!r}")
    M = _framing_matrix(L0, (W, H), variant)
    framed = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_AREA if M[0, 0] < 1 else cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT_101)
    if variant.tint != (1.0, 1.0, 1.0):
        framed = np.clip(framed.astype(np.float32) * np.array(variant.tint, np.float32), 0, 255).astype(np.uint8)
    L = _apply(M, L0)
    # refine the landmarks on the framed image (what dlib will see later)
    L1 = photo_landmarks(framed)
    if L1 is not None and np.abs(L1 - L).mean() < 0.1 * (L[16, 0] - L[0, 0]):
        L = L1
    return framed, L


def _mouth_frame(L: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(half mouth width w0, mouth angle, rest seam centre) from the landmarks."""
    jaw_w = float(np.linalg.norm(L[16] - L[0]))
    c48, c54 = L[48], L[54]
    corner_w = float(np.linalg.norm(c54 - c48))
    w0 = 0.5 * float(np.clip(corner_w, 0.34 * jaw_w, 0.40 * jaw_w))
    ang = float(np.arctan2(c54[1] - c48[1], c54[0] - c48[0]))
    ang = float(np.clip(ang, -0.12, 0.12))
    # rest seam: between the corners, nudged towards the original inner lips
    seam = (c48 + c54) / 2
    inner_mid = (L[62] + L[66]) / 2
    seam = seam + np.array([0.0, 0.35 * (inner_mid[1] - seam[1])])
    seam[0] = 0.5 * seam[0] + 0.5 * L[[51, 57, 62, 66]].mean(0)[0]
    return w0, ang, seam


def _colours(framed: np.ndarray, L: np.ndarray, fw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lip, skin, teeth) RGB from the photo, and the skin sample mask (cheeks, upper lip, chin)."""
    H, W = framed.shape[:2]
    outer = _poly_mask(framed.shape, L[48:60])
    inner = _poly_mask(framed.shape, L[60:68], dilate=1)
    lipmask = cv2.erode(cv2.subtract(outer, inner), np.ones((2, 2), np.uint8))
    lip = _robust_colour(framed, lipmask)
    # skin: cheeks beside the nose and the upper lip area
    skinmask = np.zeros((H, W), np.uint8)
    for p in (L[31] + np.array([-0.18 * fw, 0.02 * fw]), L[35] + np.array([0.18 * fw, 0.02 * fw]),
              (L[33] + L[51]) / 2, (L[57] + L[8]) / 2):
        cv2.circle(skinmask, (int(round(p[0])), int(round(p[1]))), max(2, int(0.05 * fw)), 255, -1)
    skin = _robust_colour(framed, skinmask)
    if skin is None:
        skin = np.array([190, 140, 120], np.float32)
    # lips: the photo's colour pushed a little towards a saturated lip tone of this skin
    ref_lip = skin * np.array([0.82, 0.52, 0.55], np.float32)
    lip = ref_lip if lip is None else 0.35 * lip + 0.65 * ref_lip
    teeth = np.array([232, 218, 190], np.float32) * (0.85 + 0.15 * min(1.0, skin.mean() / 180.0))
    return lip, skin, teeth, skinmask


def _remove_mouth(framed: np.ndarray, L: np.ndarray, fw: float, skinmask: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, float]:
    """The face with its own mouth inpainted away and skin grain put back; and the grain's std."""
    H, W = framed.shape[:2]
    hole = _poly_mask(framed.shape, L[48:60], dilate=max(2, int(round(0.035 * fw))))
    base = cv2.inpaint(framed, hole, max(3, int(0.04 * fw)), cv2.INPAINT_TELEA)
    # soften the repaired area so no trace of the old lips remains, keep a little texture
    blur = cv2.GaussianBlur(base, (0, 0), max(1.0, 0.02 * fw))
    a = cv2.GaussianBlur(hole.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.02 * fw))[..., None]
    base = base * (1 - a) + blur * a
    # put back skin grain of the same strength as on the cheeks
    hp = framed.astype(np.float32) - cv2.GaussianBlur(framed, (0, 0), 1.5).astype(np.float32)
    grain_sd = float(np.clip(hp[skinmask > 0].std(), 1.0, 8.0)) if (skinmask > 0).any() else 3.0
    noise = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), 0.7)
    noise *= grain_sd / max(float(noise.std()), 1e-6)
    return np.clip(base + (noise[..., None] * a), 0, 255).astype(np.uint8), grain_sd


def _jaw_weight(L: np.ndarray, seam: np.ndarray, w0: float, W: int, H: int
                ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The jaw-drop region (x0, y0, x1, y1) and its weight field: the lower face, below the lip seam and
    inside the jaw line."""
    chin = L[8]
    half_jaw = 0.5 * float(np.linalg.norm(L[12] - L[4]))
    drop = max(8.0, float(chin[1] - seam[1]))
    x0 = int(max(0, np.floor(seam[0] - 1.6 * half_jaw)))
    x1 = int(min(W, np.ceil(seam[0] + 1.6 * half_jaw)))
    y0 = int(max(0, np.floor(seam[1] - 0.4 * w0)))
    y1 = int(min(H, np.ceil(chin[1] + 0.9 * drop)))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy = ys - seam[1]
    v_top = _smoothstep((dy + 0.25 * w0) / (0.55 * w0))
    v_bot = 1.0 - _smoothstep((ys - chin[1] + 0.05 * drop) / (0.8 * drop))
    # horizontal extent follows the jaw contour: narrower towards the chin
    left = L[2:9]            # image-left jaw line, top to chin
    right = L[8:15][::-1]    # image-right jaw line, top to chin

    def _side_x(pts, y, default):
        if np.all(np.diff(pts[:, 1]) > 0):
            return np.interp(y, pts[:, 1], pts[:, 0])
        return np.full_like(y, default)

    yq = np.clip(ys[:, :1], float(left[0, 1]), float(chin[1] - 0.3 * drop))
    hwy = np.maximum(0.5 * (_side_x(right, yq, L[14, 0]) - _side_x(left, yq, L[2, 0])), 0.3 * half_jaw)
    hdist = np.abs(xs - seam[0]) / hwy
    h = 1.0 - _smoothstep((hdist - 0.55) / 0.5)
    return (x0, y0, x1, y1), (np.minimum(v_top, v_bot) * h).astype(np.float32)


def _lip_texture(rng: np.random.Generator, w0: float) -> np.ndarray:
    """Lip surface texture (vertical striations + fine grain), in mouth-local pixels."""
    th, tw = int(4 * w0) + 8, int(5 * w0) + 8
    tex = cv2.GaussianBlur(rng.standard_normal((th, tw)).astype(np.float32), (0, 0),
                           sigmaX=0.6, sigmaY=max(1.0, 0.12 * w0))
    tex = tex / max(float(tex.std()), 1e-6) * 0.7
    tex += 0.5 * cv2.GaussianBlur(rng.standard_normal((th, tw)).astype(np.float32), (0, 0), 0.6) / 0.45
    return tex.astype(np.float32)


def build_speaker_face(spec: str, frame_size, variant: FaceVariant, seed: int = 0) -> SpeakerFace:
    """Load, frame and prepare a speaker's face (deterministic given seed)."""
    rng = np.random.default_rng(seed)
    W, H = int(frame_size[0]), int(frame_size[1])
    framed, L = _framed_face(spec, W, H, variant)
    jaw_w = float(np.linalg.norm(L[16] - L[0]))
    face_h = float(np.linalg.norm(L[8] - L[17:27].mean(0)))
    w0, ang, seam = _mouth_frame(L)
    lip, skin, teeth, skinmask = _colours(framed, L, jaw_w)
    base, grain_sd = _remove_mouth(framed, L, jaw_w, skinmask, rng)
    jaw_roi, weight = _jaw_weight(L, seam, w0, W, H)
    face_centre = (L[27] + L[8]) / 2
    tex = _lip_texture(rng, w0)
    info = {"grain_sd": round(grain_sd, 3), "w0": round(w0, 3)}
    return SpeakerFace(base=base, landmarks=L, mouth_centre=seam.astype(np.float32), mouth_angle=ang,
                       w0=w0, lip_rgb=lip.astype(np.float32), skin_rgb=skin.astype(np.float32),
                       teeth_rgb=teeth.astype(np.float32), jaw_roi=jaw_roi,
                       jaw_weight=weight, face_centre=face_centre.astype(np.float32),
                       face_height=face_h, variant=variant, lip_texture=tex, info=info)
