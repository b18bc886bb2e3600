"""Acoustic targets: mel, 50 Hz SSL features and units, WORLD F0 and energy, statistics."""

import json
import math

import numpy as np
import pytest
import torch

from lipspeech.cli import main
from lipspeech.core.config import ConfigError, default_section, validate_config
from lipspeech.core.settings import MelConfig
from lipspeech.core.shards import StageError
from lipspeech.core.store import Store, StoreMeta, read_rejected, write_store
from lipspeech.core.timing import SAMPLE_RATE, SAMPLES_PER_FRAME
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.features.mel import mel_shard, utterance_mel
from lipspeech.features.prosody import prosody_shard, prosody_stats, to_video_rate, utterance_prosody, world_f0
from lipspeech.features.ssl import load_hubert, mfcc_features, ssl_shard
from lipspeech.features.units import fit_kmeans, kmeans_fit, units_shard

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def harmonic(f0: float, n_frames: int, n_harmonics: int = 8, amp: float = 0.3) -> np.ndarray:
    """A voiced-like tone: harmonics of f0 with 1/h amplitudes, exactly n_frames * 640 samples.

    50 ms linear fade in and out, as a voice starts and stops: a tone switched on
    abruptly makes any F0 tracker's edge frames a few Hz off.
    """
    n = n_frames * SAMPLES_PER_FRAME
    t = np.arange(n) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, n_harmonics + 1))
    fade = np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.05 * SAMPLE_RATE), 0, 1)
    return (amp * fade * x / np.abs(x).max()).astype(np.float32)


def write_audio_store(path, utts: dict) -> None:
    """A decode store as the decode stage writes it."""
    names = list(utts)
    n_frames = [len(utts[u]) // SAMPLES_PER_FRAME for u in names]
    write_store(
        path, StoreMeta("decode", "test"), names,
        {"n_frames": n_frames, "duration": [n / 25 for n in n_frames]},
        {"audio": [utts[u] for u in names]},
    )


def write_manifest(path, rows: list[tuple[str, str, str]]) -> None:
    """(utt, speaker, split) rows as a manifest store."""
    write_store(path, StoreMeta("manifest", "test"), [r[0] for r in rows],
                {"speaker": [r[1] for r in rows], "split": [r[2] for r in rows]})


# ----------------------------------------------------------------------------- mel


def test_mel_of_a_sine_peaks_in_the_right_bin_with_four_frames_per_video_frame():
    import librosa

    cfg = AudioConfig.default()
    module = MelSpectrogram(cfg)
    for n_frames in (1, 7, 25):
        t = np.arange(n_frames * SAMPLES_PER_FRAME) / SAMPLE_RATE
        mel = utterance_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32), n_frames, module)
        assert mel.shape == (4 * n_frames, 80) and mel.dtype == np.float32
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    assert int(np.argmax(mel.mean(axis=0))) == int(np.argmin(np.abs(centres - 1000)))
    # a length that is not a whole number of video frames still gives 4 per frame (fit_length)
    assert utterance_mel(np.zeros(3 * 640 + 100, np.float32), 3, module).shape == (12, 80)
    # log floor: silence is log(1e-5), not -inf
    assert np.allclose(utterance_mel(np.zeros(640, np.float32), 1, module), math.log(1e-5))


def test_audio_config_reads_the_mel_section_typed_or_as_its_mapping():
    mel = validate_config({"mel": {"fmin": 0, "fmax": 8000}})["mel"]
    cfg = AudioConfig.from_section(mel)
    assert cfg == AudioConfig.from_section(MelConfig.from_section(mel))
    assert (cfg.fmin, cfg.fmax) == (0.0, 8000.0) and isinstance(cfg.fmin, float)  # the mel store records floats
    with pytest.raises(ConfigError, match="mel.nfft: unknown key"):
        AudioConfig.from_section({**mel, "nfft": 512})


def test_mel_frame_k_is_centred_on_sample_160k_plus_80():
    module = MelSpectrogram(AudioConfig.default())
    x = np.zeros(10 * 640, np.float32)
    for k in (3, 17, 30):
        x[:] = 0
        x[160 * k + 80] = 1.0
        energy = module.magnitude(torch.from_numpy(x.copy())).pow(2).sum(-1)
        assert int(energy.argmax()) == k
        assert torch.isclose(energy[k - 1], energy[k + 1], rtol=1e-3)  # symmetric about the click


