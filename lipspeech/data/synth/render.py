"""Talking-mouth frames for SynthGRID.

articulatory tracks (:mod:`lipspeech.data.synth.articulation`) --> per-frame mouth geometry
(iBUG lip points) --> frames: jaw drop warp of the lower face, anti-aliased lips / cavity /
teeth / tongue, one similarity warp for head motion, slow lighting change.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .articulation import N_PARAMS, OPEN, SPREAD, TEETH_L, TEETH_U, TIP, TONGUE, TUCK, articulation, phoneme_segments
from .face import SpeakerFace

__all__ = ["MouthGeom", "MouthRenderer", "articulation", "head_motion_matrices", "lighting_params", "mouth_geometry",
           "phoneme_segments", "render_frames", "N_PARAMS", "OPEN", "SPREAD", "TEETH_L", "TEETH_U", "TIP", "TONGUE",
           "TUCK"]

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
        """Lips, then (when open) the cavity with tongue and teeth, then the lip seam, into ``canvas``."""
        patch_at = _Patch.around(self.to_frame(geom.outer_polygon()), self.face.w0, canvas.shape, self.c, self.R)
        if patch_at is None:
            return
        py0, py1, px0, px1 = patch_at.bounds
        patch_at.ui = np.minimum(np.abs(patch_at.lx) / np.float32(max(geom.hwi, 1e-3)), np.float32(1))
        patch = self._paint_lips(canvas[py0:py1, px0:px1].astype(np.float32), patch_at, geom)
        if geom.gap > 0.05:
            patch = self._paint_cavity(patch, patch_at, geom, teeth_show)
        patch = self._paint_seam(patch, patch_at, geom)
        canvas[py0:py1, px0:px1] = np.clip(patch + np.float32(0.5), 0, 255).astype(np.uint8)

    def _paint_lips(self, patch, at: "_Patch", geom: MouthGeom):
        """Shadows below the lower lip and at the corners, then the lips: the upper darker (in shadow),
        the lower with a soft highlight, both following the face's shading, with a striated texture."""
        f32 = np.float32
        w0, lx, ly = self.face.w0, at.lx, at.ly
        a_lip = cv2.GaussianBlur(at.alpha([self.to_frame(geom.outer_polygon())]), (0, 0), 0.7)
        hw, yc = f32(geom.hw), f32(geom.yc)
        ui, uo = at.ui, np.minimum(np.abs(lx) / hw, f32(1))
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

        below = np.clip((ly - out_lo) * f32(1 / (0.35 * w0)), 0, 1)
        sh = np.exp(-((below - f32(0.35)) * f32(1 / 0.35)) ** 2) * (ly > out_lo) * (bo ** f32(0.6))
        corner = np.exp(-(((np.abs(lx) - hw) * f32(1 / (0.16 * w0))) ** 2
                          + ((ly - yc) * f32(1 / (0.14 * w0))) ** 2))
        dark = np.minimum(f32(0.16) * sh + f32(0.35) * corner, f32(0.6))
        patch *= (f32(1) - dark)[..., None]

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
        return patch * (f32(1) - al) + lipcol * al

    def _paint_cavity(self, patch, at: "_Patch", geom: MouthGeom, teeth_show: float):
        """The open mouth: dark cavity, the tongue behind the lower teeth, the lower teeth (moving
        with the jaw), the upper teeth (fixed to the skull) and the tongue tip between them (th)."""
        f32 = np.float32
        w0, p, gap, lx, ly = self.face.w0, geom.params, geom.gap, at.lx, at.ly
        ui = at.ui
        ui2 = ui * ui
        hwi = f32(max(geom.hwi, 1e-3))
        a_cav = at.alpha([self.to_frame(geom.inner_polygon())])
        cav = self.cavity * (f32(0.8) + f32(0.45) * ui2)[..., None]
        patch = _blend(patch, cav, a_cav)
        ll = f32(geom.ll)
        # tongue (behind the lower teeth), its top an arch rising with TONGUE
        tg = float(p[TONGUE])
        if tg > 0.02:
            arch = np.sqrt(np.maximum(f32(1) - ui2 * f32(1 / 0.64), 0))
            y_tg = ll - f32((0.15 + 0.5 * tg) * gap) * arch
            a_t = a_cav * np.clip((ly - y_tg) * f32(1 / 1.2) + f32(0.5), 0, 1) * (arch > 0)
            tcol = self.tongue * (f32(0.75) + f32(0.25) * np.clip((ly - y_tg) * f32(1 / (0.3 * w0)), 0, 1))[..., None]
            patch = _blend(patch, tcol, a_t)
        # lower teeth: top edge moves with the jaw
        vl = float(np.clip(p[TEETH_L], 0, 1)) * teeth_show
        if vl > 0.02:
            y_lt = ll - f32((0.06 + 0.22 * vl) * w0 * (0.35 + 0.65 * min(1.0, gap / (0.3 * w0)))) \
                + f32(0.10 * w0) * ui2
            a_l = a_cav * np.clip(ly - y_lt + f32(0.5), 0, 1) * f32(0.92)
            tcol = self.teeth * ((f32(0.74) - f32(0.4) * ui2) * self._tooth_gaps(ui * f32(1.25)))[..., None]
            patch = _blend(patch, tcol, a_l)
        # upper teeth: fixed to the skull, edge just below the rest seam
        vu = float(np.clip(p[TEETH_U], 0, 1)) * teeth_show
        if vu > 0.05:
            y_ut = f32((0.10 - 0.22 * (1 - vu)) * w0 + 0.04 * w0 * float(p[TUCK])) - f32(0.14 * w0) * ui2
            a_u = a_cav * np.clip(y_ut - ly + f32(0.5), 0, 1) * f32(0.95)
            sh_t = (f32(1) - f32(0.55) * ui2 - f32(0.25) * np.clip((y_ut - ly) * f32(1 / (0.4 * w0)), 0, 1)) \
                * self._tooth_gaps(ui)
            patch = _blend(patch, self.teeth * sh_t[..., None], a_u)
        # tongue tip between the teeth (th)
        tip = float(np.clip(p[TIP], 0, 1))
        if tip > 0.05:
            cy = f32(0.5 * (0.10 * w0 + geom.ll))
            rr = (lx * f32(1 / (0.38 * float(hwi)))) ** 2 + ((ly - cy) * f32(1 / max(0.5 * gap, 1.0))) ** 2
            a_tp = a_cav * np.clip((f32(1) - rr) * f32(2.5), 0, 1) * f32(tip)
            patch = _blend(patch, self.tongue * f32(1.05), a_tp)
        return patch

    def _paint_seam(self, patch, at: "_Patch", geom: MouthGeom):
        """The lip seam: a dark line where the lips meet (fades as the mouth opens)."""
        f32 = np.float32
        w0, hwi = self.face.w0, f32(max(geom.hwi, 1e-3))
        seam_pts = self.to_frame(np.stack([_U_OUT * float(hwi), geom.inner_upper(_U_OUT)], 1))
        mk = np.zeros((at.ph * _SS, at.pw * _SS), np.uint8)
        cv2.polylines(mk, [np.round(at.ss(seam_pts) * (1 << _SHIFT)).astype(np.int32)], False, 255,
                      max(1, int(round(0.05 * w0 * _SS))), cv2.LINE_AA, _SHIFT)
        a_seam = cv2.resize(mk, (at.pw, at.ph), interpolation=cv2.INTER_AREA).astype(f32) * \
            f32((0.5 * (1 - min(1.0, geom.gap / 3.0)) + 0.25) / 255.0)
        return _blend(patch, self.cavity * f32(1.5), a_seam)


