"""Unit quality against phones (HuBERT's phone purity, cluster purity, PNMI) on known answers."""

import numpy as np
import pytest

from lipspeech.features.unit_quality import SILENCE, phone_frames, unit_quality


def test_units_equal_to_phones_are_perfect():
    rng = np.random.default_rng(0)
    phones = rng.choice(["a", "b", "k", "s", SILENCE], size=5000)
    units = np.searchsorted(np.unique(phones), phones) * 7 + 3  # a relabelling: one unit per phone
    q = unit_quality(phones, units)
    assert q["pnmi"] == pytest.approx(1.0) and q["phone_purity"] == 1.0 and q["cluster_purity"] == 1.0
    assert (q["phones"], q["units"], q["frames"]) == (5, 5, 5000)


def test_independent_units_carry_no_phone_information():
    rng = np.random.default_rng(1)
    phones = rng.choice(["a", "b", "k", "s"], size=200_000, p=[0.4, 0.3, 0.2, 0.1])
    units = rng.integers(0, 8, size=phones.size)
    q = unit_quality(phones, units)
    assert q["pnmi"] == pytest.approx(0.0, abs=2e-3)
    assert q["phone_purity"] == pytest.approx(0.4, abs=0.01)  # the commonest phone, whatever the unit
    assert q["cluster_purity"] == pytest.approx(1 / 8, abs=0.01)


def test_split_phones_keep_pnmi_and_phone_purity_but_lose_cluster_purity():
    """Each phone spread evenly over two units: the unit still determines the phone."""
    rng = np.random.default_rng(2)
    phones = rng.choice(["a", "b", "c"], size=30_000)
    units = np.searchsorted(["a", "b", "c"], phones) * 2 + rng.integers(0, 2, size=phones.size)
    q = unit_quality(phones, units)
    assert q["pnmi"] == pytest.approx(1.0) and q["phone_purity"] == 1.0
    assert q["cluster_purity"] == pytest.approx(0.5, abs=0.01)


def test_phone_frames_at_50_hz():
    labels = phone_frames(["b", "I", "n"], [0.10, 0.15, 0.21], [0.15, 0.21, 0.30], n_frames=20)
    # frame i covers [20 i, 20 i + 20) ms and its centre decides: 90 ms silence, 110 and 130 b, 150-190 I, 210-290 n
    assert list(labels[4:16]) == [SILENCE, "b", "b", "I", "I", "I", "n", "n", "n", "n", "n", SILENCE]
    assert set(labels[:4]) == set(labels[16:]) == {SILENCE} and len(labels) == 20
    with pytest.raises(ValueError):
        unit_quality(np.array(["a", "b"]), np.array([1]))