def test_mel_stage_writes_store_and_rejects_nan_audio(tmp_path):
    bad = harmonic(150, 5)
    bad[100] = np.nan
    write_audio_store(tmp_path / "a.parquet", {"u1": harmonic(150, 5), "u2": bad})
    ok, rejected = mel_shard(tmp_path / "a.parquet", default_section("mel"), tmp_path / "m.parquet",
                             tmp_path / "m.rejected.parquet", progress=False, fail_fast=False)
    assert (ok, rejected) == (1, 1)
    store = Store(tmp_path / "m.parquet", expect_stage="mel")
    assert store.array("mel", 0).shape == (20, 80) and list(store.df["duration"]) == [0.2]
    assert read_rejected([tmp_path / "m.rejected.parquet"]).to_pylist() == [
        {"utt": "u2", "stage": "mel", "reason": "audio has NaN or infinite samples"}]


def test_mel_config_consistency_is_checked():
    with pytest.raises(ConfigError, match=r"mel\.win_length"):
        validate_config({"mel": {"win_length": 2048}})
    with pytest.raises(ConfigError, match=r"prosody\.f0_floor"):
        validate_config({"prosody": {"f0_floor": 700}})


# ----------------------------------------------------------------------------- F0 and energy


@pytest.mark.parametrize("method", ["dio", "harvest"])
def test_world_f0_of_a_150_hz_tone(method):
    x = harmonic(150, 25)
    f0 = world_f0(x, method, 60, 600)
    assert len(f0) == 100  # exactly 4 per video frame
    voiced = f0 > 0
    assert voiced.mean() > 0.8
    assert np.all(np.abs(f0[voiced] - 150) <= 2)
    lf0, vmask, energy = utterance_prosody(x, 25, {"f0_method": method, "f0_floor": 60, "f0_ceil": 600,
                                                   "energy": "magnitude"}, MelSpectrogram(AudioConfig.default()))
    assert lf0.shape == vmask.shape == energy.shape == (25,)
    assert np.all(np.abs(np.exp(lf0[vmask.astype(bool)]) - 150) <= 2)


def test_silence_is_unvoiced_not_rejected_and_unvoiced_frames_are_interpolated(tmp_path):
    x = np.zeros(10 * 640, np.float32)
    lf0, voiced, energy = utterance_prosody(x, 10, default_section("prosody"), MelSpectrogram(AudioConfig.default()))
    assert not voiced.any() and np.allclose(lf0, math.log(60)) and np.allclose(energy, 0)
    # 100 Hz: voiced 100 Hz, a gap, voiced 200 Hz -> the gap is interpolated in log-F0
    f0 = np.array([100.0] * 8 + [0.0] * 8 + [200.0] * 8)
    lf0, voiced, _ = to_video_rate(f0, np.ones(24), 6, 60)
    assert voiced.tolist() == [1, 1, 0, 0, 1, 1]
    assert np.allclose(lf0[2:4], np.log(100) + (np.log(200) - np.log(100)) * np.array([1, 2]) / 3)
    # a frame with one voiced 10 ms frame out of 4 takes that frame's F0 (voiced frames only)
    lf0, voiced, _ = to_video_rate(np.array([0, 0, 0, 120.0]), np.ones(4), 1, 60)
    assert voiced.tolist() == [1] and np.isclose(lf0[0], np.log(120))


@pytest.mark.parametrize("kind", ["magnitude", "mel"])
def test_energy_grows_with_amplitude(kind):
    cfg = {"f0_method": "dio", "f0_floor": 60, "f0_ceil": 600, "energy": kind}
    module = MelSpectrogram(AudioConfig.default())
    quiet = utterance_prosody(harmonic(150, 5, amp=0.1), 5, cfg, module)[2]
    loud = utterance_prosody(harmonic(150, 5, amp=0.4), 5, cfg, module)[2]
    assert np.allclose(loud, 4 * quiet, rtol=1e-3)


