"""Signal metrics of a system's audio against the ground truth of the same utterance.

All systems share the time axes of :mod:`lipspeech.core.timing` (the system's audio
has ``T * 640`` samples for the ``T`` video frames of the reference), so every
comparison is frame-aligned: no DTW, no cross-correlation. A system whose timing
drifts is *meant* to be penalised, as the video fixes the timing.

STOI / ESTOI
    pystoi at the pipeline's 16 kHz (pystoi resamples to its own 10 kHz).
    pystoi needs 30 frames (~0.4 s) of speech after removing silent frames; for
    shorter utterances it returns a placeholder, which we turn into NaN.
PESQ (narrow band)
    ITU-T P.862 via the ``pesq`` package, mode ``nb`` at 8 kHz after polyphase
    resampling, as the GRID lip-to-speech literature reports it (MOS-LQO
    scale, about 1.0 to 4.55 for identical signals). PESQ errors (no
    utterance detected, buffer too short) give NaN and are counted.
MCD (dB)
    Mel-cepstra from the shared log-mel (:class:`lipspeech.features.audio.
    MelSpectrogram`, natural log of the mel magnitude, 100 Hz): for each frame
    of ``M`` mel bins, ``c_d = (1/M) sum_n logmel_n cos(pi d (n + 1/2) / M)``
    (a DCT-II scaled so that ``logmel ~ c_0 + 2 sum_d c_d cos(...)`` on the
    mel-warped axis, i.e. the cepstrum's own scaling), ``d = 1..order`` (``c_0``,
    the frame's level, is excluded). Per frame
    ``MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2)``; the utterance's
    MCD is the mean over all its frames (silence included). Values are not
    comparable with SPTK/WORLD mel-cepstral MCDs of other papers (other
    spectra, other warping); they compare our systems with each other.
F0 and voicing
    WORLD F0 of both signals with the prosody stage's method and range
    (:func:`lipspeech.features.prosody.world_f0`, 10 ms frames aligned with the
    mel frames). ``f0_mean``, ``f0_std``, ``f0_skew``, ``f0_kurt``: moments of
    the system's voiced F0 in Hz (population std, skewness, excess kurtosis:
    0 for a normal distribution). ``vuv_error``: fraction of 10 ms frames
    whose voicing decision differs from the ground truth's. ``f0_rmse_cents``:
    RMS of ``1200 log2(F0_sys / F0_ref)`` over frames voiced in both.
    Frames more than ``evaluate.f0_silence_db`` below the utterance's loudest
    frame (its frame energy) are unvoiced whatever DIO says: DIO finds a pitch in
    near-silence, e.g. about 100 Hz in the frame-rate ripple Griffin-Lim leaves at
    -90 dB between words, which on SynthGRID made the vocoded ground truth 35 %
    V/UV error away from its own source and pulled its mean F0 down by 17 Hz.
Energy
    The prosody stage's frame energy (L2 norm over frequency of the linear STFT
    magnitude, or of the linear mel frame with ``prosody.energy: mel``, of
    full-scale +-1 audio), averaged to 25 Hz; ``energy_mae`` is the mean
    absolute difference per video frame in those units (the units of the
    prosody store and of ``prosody/stats.json``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from lipspeech.core.settings import ProsodyConfig
from lipspeech.core.timing import MEL_PER_FRAME, SAMPLE_RATE, fit_length
from lipspeech.evaluation.asr import resample
from lipspeech.evaluation.families import SIGNAL_METRICS
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.features.prosody import frame_energy, to_video_rate, world_f0

PESQ_RATE = 8_000
DB_PER_NEPER = 10.0 / math.log(10.0)



def stoi(ref: np.ndarray, deg: np.ndarray, sample_rate: int = SAMPLE_RATE, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended``) of (N,) ``deg`` against (N,) ``ref``; NaN when too short to score."""
    from pystoi import stoi as _stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(np.asarray(ref, np.float64), np.asarray(deg, np.float64), sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return value


def pesq_nb(ref: np.ndarray, deg: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[float, str | None]:
    """Narrow-band PESQ (8 kHz) of (N,) ``deg`` against (N,) ``ref``: (score, None) or (NaN, error name)."""
    import pesq

    r = resample(ref, sample_rate, PESQ_RATE)
    d = resample(deg, sample_rate, PESQ_RATE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pesq divides by the peak: silence warns first
            return float(pesq.pesq(PESQ_RATE, r, d, "nb")), None
    except pesq.PesqError as exc:
        return math.nan, type(exc).__name__


def cepstrum_matrix(n_mels: int, order: int) -> np.ndarray:
    """(order, n_mels) matrix taking a log-mel frame to its mel-cepstrum c_1..c_order (module docstring)."""
    n = np.arange(n_mels) + 0.5
    d = np.arange(1, order + 1)[:, None]
    return np.cos(np.pi * d * n / n_mels) / n_mels


def mel_cepstral_distortion(ref_logmel: np.ndarray, deg_logmel: np.ndarray, order: int = 24) -> float:
    """Mean MCD in dB over frames of two frame-aligned (F, n_mels) natural-log mels (c_0 excluded)."""
    if ref_logmel.shape != deg_logmel.shape:
        raise ValueError(f"log-mels must be frame-aligned: {ref_logmel.shape} vs {deg_logmel.shape}")
    if ref_logmel.shape[0] == 0:
        return math.nan
    basis = cepstrum_matrix(ref_logmel.shape[1], order)
    diff = (np.asarray(ref_logmel, np.float64) - np.asarray(deg_logmel, np.float64)) @ basis.T
    return float(np.mean(DB_PER_NEPER * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


def f0_moments(f0: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, skewness, excess kurtosis) in Hz of the voiced (> 0) values of ``f0``; NaN where undefined."""
    from scipy.stats import kurtosis, skew

    v = np.asarray(f0, np.float64)
    v = v[v > 0]
    if v.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean, std = float(v.mean()), float(v.std())
    if v.size < 3 or std == 0:
        return mean, std, math.nan, math.nan
    return mean, std, float(skew(v)), float(kurtosis(v, fisher=True))


def vuv_error(ref_f0: np.ndarray, sys_f0: np.ndarray) -> float:
    """Fraction of frames whose voicing (F0 > 0) differs between two aligned (F,) F0 tracks."""
    if len(ref_f0) == 0:
        return math.nan
    return float(np.mean((np.asarray(ref_f0) > 0) != (np.asarray(sys_f0) > 0)))


def f0_rmse_cents(ref_f0: np.ndarray, sys_f0: np.ndarray) -> float:
    """RMS F0 difference in cents over frames voiced in both (NaN when there are none)."""
    ref_f0, sys_f0 = np.asarray(ref_f0, np.float64), np.asarray(sys_f0, np.float64)
    both = (ref_f0 > 0) & (sys_f0 > 0)
    if not both.any():
        return math.nan
    cents = 1200.0 * np.log2(sys_f0[both] / ref_f0[both])
    return float(np.sqrt(np.mean(cents**2)))


def loud_frames(energy: np.ndarray, silence_db: float) -> np.ndarray:
    """(F,) frame energies (amplitude units) -> (F,) True where a frame is within ``silence_db``
    dB of the loudest one (all True for ``silence_db <= 0``, all False for an all-zero signal)."""
    energy = np.asarray(energy, np.float64)
    if silence_db <= 0:
        return np.ones(energy.shape, bool)
    peak = float(energy.max()) if energy.size else 0.0
    return energy > peak * 10.0 ** (-silence_db / 20.0) if peak > 0 else np.zeros(energy.shape, bool)


@dataclass
class Features:
    """What the metrics need of one signal of ``T`` video frames.

    Attributes:
        audio: (T * 640,) float32, 16 kHz.
        logmel: (4T, n_mels) natural-log mel.
        f0: (4T,) Hz per 10 ms frame, 0 = unvoiced.
        energy: (T,) frame energy at 25 Hz.
    """

    audio: np.ndarray
    logmel: np.ndarray
    f0: np.ndarray
    energy: np.ndarray


class SignalScorer:
    """Computes :class:`Features` and the signal metrics; keeps time spent per metric.

    Args:
        mel_cfg: the ``mel`` config section (the MCD's log-mel, the energy's STFT).
        prosody_cfg: the ``prosody`` config section (F0 method and range, energy kind).
        mcd_order: cepstral coefficients c_1..c_order in the MCD.
        use_pesq: compute PESQ (the slowest metric); NaN otherwise.
        f0_silence_db: frames this far below the loudest are unvoiced (0: DIO's decision alone).
    """

    def __init__(self, mel_cfg: Mapping[str, Any], prosody_cfg: Mapping[str, Any], mcd_order: int, use_pesq: bool,
                 f0_silence_db: float):
        self.mel = MelSpectrogram(AudioConfig.from_section(mel_cfg))
        self.prosody = ProsodyConfig.from_section(prosody_cfg)
        self.mcd_order = int(mcd_order)
        self.use_pesq = bool(use_pesq)
        self.f0_silence_db = float(f0_silence_db)
        self.seconds: dict[str, float] = defaultdict(float)
        self.failures: Counter[str] = Counter()

    def _timed(self, name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - t

    def features(self, audio: np.ndarray, n_frames: int) -> Features:
        """F0, log-mel and energy of (T * 640,) audio."""
        audio = np.array(audio, dtype=np.float32)  # a writable copy: store arrays are read-only views
        prosody = self.prosody
        f0 = self._timed("f0", world_f0, audio, prosody.f0_method, float(prosody.f0_floor), float(prosody.f0_ceil))
        f0 = fit_length(f0, n_frames, MEL_PER_FRAME, pad="edge")

        def mel_and_energy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            with torch.inference_mode():
                logmel = self.mel(torch.from_numpy(audio)).numpy()
            energy = frame_energy(audio, self.mel, prosody.energy)
            _, _, energy25 = to_video_rate(np.zeros(len(energy)), energy, n_frames, float(prosody.f0_floor))
            return (fit_length(logmel, n_frames, MEL_PER_FRAME, pad="edge"), energy25,
                    fit_length(energy, n_frames, MEL_PER_FRAME, pad="edge"))

        logmel, energy, energy100 = self._timed("mel_energy", mel_and_energy)
        f0 = np.where(loud_frames(energy100, self.f0_silence_db), f0, 0.0)
        return Features(audio, logmel, f0, energy)

    def score(self, ref: Features, sys: Features) -> dict[str, float]:
        """Every signal metric of ``sys`` against ``ref`` (same T); NaN where it does not apply."""
        out: dict[str, float] = {}
        out["stoi"] = self._timed("stoi", stoi, ref.audio, sys.audio, SAMPLE_RATE, False)
        out["estoi"] = self._timed("estoi", stoi, ref.audio, sys.audio, SAMPLE_RATE, True)
        for name in ("stoi", "estoi"):
            if math.isnan(out[name]):
                self.failures[f"{name}: too little speech"] += 1
        if self.use_pesq:
            value, error = self._timed("pesq_nb", pesq_nb, ref.audio, sys.audio, SAMPLE_RATE)
            if error:
                self.failures[f"pesq_nb: {error}"] += 1
            out["pesq_nb"] = value
        else:
            out["pesq_nb"] = math.nan
        out["mcd"] = self._timed("mcd", mel_cepstral_distortion, ref.logmel, sys.logmel, self.mcd_order)
        out["f0_mean"], out["f0_std"], out["f0_skew"], out["f0_kurt"] = f0_moments(sys.f0)
        out["vuv_error"] = vuv_error(ref.f0, sys.f0)
        out["f0_rmse_cents"] = f0_rmse_cents(ref.f0, sys.f0)
        energy_err = np.abs(ref.energy.astype(np.float64) - sys.energy)
        out["energy_mae"] = float(np.mean(energy_err)) if len(ref.energy) else math.nan
        return {k: out[k] for k in SIGNAL_METRICS}
