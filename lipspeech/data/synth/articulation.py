"""Articulation for SynthGRID's talking mouths: phonemes -> articulatory tracks.

phonemes --(viseme targets: vowel qualities and consonant classes)--> timed segments
--(Cohen-Massaro dominance coarticulation, then a short smoothing)--> one value per
articulatory parameter (:data:`PARAM_NAMES`) at each requested time (the video frame
centres). :mod:`lipspeech.data.synth.render` turns the tracks into mouth shapes and frames.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

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