def test_prosody_stats_has_per_speaker_mean_and_std_from_train_only(tmp_path):
    utts = {"a1": harmonic(120, 20), "a2": harmonic(125, 15), "b1": harmonic(220, 20), "c1": harmonic(300, 10),
            "quiet": np.zeros(640 * 4, np.float32)}
    write_audio_store(tmp_path / "audio.parquet", utts)
    write_manifest(tmp_path / "manifest.parquet", [("a1", "a", "train"), ("a2", "a", "train"), ("b1", "b", "train"),
                                                   ("c1", "c", "test"), ("quiet", "q", "train")])
    cfg = validate_config({})
    ok, bad = prosody_shard(tmp_path / "audio.parquet", cfg["prosody"], cfg["mel"], tmp_path / "p.parquet",
                            tmp_path / "p.rejected.parquet", threads=2, progress=False, fail_fast=False)
    assert (ok, bad) == (5, 0)  # silence is not a rejection
    prosody_stats([tmp_path / "p.parquet"], tmp_path / "manifest.parquet", cfg["prosody"], cfg["mel"],
                  tmp_path / "stats.json", fail_fast=False)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert set(stats["speakers"]) == {"a", "b", "q"}  # c is test only
    a, b = stats["speakers"]["a"], stats["speakers"]["b"]
    assert abs(math.exp(a["lf0"]["mean"]) - 122) < 3 and abs(math.exp(b["lf0"]["mean"]) - 220) < 3
    assert 0 < a["lf0"]["std"] < 0.1 and a["utterances"] == 2
    assert a["energy"]["mean"] > 0 and a["energy"]["std"] >= 0
    assert stats["speakers"]["q"]["lf0"]["mean"] is None  # no voiced train frame: consumers use global
    assert stats["global"]["utterances"] == 4 and stats["config_hash"]


# ----------------------------------------------------------------------------- SSL features and units


def test_mfcc_features_are_50_hz_with_deltas():
    feats = mfcc_features(harmonic(150, 12), 12, {"n_mfcc": 13, "n_mels": 23, "deltas": 2})
    assert feats.shape == (24, 39) and feats.dtype == np.float32
    assert np.allclose(mfcc_features(harmonic(150, 12), 12, {"n_mfcc": 13, "n_mels": 23, "deltas": 0}), feats[:, :13])


def test_units_two_per_video_frame_and_kmeans_reproduces_with_seed(tmp_path):
    rng = np.random.default_rng(0)
    utts = {f"u{i}": harmonic(float(rng.uniform(90, 300)), int(rng.integers(8, 30))) for i in range(6)}
    write_audio_store(tmp_path / "audio.parquet", utts)
    write_manifest(tmp_path / "manifest.parquet", [(u, "s", "train" if i < 4 else "test") for i, u in enumerate(utts)])
    cfg = validate_config({"kmeans": {"k": 16, "sample_frames": 100}})
    ssl_shard(tmp_path / "audio.parquet", cfg["ssl"], tmp_path / "ssl.parquet", tmp_path / "ssl.rej.parquet", progress=False,
              fail_fast=False)
    fits = []
    for name in ("c1", "c2"):
        info = kmeans_fit([tmp_path / "ssl.parquet"], tmp_path / "manifest.parquet", cfg["ssl"], cfg["kmeans"],
                          tmp_path / f"{name}.npy", tmp_path / f"{name}.json", progress=False, log=lambda m: None,
                          fail_fast=False)
        fits.append(np.load(tmp_path / f"{name}.npy"))
    assert info["k"] == 16 and info["frames_sampled"] == 100 and not info["clamped"]
    assert fits[0].shape == (16, 39) and np.array_equal(fits[0], fits[1])
    ok, bad = units_shard(tmp_path / "ssl.parquet", tmp_path / "c1.npy", cfg["ssl"], cfg["kmeans"],
                          tmp_path / "units.parquet", tmp_path / "units.rej.parquet", progress=False, fail_fast=False)
    assert (ok, bad) == (6, 0)
    store = Store(tmp_path / "units.parquet", expect_stage="units")
    for i, n in enumerate(store.df["n_frames"]):
        u = store.array("units", i)
        assert u.shape == (2 * n,) and u.dtype == np.int16 and 0 <= u.min() and u.max() < 16


