"""DNSMOS: non-intrusive MOS predictors (Microsoft; Reddy et al., ICASSP 2021 for P.808, ICASSP 2022
for P.835), run with onnxruntime on the CPU from the ONNX files inside the installed ``speechmos`` wheel.

Nothing is downloaded: :func:`model_dir` finds the wheel's ``dnsmos_models/`` folder without
importing ``speechmos`` (whose import pulls in ``requests`` and ``librosa`` at module level).

What is computed, for one utterance (16 kHz mono float, clipped to [-1, 1] as a 16-bit WAV
file would hold it):

Input handling (as the reference implementation, ``speechmos.dnsmos`` and the DNS Challenge's
``dnsmos_local.py``, does it)
    An utterance shorter than 9.01 s is repeated end to end (the whole signal appended to itself,
    doubling, until it is at least 9.01 s long); then every 9.01 s window starting at whole seconds
    0, 1, 2, ... is scored, ``int(floor(seconds) - 9.01) + 1`` windows (the whole seconds of the
    tiled signal less 9.01, truncated, plus one), and the window scores are averaged. A 3 s GRID
    utterance is tiled to 12 s and scored in 3 windows.
P.808 (``p808``)
    ``model_v8.onnx`` on a log-mel of the window without its last 160 samples: 120 mel bands of
    the power spectrum, n_fft 321, hop 160 (librosa, centred frames: 900 frames), in dB relative to
    the window's maximum (80 dB floor), mapped by ``(dB + 40) / 40``. The network's output is the
    MOS (ITU-T P.808 absolute category rating, 1-5); no calibration.
P.835 (``sig``, ``bak``, ``ovrl``)
    ``sig_bak_ovr.onnx`` on the raw 144,160-sample window; its three raw outputs are mapped
    through the published calibration polynomials (:data:`P835_CALIBRATION`, the non-personalised
    model) to speech signal quality (SIG), background-noise quality (BAK) and overall quality
    (OVRL), each on the 1-5 scale of ITU-T P.835.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import numpy as np

from lipspeech.core.installed import package_folder
from lipspeech.core.timing import SAMPLE_RATE
from lipspeech.evaluation.families import MetricUnavailable

#: window length in seconds and in samples
SEGMENT_SECONDS = 9.01
SEGMENT_SAMPLES = int(SEGMENT_SECONDS * SAMPLE_RATE)  # 144160
#: P.808 features: mel bands, FFT size and hop of the log-mel
P808_MELS, P808_NFFT, P808_HOP = 120, 321, 160
#: output columns, in table order
COLUMNS = ("dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
#: raw P.835 output -> MOS: polynomial coefficients, highest power first (the published fit of the
#: non-personalised model)
P835_CALIBRATION: Mapping[str, tuple[float, ...]] = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
P808_MODEL = "model_v8.onnx"
P835_MODEL = "sig_bak_ovr.onnx"


class DNSMOSUnavailable(MetricUnavailable):
    """The DNSMOS models (package speechmos) or onnxruntime are not installed."""


def model_dir() -> Path:
    """The ``dnsmos_models`` folder of the installed speechmos wheel (not imported)."""
    folder = package_folder("speechmos", DNSMOSUnavailable(
        "package speechmos (DNSMOS's ONNX models) is not installed: pip install speechmos onnxruntime "
        "(or remove dnsmos from evaluate.metrics)")) / "dnsmos_models"
    missing = [m for m in (P808_MODEL, P835_MODEL) if not (folder / m).is_file()]
    if missing:
        raise DNSMOSUnavailable(f"{folder}: no {', '.join(missing)} (a speechmos release without DNSMOS P.808/P.835?)")
    if importlib.util.find_spec("onnxruntime") is None:
        raise DNSMOSUnavailable("package onnxruntime is not installed: pip install onnxruntime "
                                "(or remove dnsmos from evaluate.metrics)")
    return folder


def windows(audio: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz audio -> (W, 144160) float32 scoring windows (module docstring: input handling)."""
    x = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    if x.size == 0:
        raise ValueError("DNSMOS of an empty signal")
    while x.size < SEGMENT_SAMPLES:
        x = np.concatenate([x, x])
    count = int(np.floor(x.size / SAMPLE_RATE) - SEGMENT_SECONDS) + 1
    starts = [i * SAMPLE_RATE for i in range(count) if i * SAMPLE_RATE + SEGMENT_SAMPLES <= x.size]
    return np.stack([x[s : s + SEGMENT_SAMPLES] for s in starts])


def p808_features(window: np.ndarray) -> np.ndarray:
    """(144160,) window -> (900, 120) float32 P.808 input (module docstring)."""
    import librosa

    power = librosa.feature.melspectrogram(y=window[:-P808_HOP], sr=SAMPLE_RATE, n_fft=P808_NFFT,
                                           hop_length=P808_HOP, n_mels=P808_MELS)
    return ((librosa.power_to_db(power, ref=np.max) + 40.0) / 40.0).T.astype(np.float32)


class DNSMOS:
    """The P.808 and P.835 predictors.

    Args:
        folder: the ``dnsmos_models`` folder (default: the installed speechmos wheel's).
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, folder: Path | None = None, threads: int = 1):
        import onnxruntime as ort

        folder = Path(folder) if folder is not None else model_dir()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.p808 = ort.InferenceSession(str(folder / P808_MODEL), opts, providers=providers)
        self.p835 = ort.InferenceSession(str(folder / P835_MODEL), opts, providers=providers)
        self.folder = folder

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """Scores of one (N,) 16 kHz utterance: ``dnsmos_p808, dnsmos_sig, dnsmos_bak, dnsmos_ovrl``."""
        wins = windows(audio)
        feats = np.stack([p808_features(w) for w in wins])
        p808 = self.p808.run(None, {self.p808.get_inputs()[0].name: feats})[0][:, 0]
        raw = self.p835.run(None, {self.p835.get_inputs()[0].name: wins})[0]  # (W, 3): sig, bak, ovrl
        out = {"dnsmos_p808": float(np.mean(p808))}
        for j, name in enumerate(("sig", "bak", "ovrl")):
            out[f"dnsmos_{name}"] = float(np.mean(np.polyval(P835_CALIBRATION[name], raw[:, j].astype(np.float64))))
        return {k: out[k] for k in COLUMNS}
