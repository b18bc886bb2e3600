"""The time axes, defined once.

| stream                        | rate   | per video frame |
| ----------------------------- | ------ | --------------- |
| video (resampled on decode)   | 25 fps | 1               |
| audio                         | 16 kHz | 640 samples     |
| mel / STFT (hop 160)          | 100 Hz | 4               |
| HuBERT units                  | 50 Hz  | 2               |
| pitch, energy targets         | 25 Hz  | 1               |

Length rule (the only one): the video frame count ``T`` of an utterance is the
master length. Every other stream is brought to exactly ``T * per_frame`` values
by :func:`fit_length`: extra values at the end are dropped, missing values at the
end are filled (zeros for audio, a copy of the last value for features). Decode
rejects an utterance whose audio and video lengths differ by more than the
configured tolerance, so this rule only ever absorbs codec padding and rounding.
"""

from __future__ import annotations

import numpy as np

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
HOP_LENGTH = 160
MEL_PER_FRAME = SAMPLES_PER_FRAME // HOP_LENGTH  # 4
UNITS_PER_FRAME = 2  # HuBERT's 20 ms frames


def fit_length(x: np.ndarray, n_frames: int, per_frame: int, pad: str = "edge") -> np.ndarray:
    """Trim or pad ``x`` along axis 0 to exactly ``n_frames * per_frame`` rows.

    Args:
        x: (N, ...) array.
        n_frames: video frame count T.
        per_frame: values per video frame of this stream (640 for audio, 4 for mel, ...).
        pad: "zero" (audio) or "edge" (features: repeat the last row).

    Returns:
        (T * per_frame, ...) array (a view when only trimming).
    """
    target = n_frames * per_frame
    n = x.shape[0]
    if n >= target:
        return x[:target]
    missing = target - n
    if pad == "zero" or n == 0:
        fill = np.zeros((missing,) + x.shape[1:], dtype=x.dtype)
    elif pad == "edge":
        fill = np.repeat(x[-1:], missing, axis=0)
    else:
        raise ValueError(f"pad must be 'zero' or 'edge', got {pad!r}")
    return np.concatenate([x, fill], axis=0)