def test_kmeans_clamps_k_on_tiny_data_and_says_so():
    x = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    said = []
    centroids, objective, k = fit_kmeans(x, 200, seed=3, niter=10, log=said.append, init="kmeans++")
    assert k == 30 and centroids.shape == (30, 4) and objective >= 0
    assert len(said) == 1 and "clamping k to 30" in said[0]
    a, _, _ = fit_kmeans(x, 5, seed=3, niter=10, log=said.append, init="kmeans++")
    b, _, _ = fit_kmeans(x, 5, seed=3, niter=10, log=said.append, init="kmeans++")
    assert np.array_equal(a, b)


def test_kmeans_centroids_do_not_depend_on_faiss_threads():
    """With faiss's own threading, 1 and 2 threads gave different centroids on these frames after
    20 iterations (rounding differences a point's nearest centroid amplified)."""
    import faiss

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((52000, 39)) * rng.uniform(0.5, 3, 39) + rng.integers(0, 5, (52000, 1))).astype(np.float32)
    before = faiss.omp_get_max_threads()
    fits = []
    try:
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            fits.append(fit_kmeans(x, 200, seed=1234, niter=20, init="kmeans++")[0])
            assert faiss.omp_get_max_threads() == threads  # given back as it was
    finally:
        faiss.omp_set_num_threads(before)
    assert np.array_equal(fits[0], fits[1])


@pytest.fixture
def tiny_hubert(tmp_path):
    """A randomly initialised HuBERT with tiny sizes, saved like a real checkpoint."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True,
    )
    path = tmp_path / "tiny-hubert"
    HubertModel(config).save_pretrained(path)
    return path


def test_tiny_hubert_gives_the_configured_layer_at_50_hz(tmp_path, tiny_hubert):
    from transformers import HubertModel

    utts = {"long": harmonic(140, 23), "short": harmonic(210, 9), "mid": harmonic(180, 16)}
    write_audio_store(tmp_path / "audio.parquet", utts)
    ssl_cfg = validate_config({"ssl": {"source": "hubert", "model": str(tiny_hubert), "layer": 2, "device": "cpu"}})["ssl"]
    ok, bad = ssl_shard(tmp_path / "audio.parquet", ssl_cfg, tmp_path / "ssl.parquet", tmp_path / "rej.parquet",
                        progress=False, fail_fast=False)
    assert (ok, bad) == (3, 0)
    store = Store(tmp_path / "ssl.parquet", expect_stage="ssl")
    assert store.meta.extra["layer"] == 2 and store.meta.extra["dim"] == 32
    # reference: the plain model on each utterance alone (the stage batched all three together)
    model = HubertModel.from_pretrained(tiny_hubert).eval()
    for i, utt in enumerate(store.utts):
        x = torch.from_numpy(utts[utt].copy())
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        with torch.no_grad():
            ref = model(x[None], output_hidden_states=True).hidden_states[2][0].numpy()
        n = len(utts[utt]) // 640
        assert ref.shape[0] == 2 * n - 1  # HuBERT's conv front-end: one frame short of 50 Hz x T
        feats = store.array("features", i)
        assert feats.shape == (2 * n, 32)
        assert np.allclose(feats[:-1], ref, atol=1e-4) and np.array_equal(feats[-1], feats[-2])  # edge-fitted


def test_hubert_layer_beyond_the_model_is_one_line(tiny_hubert):
    with pytest.raises(StageError, match="ssl.layer 9: .* hidden states 0..3"):
        load_hubert(str(tiny_hubert), layer=9, device="cpu", half=True)


def test_missing_model_message_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in (str(tmp_path / "no-such-model"), "facebook/hubert-large-ll60k"):
        with pytest.raises(StageError) as info:
            load_hubert(name, layer=12, device="cpu", half=True)
        msg = str(info.value)
        assert "\n" not in msg and "save_pretrained" in msg and "HF_HUB_OFFLINE" in msg and name in msg
    # and through the command: one line on stderr, no traceback
    write_audio_store(tmp_path / "audio.parquet", {"u": harmonic(150, 5)})
    rc = main(["ssl-features", "--params", json.dumps({"ssl": {"source": "hubert", "model": "facebook/hubert-large-ll60k"}}),
               "--audio", str(tmp_path / "audio.parquet"), "--out", str(tmp_path / "s.parquet"),
               "--rejected", str(tmp_path / "r.parquet"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
