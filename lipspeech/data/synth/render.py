"""Talking-mouth animation for SynthGRID.

phonemes --(viseme targets + Cohen-Massaro dominance coarticulation)--> articulatory
tracks at the video frame centres --> per-frame mouth geometry (iBUG lip points) -->
frames: jaw drop warp of the lower face, anti-aliased lips / cavity / teeth / tongue,
one similarity warp for head motion, slow lighting change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from .face import SpeakerFace

# articulatory parameters
OPEN, SPREAD, TUCK, TEETH_U, TEETH_L, TONGUE, TIP = range(7)
N_PARAMS = 7
PARAM_NAMES = ("open", "spread", "tuck", "teeth_upper", "teeth_lower", "tongue", "tongue_tip")

# --------------------------------------------------------------------------- visemes
# vowel qualities: (jaw/lip opening 0..1, spread -1 rounded/protruded .. +1 spread)
_VOWELS = {
    "a": (0.66, 0.35), "a#": (0.52, 0.2), "aa": (0.8, 0.1), "A:": (0.82, 0.05), "A": (0.76, 0.05),
    "0": (0.62, -0.35), "O:": (0.52, -0.6), "O": (0.5, -0.5), "o": (0.42, -0.45), "@o": (0.42, -0.35),
    "@": (0.3, 0.0), "3": (0.3, 0.0), "3:": (0.36, -0.15), "V": (0.52, 0.1), "E": (0.5, 0.4),
    "e": (0.42, 0.45), "I": (0.3, 0.45), "I#": (0.28, 0.3), "i": (0.22, 0.6), "i:": (0.2, 0.75),
    "U": (0.28, -0.55), "u:": (0.22, -0.95), "u": (0.22, -0.8), "y": (0.2, -0.6),
}
# diphthongs move from the first quality to the second
_DIPHTHONGS = {
    "eI": ("E", "i"), "aI": ("A:", "i"), "aU": ("A:", "u:"), "oU": ("@o", "u:"), "OI": ("O:", "i"),
    "i@": ("i:", "@"), "e@": ("E", "@"), "U@": ("U", "@"), "A@": ("A:", "@"), "O@": ("O:", "@"),
    "I@": ("I", "@"), "aI@": ("A:", "@"), "aU@": ("A:", "@"), "eI@": ("E", "@"), "@L": ("@", "@"),
    "@5": ("@", "U"), "i@3": ("i:", "@"), "02": ("0", "0"),
}


def _vowel_target(q):
    o, s = _VOWELS[q]
    t = np.zeros(N_PARAMS)
    t[OPEN], t[SPREAD] = o, s
    t[TEETH_U] = np.clip(0.6 + 0.4 * max(s, 0) - 0.5 * max(-s, 0), 0, 1)
    t[TEETH_L] = np.clip(0.25 + 0.4 * o + 0.2 * max(s, 0), 0, 1)
    t[TONGUE] = 0.3
    return t


def _cons(open_, spread, tuck=0.0, tu=0.3, tl=0.2, tongue=0.3, tip=0.0):
    return np.array([open_, spread, tuck, tu, tl, tongue, tip], float)


# consonant classes: target and dominance (per parameter) and decay time (s)
_CLASSES = {
    #            target                                   dominance per parameter              tau
    "bilabial": (_cons(0.0, 0.0, tu=0.0, tl=0.0),        [60, 2, 4, 4, 4, 1, 4],               0.030),
    "labiodent": (_cons(0.16, 0.1, 1.0, tu=1.0, tl=0.0), [10, 1, 12, 8, 4, 1, 4],              0.035),
    "dental": (_cons(0.22, 0.2, tu=1.0, tl=0.8, tongue=0.6, tip=1.0), [4, 0.5, 4, 4, 3, 3, 12], 0.035),
    "sibilant": (_cons(0.1, 0.45, tu=1.0, tl=1.0, tongue=0.2), [3, 0.8, 4, 4, 4, 1, 4],      0.035),
    "postalv": (_cons(0.13, -0.6, tu=1.0, tl=1.0, tongue=0.2), [3, 3, 4, 3, 3, 1, 4],        0.040),
    "alveolar": (_cons(0.2, 0.15, tu=0.6, tl=0.5, tongue=0.9), [0.7, 0.3, 3, 1, 1, 2, 4],    0.035),
    "velar": (_cons(0.25, 0.1, tu=0.5, tl=0.4, tongue=0.5), [0.5, 0.3, 3, 0.5, 0.5, 0.8, 4], 0.035),
    "glottal": (_cons(0.35, 0.0, tu=0.5, tl=0.4, tongue=0.3), [0.15, 0.1, 3, 0.2, 0.2, 0.2, 4], 0.040),
    "w": (_cons(0.12, -1.0, tu=0.0, tl=0.0), [4, 8, 4, 3, 3, 1, 4],                           0.045),
    "r": (_cons(0.18, -0.45, tu=0.3, tl=0.2, tongue=0.4), [1.2, 2.5, 3, 1, 1, 1, 4],          0.040),
    "j": (_cons(0.15, 0.6, tu=0.5, tl=0.4, tongue=0.5), [1, 1, 3, 1, 1, 1, 4],                0.040),
    "pause": (_cons(0.0, -0.05, tu=0.0, tl=0.0, tongue=0.3), [3, 1, 4, 3, 3, 1, 4],          0.060),
}
_CONS_CLASS = {}
for _names, _cls in (("p b m", "bilabial"), ("f v", "labiodent"), ("T D", "dental"), ("s z", "sibilant"),
                     ("S Z tS dZ", "postalv"), ("t d n l L t# d# n- l/ ? t2 d2 T# D#", "alveolar"),
                     ("k g N x", "velar"), ("h", "glottal"), ("w W", "w"), ("r r- R", "r"), ("j", "j")):
    for _n in _names.split():
        _CONS_CLASS[_n] = _cls
_VOWEL_DOM = np.array([1.0, 1.0, 3, 1.0, 1.0, 1.0, 4])
_VOWEL_TAU = 0.06


def _norm_name(name: str) -> str:
    return re.sub(r"[\d#\-/;',.%=!\^]+$", "", name.strip()) or name.strip()


@dataclass
class Segment:
    name: str
    start: float
    end: float
    target: np.ndarray
    dominance: np.ndarray
    tau: float
    core: tuple  # (a, b): interval of full dominance


def phoneme_segments(phonemes, duration: float, rng: np.random.Generator | None = None) -> list[Segment]:
    """Viseme segments for [(name, start, end)] (seconds), with silence filling the gaps.

    Diphthongs become two segments; bilabial closures get a core of at least 70 ms
    ending at the release, so that the lips are really seen closed at 25 fps.
    """
    segs: list[Segment] = []
    jit = (lambda: 1.0 + 0.08 * rng.standard_normal()) if rng is not None else (lambda: 1.0)

    def add(name, a, b, cls=None, vowel=None):
        if b <= a:
            b = a + 1e-3
        if vowel is not None:
            t = _vowel_target(vowel)
            t[OPEN] = np.clip(t[OPEN] * jit(), 0.05, 1.0)
            d, tau = _VOWEL_DOM.copy(), _VOWEL_TAU
            core = (a + 0.2 * (b - a), b - 0.2 * (b - a))
        else:
            t0, dom, tau = _CLASSES[cls]
            t, d = t0.copy(), np.array(dom, float)
            core = (a + 0.15 * (b - a), b - 0.15 * (b - a))
            if cls == "bilabial":
                core = (min(a, b - 0.07), b - 0.005)
            elif cls == "labiodent":
                core = (min(a + 0.15 * (b - a), b - 0.05), b - 0.01)
            elif cls == "pause":
                # short pauses inside speech barely close the mouth
                d = d * float(np.clip((b - a) / 0.2, 0.05, 1.0))
        segs.append(Segment(name, a, b, t, d, tau, core))

    prev_end = 0.0
    for name, a, b in phonemes:
        a, b = float(a), float(b)
        if a > prev_end + 1e-3:
            add("_", prev_end, a, cls="pause")
        n = _norm_name(name)
        if name.startswith("_") or n == "":
            add(name, a, b, cls="pause")
        elif name in _DIPHTHONGS or n in _DIPHTHONGS:
            q1, q2 = _DIPHTHONGS.get(name, _DIPHTHONGS.get(n))
            m = a + 0.45 * (b - a)
            add(name, a, m, vowel=q1)
            add(name, m, b, vowel=q2)
        elif name in _VOWELS or n in _VOWELS:
            add(name, a, b, vowel=name if name in _VOWELS else n)
        elif name in _CONS_CLASS or n in _CONS_CLASS:
            add(name, a, b, cls=_CONS_CLASS.get(name, _CONS_CLASS.get(n)))
        elif n[:1] in "aeiouAEIOUV03@":
            add(name, a, b, vowel="@")
        else:
            add(name, a, b, cls="velar")  # unknown: weak, takes its neighbours' shape
        prev_end = max(prev_end, b)
    if duration > prev_end + 1e-3:
        add("_", prev_end, duration, cls="pause")
    return segs


def articulation(segs: list[Segment], times: np.ndarray, smooth: float = 0.012) -> np.ndarray:
    """Cohen-Massaro coarticulation: (len(times), N_PARAMS) parameter tracks.

    Each segment's target is weighted by dominance * exp(-|t - core| / tau) (full inside
    its core), per parameter; the weighted mean is lightly smoothed in time.
    """
    if not segs:
        return np.tile(_CLASSES["pause"][0], (len(times), 1))
    dt = 0.004
    t0 = min(float(times.min()), segs[0].start) - 0.1
    t1 = max(float(times.max()), segs[-1].end) + 0.1
    grid = np.arange(t0, t1 + dt, dt)
    num = np.zeros((len(grid), N_PARAMS))
    den = np.zeros((len(grid), N_PARAMS))
    for s in segs:
        a, b = s.core
        dist = np.maximum(0.0, np.maximum(a - grid, grid - b))
        w = np.exp(-dist / s.tau)[:, None] * s.dominance[None, :]
        num += w * s.target[None, :]
        den += w
    tr = num / np.maximum(den, 1e-12)
    if smooth > 0:
        k = int(round(3 * smooth / dt))
        x = np.arange(-k, k + 1) * dt
        g = np.exp(-0.5 * (x / smooth) ** 2)
        g /= g.sum()
        pad = np.pad(tr, ((k, k), (0, 0)), mode="edge")
        tr = np.stack([np.convolve(pad[:, j], g, mode="valid") for j in range(N_PARAMS)], 1)
    return np.stack([np.interp(times, grid, tr[:, j]) for j in range(N_PARAMS)], 1)


# --------------------------------------------------------------------------- geometry
_U_OUT = np.linspace(-1.0, 1.0, 33)
# iBUG order: u positions of the outer upper 49..53, outer lower 55..59, inner 61..63, 65..67
_U49_53 = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])
_U55_59 = np.array([0.6, 0.3, 0.0, -0.3, -0.6])
_U61_63 = np.array([-0.5, 0.0, 0.5])
_U65_67 = np.array([0.5, 0.0, -0.5])


def _shape(u, p):
    return np.maximum(1.0 - u * u, 0.0) ** p


def _bow(u):
    return 1.0 + 0.12 * np.exp(-((np.abs(u) - 0.33) / 0.17) ** 2) - 0.10 * np.exp(-(u / 0.12) ** 2)


@dataclass
class MouthGeom:
    """Mouth shape in mouth-local coordinates (px, x right, y down, origin = rest seam)."""
    hw: float
    hwi: float
    yc: float
    ul: float
    ll: float
    tu: float
    tl: float
    params: np.ndarray

    def outer_upper(self, u):
        return self.yc + (-self.ul - self.tu - self.yc) * _shape(u, 0.42) * _bow(u)

    def outer_lower(self, u):
        return self.yc + (self.ll + self.tl - self.yc) * _shape(u, 0.55)

    def inner_upper(self, u):
        return self.yc + (-self.ul - self.yc) * _shape(u, 0.7)

    def inner_lower(self, u):
        return self.yc + (self.ll - self.yc) * _shape(u, 0.7)

    def outer_polygon(self):
        u = _U_OUT
        up = np.stack([u * self.hw, self.outer_upper(u)], 1)
        lo = np.stack([u[::-1] * self.hw, self.outer_lower(u[::-1])], 1)
        return np.concatenate([up, lo[1:-1]])

    def inner_polygon(self):
        u = _U_OUT
        up = np.stack([u * self.hwi, self.inner_upper(u)], 1)
        lo = np.stack([u[::-1] * self.hwi, self.inner_lower(u[::-1])], 1)
        return np.concatenate([up, lo[1:-1]])

    def lip_points(self):
        """The 20 iBUG lip points 48..67 (mouth-local)."""
        hw, hwi, yc = self.hw, self.hwi, self.yc
        x = np.concatenate([[-hw], _U49_53 * hw, [hw], _U55_59 * hw,
                            [-hwi], _U61_63 * hwi, [hwi], _U65_67 * hwi])
        y = np.concatenate([[yc], self.outer_upper(_U49_53), [yc], self.outer_lower(_U55_59),
                            [yc], self.inner_upper(_U61_63), [yc], self.inner_lower(_U65_67)])
        return np.stack([x, y], 1)

    @property
    def gap(self):
        return self.ul + self.ll


def mouth_geometry(p: np.ndarray, w0: float, open_scale: float = 1.0) -> MouthGeom:
    o = float(np.clip(p[OPEN] * open_scale, 0.0, 1.1))
    s = float(np.clip(p[SPREAD], -1, 1))
    f = float(np.clip(p[TUCK], 0, 1))
    rnd, spr = max(-s, 0.0), max(s, 0.0)
    g = o * 1.15 * w0
    hw = w0 * (1 + 0.10 * spr - 0.30 * rnd) * (1 - 0.08 * o)
    hwi = hw * (0.88 - 0.25 * rnd)
    tu = 0.30 * w0 * (1 + 0.35 * rnd) * (1 - 0.2 * o)
    tl = 0.40 * w0 * (1 + 0.25 * rnd) * (1 - 0.15 * o) * (1 - 0.35 * f)
    ul = g * (0.25 + 0.35 * f)
    ll = g - ul
    yc = 0.22 * ll
    return MouthGeom(hw=hw, hwi=hwi, yc=yc, ul=ul, ll=ll, tu=tu, tl=tl, params=np.asarray(p, float))


# --------------------------------------------------------------------------- motion
def _slow_signal(rng: np.random.Generator, t: np.ndarray, n: int = 3, fmin=0.07, fmax=0.45) -> np.ndarray:
    """Sum of n random slow sinusoids, within [-1, 1]."""
    f = rng.uniform(fmin, fmax, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(0.3, 1.0, n)
    a /= a.sum()
    return (a[None, :] * np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :])).sum(1)


def head_motion_matrices(rng, times, centre, frame_h, scale=1.0) -> np.ndarray:
    """(T, 2, 3) similarity matrices framed -> output: rotation +-3 deg, shift, scale +-2%."""
    rot = np.deg2rad(3.0) * scale * _slow_signal(rng, times)
    sc = 1.0 + 0.02 * scale * _slow_signal(rng, times)
    tx = 3.0 * frame_h / 288 * scale * _slow_signal(rng, times)
    ty = 2.5 * frame_h / 288 * scale * _slow_signal(rng, times)
    c, s = np.cos(rot) * sc, np.sin(rot) * sc
    cx, cy = float(centre[0]), float(centre[1])
    M = np.zeros((len(times), 2, 3))
    M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1] = c, -s, s, c
    M[:, 0, 2] = cx - c * cx + s * cy + tx
    M[:, 1, 2] = cy - s * cx - c * cy + ty
    return M


def lighting_params(rng, times, scale=1.0) -> np.ndarray:
    """(T, 6): gain, x-gradient, y-gradient, and R/G/B colour gains."""
    gain = 1.0 + 0.07 * scale * _slow_signal(rng, times)
    gx = 0.06 * scale * _slow_signal(rng, times)
    gy = 0.04 * scale * _slow_signal(rng, times)
    col = 1.0 + 0.015 * scale * np.stack([_slow_signal(rng, times) for _ in range(3)], 1)
    return np.column_stack([gain, gx, gy, col])


# --------------------------------------------------------------------------- drawing
_SS = 4          # supersampling of the mouth masks
_SHIFT = 2       # fixed-point bits for fillPoly


def _fill(mask, pts_ss):
    cv2.fillPoly(mask, [np.round(pts_ss * (1 << _SHIFT)).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)


class MouthRenderer:
    """Per-speaker frame renderer (keeps the static pieces)."""

    def __init__(self, face: SpeakerFace):
        self.face = face
        H, W = face.base.shape[:2]
        self.size = (W, H)
        self.base = face.base
        x0, y0, x1, y1 = face.jaw_roi
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.jaw_mapx, self.jaw_ys = xs, ys
        ca, sa = np.cos(face.mouth_angle), np.sin(face.mouth_angle)
        self.R = np.array([[ca, -sa], [sa, ca]])
        self.c = face.mouth_centre.astype(np.float64)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        self.xn = (xx - W / 2) / (W / 2)
        self.yn = (yy - H / 2) / (H / 2)
        lip = face.lip_rgb.astype(np.float32)
        self.lip_up = lip * np.array([0.86, 0.80, 0.82], np.float32)
        self.lip_lo = lip * 0.97
        self.lip_hi = np.minimum(lip * 1.12 + 14, 255)
        self.cavity = (np.array([40, 14, 16], np.float32) * (0.6 + 0.4 * lip / 200.0)).astype(np.float32)
        self.teeth = face.teeth_rgb.astype(np.float32)
        self.skin_lum = float(face.skin_rgb.mean())
        self.tex = face.lip_texture
        self.tongue = np.clip(lip * np.array([0.92, 0.62, 0.66], np.float32) + 10, 0, 255)

    @staticmethod
    def _tooth_gaps(u):
        """Slight darkening between neighbouring teeth (u = |x| / inner half width)."""
        g = np.ones_like(u)
        for b in (0.0, 0.21, 0.40, 0.57):
            g -= np.float32(0.09) * np.exp(-((u - np.float32(b)) * np.float32(1 / 0.03)) ** 2)
        return g

    def to_frame(self, pts_local: np.ndarray) -> np.ndarray:
        return pts_local @ self.R.T + self.c

    def render_canvas(self, geom: MouthGeom, teeth_show: float = 1.0) -> np.ndarray:
        """The framed (pre head-motion) image for one mouth shape, uint8."""
        face = self.face
        canvas = self.base.copy()
        # jaw drop: the lower face follows the lower lip
        d = 0.92 * geom.ll
        if d > 0.05:
            x0, y0, x1, y1 = face.jaw_roi
            mapy = self.jaw_ys - np.float32(d) * face.jaw_weight
            canvas[y0:y1, x0:x1] = cv2.remap(self.base, self.jaw_mapx, mapy, cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REPLICATE)
        self._draw_mouth(canvas, geom, teeth_show)
        return canvas

    def _draw_mouth(self, canvas, geom: MouthGeom, teeth_show: float):
        w0 = self.face.w0
        p = geom.params
        outer = self.to_frame(geom.outer_polygon())
        inner = self.to_frame(geom.inner_polygon())
        H, W = canvas.shape[:2]
        m = 0.45 * w0 + 3
        px0 = int(max(0, np.floor(outer[:, 0].min() - m)))
        px1 = int(min(W, np.ceil(outer[:, 0].max() + m)))
        py0 = int(max(0, np.floor(outer[:, 1].min() - m)))
        py1 = int(min(H, np.ceil(outer[:, 1].max() + m)))
        pw, ph = px1 - px0, py1 - py0
        if pw <= 2 or ph <= 2:
            return
        off = np.array([px0, py0], np.float64)

        def ss(pts):
            return (pts - off) * _SS + (_SS - 1) / 2.0

        def alpha_of(polys):
            mk = np.zeros((ph * _SS, pw * _SS), np.uint8)
            for q in polys:
                _fill(mk, ss(q))
            return cv2.resize(mk, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

        # local coordinates of the patch pixels (float32, rotated into the mouth frame)
        f32 = np.float32
        dx = (np.arange(px0, px1, dtype=f32) - f32(self.c[0]))[None, :]
        dy = (np.arange(py0, py1, dtype=f32) - f32(self.c[1]))[:, None]
        ca, sa = f32(self.R[0, 0]), f32(self.R[1, 0])
        lx = dx * ca + dy * sa
        ly = dy * ca - dx * sa

        a_lip = cv2.GaussianBlur(alpha_of([outer]), (0, 0), 0.7)
        hw, hwi, yc = f32(geom.hw), f32(max(geom.hwi, 1e-3)), f32(geom.yc)
        ui = np.minimum(np.abs(lx) / hwi, f32(1))
        uo = np.minimum(np.abs(lx) / hw, f32(1))
        bi = f32(1) - ui * ui
        bo = f32(1) - uo * uo
        si = bi ** f32(0.7)
        # inner curves (the corners' level outside the inner corners, where si == 0)
        in_up = yc + f32(-geom.ul - geom.yc) * si
        in_lo = yc + f32(geom.ll - geom.yc) * si
        seam_y = (in_up + in_lo) * f32(0.5)
        out_up = yc + f32(-geom.ul - geom.tu - geom.yc) * (bo ** f32(0.42)) * _bow(uo).astype(f32)
        bo55 = bo ** f32(0.55)
        out_lo = yc + f32(geom.ll + geom.tl - geom.yc) * bo55

        patch = canvas[py0:py1, px0:px1].astype(f32)
        # shadows: below the lower lip, at the corners
        below = np.clip((ly - out_lo) * f32(1 / (0.35 * w0)), 0, 1)
        sh = np.exp(-((below - f32(0.35)) * f32(1 / 0.35)) ** 2) * (ly > out_lo) * (bo ** f32(0.6))
        corner = np.exp(-(((np.abs(lx) - hw) * f32(1 / (0.16 * w0))) ** 2
                          + ((ly - yc) * f32(1 / (0.14 * w0))) ** 2))
        dark = np.minimum(f32(0.16) * sh + f32(0.35) * corner, f32(0.6))
        patch *= (f32(1) - dark)[..., None]

        # lip colour: upper lip darker (in shadow), lower lip with a soft highlight,
        # both following the face's shading and with a striated surface texture
        upper = (ly < seam_y)
        up_t = np.clip((in_up - ly) / np.maximum(in_up - out_up, f32(1e-3)), 0, 1)
        lo_t = np.clip((ly - in_lo) / np.maximum(out_lo - in_lo, f32(1e-3)), 0, 1)
        hl = np.exp(-((lo_t - f32(0.4)) * f32(5)) ** 2) * bo
        k_up = f32(0.86) + f32(0.14) * up_t + f32(0.3) * np.maximum(up_t - f32(0.8), 0)
        k_lo = (f32(0.86) + f32(0.56) * np.minimum(lo_t, f32(0.25))) * \
            (f32(1) - f32(0.4) * np.maximum(lo_t - f32(0.7), 0)) * (f32(1) - f32(0.45) * hl)
        k = np.where(upper, k_up, k_lo)[..., None]
        base_col = np.where(upper[..., None], self.lip_up, self.lip_lo)
        lipcol = base_col * k + (~upper)[..., None] * (self.lip_hi * f32(0.45)) * hl[..., None]
        shade = np.clip(patch.mean(-1) * f32(1 / self.skin_lum), 0.55, 1.3)
        if self.tex is not None:
            th_, tw_ = self.tex.shape
            tx = cv2.remap(self.tex, lx + f32(tw_ / 2), ly + f32(th_ / 2), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
            shade = shade * (f32(1) + f32(0.055) * tx)
        lipcol *= shade[..., None]
        al = a_lip[..., None]
        patch = patch * (f32(1) - al) + lipcol * al

        gap = geom.gap
        ui2 = ui * ui

        def blend(patch, col, a):
            a = a[..., None]
            return patch + (col - patch) * a

        if gap > 0.05:
            a_cav = alpha_of([inner])
            cav = self.cavity * (f32(0.8) + f32(0.45) * ui2)[..., None]
            patch = blend(patch, cav, a_cav)
            ll = f32(geom.ll)
            # tongue (behind the lower teeth), its top an arch rising with TONGUE
            tg = float(p[TONGUE])
            if tg > 0.02:
                arch = np.sqrt(np.maximum(f32(1) - ui2 * f32(1 / 0.64), 0))
                y_tg = ll - f32((0.15 + 0.5 * tg) * gap) * arch
                a_t = a_cav * np.clip((ly - y_tg) * f32(1 / 1.2) + f32(0.5), 0, 1) * (arch > 0)
                tcol = self.tongue * (f32(0.75) + f32(0.25) * np.clip((ly - y_tg) * f32(1 / (0.3 * w0)), 0, 1))[..., None]
                patch = blend(patch, tcol, a_t)
            # lower teeth: top edge moves with the jaw
            vl = float(np.clip(p[TEETH_L], 0, 1)) * teeth_show
            if vl > 0.02:
                y_lt = ll - f32((0.06 + 0.22 * vl) * w0 * (0.35 + 0.65 * min(1.0, gap / (0.3 * w0)))) \
                    + f32(0.10 * w0) * ui2
                a_l = a_cav * np.clip(ly - y_lt + f32(0.5), 0, 1) * f32(0.92)
                tcol = self.teeth * ((f32(0.74) - f32(0.4) * ui2) * self._tooth_gaps(ui * f32(1.25)))[..., None]
                patch = blend(patch, tcol, a_l)
            # upper teeth: fixed to the skull, edge just below the rest seam
            vu = float(np.clip(p[TEETH_U], 0, 1)) * teeth_show
            if vu > 0.05:
                y_ut = f32((0.10 - 0.22 * (1 - vu)) * w0 + 0.04 * w0 * float(p[TUCK])) - f32(0.14 * w0) * ui2
                a_u = a_cav * np.clip(y_ut - ly + f32(0.5), 0, 1) * f32(0.95)
                sh_t = (f32(1) - f32(0.55) * ui2 - f32(0.25) * np.clip((y_ut - ly) * f32(1 / (0.4 * w0)), 0, 1)) \
                    * self._tooth_gaps(ui)
                patch = blend(patch, self.teeth * sh_t[..., None], a_u)
            # tongue tip between the teeth (th)
            tip = float(np.clip(p[TIP], 0, 1))
            if tip > 0.05:
                cy = f32(0.5 * (0.10 * w0 + geom.ll))
                rr = (lx * f32(1 / (0.38 * float(hwi)))) ** 2 + ((ly - cy) * f32(1 / max(0.5 * gap, 1.0))) ** 2
                a_tp = a_cav * np.clip((f32(1) - rr) * f32(2.5), 0, 1) * f32(tip)
                patch = blend(patch, self.tongue * f32(1.05), a_tp)
        # the lip seam: a dark line where the lips meet (fades as the mouth opens)
        seam_pts = self.to_frame(np.stack([_U_OUT * float(hwi), geom.inner_upper(_U_OUT)], 1))
        mk = np.zeros((ph * _SS, pw * _SS), np.uint8)
        cv2.polylines(mk, [np.round(ss(seam_pts) * (1 << _SHIFT)).astype(np.int32)], False, 255,
                      max(1, int(round(0.05 * w0 * _SS))), cv2.LINE_AA, _SHIFT)
        a_seam = cv2.resize(mk, (pw, ph), interpolation=cv2.INTER_AREA).astype(f32) * \
            f32((0.5 * (1 - min(1.0, gap / 3.0)) + 0.25) / 255.0)
        patch = blend(patch, self.cavity * f32(1.5), a_seam)
        canvas[py0:py1, px0:px1] = np.clip(patch + f32(0.5), 0, 255).astype(np.uint8)

def render_frames(face: SpeakerFace, tracks: np.ndarray, rng: np.random.Generator, fps: float,
                  head_motion: float = 1.0, lighting: float = 1.0, renderer: MouthRenderer | None = None):
    """Render T frames from (T, N_PARAMS) tracks.

    Returns frames (T, H, W, 3) uint8, lips (T, 20, 2) float32 in output pixels, and the
    per-frame inner-lip opening (gap between points 62 and 66 over mouth width).
    """
    r = renderer or MouthRenderer(face)
    W, H = r.size
    T = len(tracks)
    times = (np.arange(T) + 0.5) / fps
    Ms = head_motion_matrices(rng, times, face.face_centre, H, head_motion)
    light = lighting_params(rng, times, lighting)
    frames = np.empty((T, H, W, 3), np.uint8)
    lips = np.empty((T, 20, 2), np.float32)
    opening = np.empty(T, np.float32)
    for k in range(T):
        geom = mouth_geometry(tracks[k], face.w0, face.variant.open_scale)
        canvas = r.render_canvas(geom, face.variant.teeth_show)
        M = Ms[k]
        img = cv2.warpAffine(canvas, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        g, gx, gy = (float(v) for v in light[k, :3])
        m = cv2.addWeighted(r.xn, gx, r.yn, gy, g)
        mult = cv2.merge([m * float(light[k, 3]), m * float(light[k, 4]), m * float(light[k, 5])])
        frames[k] = cv2.multiply(img, mult, dtype=cv2.CV_8U)
        pts = r.to_frame(geom.lip_points())
        lips[k] = pts @ M[:, :2].T + M[:, 2]
        opening[k] = geom.gap / max(2 * geom.hw, 1e-6)
    return frames, lips, opening
