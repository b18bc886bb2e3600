"""How linguistic discrete units are: phone purity, cluster purity and phone-normalised mutual
information (PNMI) of frame-level units against frame-level phone labels, as the HuBERT paper
(Hsu et al., 2021, section IV-B) defines them.

With ``y`` the phone and ``z`` the unit of a frame and ``p(y, z)`` their joint frequency over all
frames:

- phone purity ``= sum_z p(z) max_y p(y | z)``: how well the best phone of each unit predicts
  the frames of that unit (1 when every unit holds one phone; more units make it easier);
- cluster purity ``= sum_y p(y) max_z p(z | y)``: the same the other way round (falls as units
  split a phone among themselves);
- PNMI ``= I(y; z) / H(y)``: the share of the phone label's uncertainty the unit removes (1 when
  the unit determines the phone, 0 when the two are independent).

Phone labels come at the units' rate (50 Hz, :data:`lipspeech.core.timing.UNITS_PER_FRAME` per video
frame): :func:`phone_frames` gives each 20 ms frame the phone covering its centre, or
:data:`SILENCE` where no phone does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SILENCE = "sil"


def phone_frames(phones: Sequence[str], starts: Sequence[float], ends: Sequence[float], n_frames: int,
                 rate: float = 50.0) -> np.ndarray:
    """(n_frames,) phone label of each frame (centre at ``(i + 0.5) / rate`` seconds); :data:`SILENCE`
    where no phone interval ``[start, end)`` covers it (a later phone wins an overlap)."""
    centres = (np.arange(n_frames) + 0.5) / rate
    labels = np.full(n_frames, SILENCE, dtype=object)
    for name, a, b in zip(phones, starts, ends):
        labels[(centres >= a) & (centres < b)] = str(name)
    return labels


def unit_quality(phones: np.ndarray, units: np.ndarray) -> dict[str, float]:
    """``phone_purity``, ``cluster_purity``, ``pnmi`` (module docstring) and the label counts of
    aligned (N,) phone labels and (N,) unit ids."""
    phones, units = np.asarray(phones), np.asarray(units)
    if phones.shape != units.shape or phones.ndim != 1:
        raise ValueError(f"phones and units must be aligned 1-D arrays, got {phones.shape} and {units.shape}")
    if phones.size == 0:
        raise ValueError("no frames")
    _, y = np.unique(phones, return_inverse=True)
    _, z = np.unique(units, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1), np.float64)
    np.add.at(joint, (y, z), 1.0)
    joint /= joint.sum()
    py, pz = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mutual = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(py, pz)[nz])))
    h_y = float(-np.sum(py[py > 0] * np.log(py[py > 0])))
    return {
        "phone_purity": float(joint.max(0).sum()),  # sum_z p(z) max_y p(y|z) = sum_z max_y p(y, z)
        "cluster_purity": float(joint.max(1).sum()),
        "pnmi": mutual / h_y if h_y > 0 else float("nan"),
        "phones": int(joint.shape[0]),
        "units": int(joint.shape[1]),
        "frames": int(phones.size),
    }