def _blend(patch, col, a):
    a = a[..., None]
    return patch + (col - patch) * a


@dataclass
class _Patch:
    """The image patch around the mouth that one frame repaints, and its pixels in mouth coordinates.

    Attributes:
        bounds: (py0, py1, px0, px1) in the frame.
        lx, ly: (ph, pw) float32 coordinates of the patch pixels rotated into the mouth frame.
        ui: min(|lx| / the inner half width, 1) (the frame's mouth shape sets it).
    """

    bounds: tuple[int, int, int, int]
    off: np.ndarray
    lx: np.ndarray
    ly: np.ndarray
    ui: np.ndarray = None

    @property
    def pw(self) -> int:
        return self.bounds[3] - self.bounds[2]

    @property
    def ph(self) -> int:
        return self.bounds[1] - self.bounds[0]

    @classmethod
    def around(cls, outer: np.ndarray, w0: float, shape: tuple[int, ...], centre: np.ndarray, rot: np.ndarray
               ) -> "_Patch | None":
        """The patch holding the outer lip polygon ``outer`` (frame pixels) with a margin; None when degenerate."""
        H, W = shape[:2]
        m = 0.45 * w0 + 3
        px0 = int(max(0, np.floor(outer[:, 0].min() - m)))
        px1 = int(min(W, np.ceil(outer[:, 0].max() + m)))
        py0 = int(max(0, np.floor(outer[:, 1].min() - m)))
        py1 = int(min(H, np.ceil(outer[:, 1].max() + m)))
        if px1 - px0 <= 2 or py1 - py0 <= 2:
            return None
        f32 = np.float32
        dx = (np.arange(px0, px1, dtype=f32) - f32(centre[0]))[None, :]
        dy = (np.arange(py0, py1, dtype=f32) - f32(centre[1]))[:, None]
        ca, sa = f32(rot[0, 0]), f32(rot[1, 0])
        return cls((py0, py1, px0, px1), np.array([px0, py0], np.float64), dx * ca + dy * sa, dy * ca - dx * sa)

    def ss(self, pts: np.ndarray) -> np.ndarray:
        """Frame points -> supersampled patch coordinates."""
        return (pts - self.off) * _SS + (_SS - 1) / 2.0

    def alpha(self, polys) -> np.ndarray:
        """Anti-aliased coverage (ph, pw) float32 in [0, 1] of the polygons (frame points)."""
        mk = np.zeros((self.ph * _SS, self.pw * _SS), np.uint8)
        for q in polys:
            _fill(mk, self.ss(q))
        return cv2.resize(mk, (self.pw, self.ph), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def render_frames(face: SpeakerFace, tracks: np.ndarray, rng: np.random.Generator, fps: float,
                  head_motion: float, lighting: float, renderer: MouthRenderer | None = None):
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
