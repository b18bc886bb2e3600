"""Vocoders: HiFi-GAN shapes, Griffin-Lim reconstruction, the train-vocoder and vocode stages."""

import csv
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch
from needs import have_espeak
from test_stage_train import store_args

from lipspeech.core.config import ConfigError, default_section, validate_config
from lipspeech.core.store import Store, StoreMeta, write_store
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.vocoder import Discriminators, Generator, GriffinLim, hifigan_config, load_hifigan, load_vocoder
from lipspeech.vocoder.griffinlim import spectral_convergence
from lipspeech.vocoder.stage import run_train_vocoder, run_vocode
from lipspeech.vocoder.train import GanTrainer, VocoderItem, load_items, make_batch, train_vocoder, vocoder_train_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

AC = AudioConfig.default()
GL = default_section("vocoder")["griffin_lim"]  # n_iter, momentum, nnls_iter, seed
SILENCE = float(np.log(AC.log_floor))



def tone(n_samples: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: 20 harmonics with vibrato and a syllable-rate envelope."""
    t = np.arange(n_samples) / 16000
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(f0 + 15 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 21))
    env = 0.2 + 0.8 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return (0.3 * x * env / np.abs(x).max()).astype(np.float32)


# --------------------------------------------------------------------------- HiFi-GAN modules
@pytest.mark.parametrize("preset", ["tiny", "v2", "v1"])
def test_generator_gives_160_samples_per_frame(preset):
    gen = Generator(hifigan_config(preset), 80).eval()
    for t in (1, 7) if preset == "tiny" else (1, 3):
        with torch.no_grad():
            y = gen(torch.randn(2, 80, t))
        assert y.shape == (2, 1, 160 * t)
        assert y.abs().max() <= 1.0
    # folding weight norm in changes nothing
    x = torch.randn(1, 80, 2)
    with torch.no_grad():
        before = gen(x)
        after = gen.remove_weight_norm()(x)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)


def test_preset_sizes_and_bad_upsampling():
    n = {p: sum(x.numel() for x in Generator(hifigan_config(p), 80).parameters()) for p in ("tiny", "v2", "v1")}
    assert n["tiny"] < 1e5 < n["v2"] < 1.5e6 < 1e7 < n["v1"] < 1.5e7  # V1 ~13 M, V2 ~0.9 M (the paper's sizes)
    with pytest.raises(ConfigError, match="multiply to 128"):
        hifigan_config("v1", {"upsample_rates": [8, 4, 4], "upsample_kernels": [16, 8, 8]})
    with pytest.raises(ConfigError, match="upsample_kernels"):
        hifigan_config("v1", {"upsample_kernels": [10, 8, 8, 4]})  # (10 - 5) is odd: length would be off by one
    with pytest.raises(ConfigError, match="unknown"):
        hifigan_config("v3")


def test_discriminators_scores_and_feature_maps():
    d = Discriminators(hifigan_config("tiny"))
    scores, features = d(torch.randn(3, 1, 1280))
    assert len(scores) == len(features) == 5 + 3  # five periods, three scales
    assert all(s.shape[0] == 3 and s.dim() == 2 for s in scores)
    assert [len(f) for f in features] == [6] * 5 + [8] * 3
    # period p folds the audio into p columns
    assert features[0][0].shape[-1] == 2 and features[4][0].shape[-1] == 11


# --------------------------------------------------------------------------- Griffin-Lim
def test_stft_pair_is_the_mel_stages_and_inverts_exactly():
    gl = GriffinLim(AC, **GL)
    x = torch.from_numpy(tone(160 * 50))[None]
    spec = gl.stft(x)
    assert spec.shape == (1, 50, 513)
    torch.testing.assert_close(spec.abs()[0], MelSpectrogram(AC).magnitude(x[0]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gl.istft(spec), x, atol=1e-5, rtol=0)


def test_nnls_mel_inversion_is_non_negative_and_fits_better_than_pinv():
    mel = MelSpectrogram(AC)
    x = torch.from_numpy(tone(160 * 60))
    log_mel = mel(x)[None]
    residual = {}
    for iters in (0, 32):
        s = GriffinLim(AC, **{**GL, "nnls_iter": iters}).mel_to_magnitude(log_mel)
        assert s.shape == (1, 60, 513) and (s >= 0).all()
        residual[iters] = spectral_convergence(torch.exp(log_mel), mel.linear_mel(s))
    # measured: 0.024 (clipped pseudo-inverse) -> 0.0027 (32 NNLS updates)
    assert residual[32] < 0.01 < residual[0]


def _speech_or_tone() -> list[tuple[str, np.ndarray]]:
    signals = [("tone", tone(160 * 120))]
    if have_espeak():
        import librosa

        from lipspeech.data.synth.speech import synthesize

        s = synthesize("bin blue at f two now".split(), "en-us", 50, 50, 175)
        a = librosa.resample(s.audio.astype(np.float32), orig_sr=s.sample_rate, target_sr=16000)
        a = a[: len(a) // 160 * 160]
        signals.append(("espeak", (0.5 * a / np.abs(a).max()).astype(np.float32)))
    return signals


def test_griffin_lim_reconstructs_real_signals():
    mel = MelSpectrogram(AC)
    gl = GriffinLim(AC, n_iter=32, momentum=0.99, nnls_iter=32, seed=3)
    for name, audio in _speech_or_tone():
        x = torch.from_numpy(audio)[None]
        target = gl.stft(x).abs()
        # phase retrieval alone, from the true magnitude (32 iterations): measured SC 0.07 (tone), 0.06 (espeak)
        y = gl.griffin_lim(target)
        assert spectral_convergence(target, gl.stft(y).abs()) < 0.1, name
        # the whole fallback from the log-mel: measured mel SC 0.07 (tone), 0.065 (espeak);
        # linear-magnitude SC 0.12 (tone), 0.21 (espeak: harmonics finer than the mel bands are lost)
        log_mel = mel(x)
        y = gl(log_mel)
        assert y.shape == x.shape and y.abs().max() <= 1
        assert spectral_convergence(torch.exp(log_mel), torch.exp(mel(y))) < 0.1, name
        assert spectral_convergence(target, gl.stft(y).abs()) < 0.3, name
        # a random phase, for scale: far off
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * x.std()
        assert spectral_convergence(target, gl.stft(noise).abs()) > 0.5


def test_griffin_lim_is_deterministic_for_a_seed():
    log_mel = MelSpectrogram(AC)(torch.from_numpy(tone(160 * 40)))[None]
    a = GriffinLim(AC, **{**GL, "n_iter": 4, "seed": 3})(log_mel)
    assert a.shape == (1, 160 * 40)
    assert torch.equal(a, GriffinLim(AC, **{**GL, "n_iter": 4, "seed": 3})(log_mel))
    assert not torch.equal(a, GriffinLim(AC, **{**GL, "n_iter": 4, "seed": 4})(log_mel))


def test_load_vocoder_griffin_lim_lengths_and_bad_input():
    cfg = validate_config({"vocoder": {"griffin_lim": {"n_iter": 4}}})["vocoder"]
    voc = load_vocoder(cfg, AC, "cpu")
    mels = [MelSpectrogram(AC)(torch.from_numpy(tone(160 * t))).numpy() for t in (8, 21)]
    out = voc.batch(mels)
    assert [a.shape for a in out] == [(8 * 160,), (21 * 160,)] and out[0].dtype == np.float32
    np.testing.assert_array_equal(out[1], voc(mels[1]))
    with pytest.raises(ValueError, match="NaN"):
        voc(np.full((4, 80), np.nan, np.float32))
    with pytest.raises(ValueError, match="expected"):
        voc(np.zeros((4, 40), np.float32))
    with pytest.raises(ConfigError, match="vocoder checkpoint"):
        load_vocoder({**cfg, "kind": "hifigan"}, AC, "cpu", checkpoint="/nonexistent/best.pt")


# --------------------------------------------------------------------------- training
def test_gan_step_overfits_a_fixed_batch():
    torch.manual_seed(0)
    ms = MelSpectrogram(AC)
    audio = [tone(160 * 24, f0, i) for i, f0 in enumerate((110, 190))]
    items = [VocoderItem(f"u{i}", a, ms(torch.from_numpy(a)).numpy()) for i, a in enumerate(audio)]
    cfg = vocoder_train_config({"device": "cpu", "lr": 2e-3})
    gan = GanTrainer(hifigan_config("tiny"), AC, cfg, torch.device("cpu"))
    mel, audio = make_batch(items, [0, 1], 8, 0, 0, 0, SILENCE)
    assert mel.shape == (2, 80, 8) and audio.shape == (2, 1, 1280)
    losses = [gan.train_step(mel, audio)["mel_l1"] for _ in range(15)]
    # measured: 5.2 -> about 2.9 after 15 steps
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), np.round(losses, 2)
    assert all(b <= a + 0.3 for a, b in zip(losses, losses[1:])), np.round(losses, 2)  # no blow-up on the way


T = 12  # video frames per fake utterance
UTTS = {"a_1": ("train", 0, 110), "a_2": ("train", 1, 150), "b_1": ("train", 0, 210), "b_2": ("train", 1, 95),
        "b_3": ("train", 0, 130),  # left out of the mel store: skipped
        "a_v": ("val", 1, 170), "a_t": ("test", 0, 120), "b_t": ("test", 1, 200), "c_t": ("test", 1, 150)}
NO_MEL = ("b_3", "c_t")


def fake_audio_results(root):
    """manifest + audio/ + mel/ stores (2 shards) of harmonic tones."""
    ms = MelSpectrogram(AC)
    utts = sorted(UTTS)
    write_store(root / "manifest.parquet", StoreMeta("manifest", "m"), utts, {
        "speaker": pa.array([u[0] for u in utts]), "split": pa.array([UTTS[u][0] for u in utts]),
        "shard": pa.array([UTTS[u][1] for u in utts], type=pa.int32())})
    for shard in (0, 1):
        names = [u for u in utts if UTTS[u][1] == shard]
        audio = {u: tone(T * 640, UTTS[u][2], len(u)) for u in names}
        cols = lambda keep: {"n_frames": pa.array([T] * len(keep), type=pa.int32()),  # noqa: E731
                             "duration": pa.array([T / 25] * len(keep), type=pa.float64())}
        write_store(root / "audio" / f"{shard:03d}.parquet", StoreMeta("decode", "dec"), names, cols(names),
                    {"audio": [audio[u] for u in names]})
        keep = [u for u in names if u not in NO_MEL]
        write_store(root / "mel" / f"{shard:03d}.parquet", StoreMeta("mel", "mel", extra={"audio": AC.as_dict()}),
                    keep, cols(keep), {"mel": [ms(torch.from_numpy(audio[u])).numpy() for u in keep]})
    return root


VTRAIN = {"device": "cpu", "max_steps": 4, "val_every": 2, "batch_size": 2, "segment_frames": 16, "log_every": 1,
          "tensorboard": False, "lr": 1e-3}


def vsection(**train):
    return validate_config({"vocoder": {"preset": "tiny", "train": {**VTRAIN, **train}}})["vocoder"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The train-vocoder stage on the fake store (4 steps of the tiny preset)."""
    results = fake_audio_results(tmp_path_factory.mktemp("voc") / "results" / "fake")
    run_dir = results / "vocoder"
    summary = run_train_vocoder(results, vsection(), validate_config({})["mel"], run_dir, threads=1, progress=False)
    return results, run_dir, summary


def test_train_vocoder_stage_writes_checkpoints_and_logs(trained, capsys):
    results, run_dir, summary = trained
    assert summary["steps"] == 4 and summary["train_utterances"] == 4 and summary["val_utterances"] == 1
    ckpt = run_dir / "ckpt"
    assert (ckpt / "best.pt").exists() and (ckpt / "last.pt").exists() and (ckpt / "best.kept.pt").exists()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["train"]["skipped"] == {"not in mel": 1}
    assert json.loads((run_dir / "config.json").read_text())["generator"]["upsample_rates"] == [5, 4, 4, 2]
    with open(run_dir / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows if r["split"] == "train"] == ["1", "2", "3", "4"]
    assert [r["step"] for r in rows if r["split"] == "val"] == ["2", "4"]
    assert all(np.isfinite(float(r["mel_l1"])) for r in rows)

    # Snakemake deletes the declared best.pt before rerunning a job: it comes back, nothing retrains
    (ckpt / "best.pt").unlink()
    again = run_train_vocoder(results, vsection(), validate_config({})["mel"], run_dir, threads=1, progress=False)
    assert again["steps"] == 4 and (ckpt / "best.pt").exists()
    assert "resuming from step 4" in capsys.readouterr().out


def test_checkpoint_round_trip_gives_the_trained_generator(trained):
    _, run_dir, _ = trained
    from lipspeech.training.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "ckpt" / "best.pt")
    gan = GanTrainer(state["generator_cfg"], AC, state["train_cfg"], torch.device("cpu"))
    gan.load(state)
    voc = load_hifigan(run_dir / "ckpt" / "best.pt", "cpu", AC)
    assert voc.describe()["preset"] == "tiny" and voc.describe()["step"] == state["best"]["step"]
    mel = MelSpectrogram(AC)(torch.from_numpy(tone(160 * 30))).numpy()
    np.testing.assert_allclose(voc(mel), gan.generate(mel).numpy(), atol=1e-5)
    # batched: exact lengths, and the longest (unpadded) utterance is bit-for-bit its single output
    out = voc.batch([mel[:9], mel, mel[:20]])
    assert [len(a) for a in out] == [9 * 160, 30 * 160, 20 * 160]
    np.testing.assert_allclose(out[1], voc(mel), atol=1e-6)
    with pytest.raises(ConfigError, match="mel.n_mels differs"):
        load_hifigan(run_dir / "ckpt" / "best.pt", "cpu", replace(AC, n_mels=40))


def test_resume_continues_the_interrupted_run_exactly(trained, tmp_path):
    results, _, _ = trained
    train_items, _ = load_items(results, "train")
    val_items, _ = load_items(results, "val")
    cfg = vocoder_train_config(VTRAIN)
    gen = hifigan_config("tiny")
    whole = train_vocoder(gen, AC, cfg, train_items, val_items, tmp_path / "whole", progress=False)
    train_vocoder(gen, AC, cfg, train_items, val_items, tmp_path / "cut", stop_at_step=3, progress=False)
    cut = train_vocoder(gen, AC, cfg, train_items, val_items, tmp_path / "cut", progress=False)
    assert whole.step == cut.step == 4
    a = torch.load(whole.last_checkpoint, weights_only=True)
    b = torch.load(cut.last_checkpoint, weights_only=True)
    for key in ("generator", "discriminator"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    assert a["best"] == b["best"]
    with open(tmp_path / "whole" / "losses.csv") as f1, open(tmp_path / "cut" / "losses.csv") as f2:
        assert f1.read() == f2.read()


# --------------------------------------------------------------------------- vocode
def test_vocode_stage_store_format(trained, tmp_path):
    results, run_dir, _ = trained
    section = validate_config({"vocoder": {"griffin_lim": {"n_iter": 4}}})["vocoder"]
    mel_section = validate_config({})["mel"]
    gl = load_vocoder(section, AC, "cpu")
    out, rej = tmp_path / "gt" / "audio.parquet", tmp_path / "gt" / "audio.rejected.parquet"
    assert run_vocode("gt_vocoded", gl, section, mel_section, out, rej, corpus=results, progress=False) == (2, 1)
    store = Store(out, expect_stage="vocode")
    assert store.utts == ["a_t", "b_t"]
    assert store.table.schema.field("n_frames").type == pa.int32()
    assert store.table.schema.field("duration").type == pa.float64()
    assert list(store.df["duration"]) == [T / 25] * 2
    for i in range(2):
        a = store.array("audio", i)
        assert a.dtype == np.float32 and a.shape == (T * 640,) and np.abs(a).max() > 0.01
    assert store.meta.extra["system"] == "gt_vocoded" and store.meta.extra["vocoder"] == "griffin_lim"
    import pyarrow.parquet as pq

    # the rejected table names the utterance without a mel
    assert pq.read_table(rej).to_pylist() == [{"utt": "c_t", "stage": "vocode",
                                               "reason": "no mel in the mel stage's store (rejected earlier)"}]

    # an experiment's synthesized mels, one of them broken, through the trained HiFi-GAN
    mels = tmp_path / "eval" / "ltbs" / "mels.parquet"
    good = np.random.default_rng(0).standard_normal((4 * T, 80)).astype(np.float32) - 5
    write_store(mels, StoreMeta("synthesize", "s"), ["x1", "x2", "x3"],
                {"n_frames": pa.array([T, T, 5], type=pa.int32()), "duration": pa.array([T / 25, T / 25, 0.2])},
                {"coarse": [good, good, good[:20]], "post": [good, np.full_like(good, np.nan), good[:20]]})
    hifi = load_vocoder({**section, "kind": "hifigan"}, AC, "cpu", checkpoint=run_dir / "ckpt" / "best.pt")
    out = tmp_path / "eval" / "ltbs" / "audio.parquet"
    assert run_vocode("ltbs", hifi, section, mel_section, out, rej, mels=mels, progress=False) == (2, 1)
    store = Store(out, expect_stage="vocode")
    assert store.utts == ["x1", "x3"] and [len(a) for a in store.arrays("audio")] == [T * 640, 5 * 640]
    assert store.meta.extra["vocoder"] == "hifigan" and store.meta.extra["vocoder_detail"]["preset"] == "tiny"
    assert "NaN" in pq.read_table(rej).column("reason")[0].as_py()


def test_reserved_system_names_are_refused():
    for name in ("ground_truth", "gt_vocoded"):
        with pytest.raises(ConfigError, match=f"name '{name}' is reserved"):
            validate_config({"experiments": [{"name": name}]})
    with pytest.raises(ConfigError, match="vocoder.train.val_every"):
        validate_config({"vocoder": {"train": {"max_steps": 10, "val_every": 20}}})


def test_cli_train_vocoder_then_vocode(trained, tmp_path, capsys):
    from lipspeech.cli import main

    results, _, _ = trained
    params = {"vocoder": {"kind": "hifigan", "preset": "tiny", "griffin_lim": {"n_iter": 2},
                          "train": {**VTRAIN, "max_steps": 2, "val_every": 2}}}
    run_dir = tmp_path / "vocoder"
    assert main(["train-vocoder", "--params", json.dumps(params), *store_args(results, "audio", "mel"),
                 "--run-dir", str(run_dir), "--threads", "1", "--no-progress"]) == 0
    assert "train-vocoder (tiny): 2 steps" in capsys.readouterr().out
    out = tmp_path / "eval" / "gt_vocoded" / "audio.parquet"
    args = ["vocode", "--params", json.dumps(params), "--system", "gt_vocoded", *store_args(results, "mel"),
            "--out", str(out), "--rejected", str(out.with_suffix(".rejected.parquet")), "--threads", "1",
            "--no-progress", "--device", "cpu"]
    assert main(args + ["--checkpoint", str(run_dir / "ckpt" / "best.pt")]) == 0
    assert "vocode gt_vocoded (hifigan): 2 utterances, 1 rejected" in capsys.readouterr().out
    assert Store(out, expect_stage="vocode").meta.extra["vocoder_detail"]["step"] == 2
    # no trained vocoder where the stage is told to look: one line naming what to do
    assert main(args + ["--checkpoint", str(tmp_path / "none" / "best.pt")]) == 2
    assert "train one with lipspeech train-vocoder" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["tiny", "v2"])
def test_streamed_hifigan_equals_the_whole_utterance(preset):
    from lipspeech.vocoder.api import HifiGanVocoder
    from lipspeech.vocoder.streaming import HifiGanStream, receptive_frames

    torch.manual_seed(0)
    gen = Generator(hifigan_config(preset), 80)
    for p in gen.parameters():  # weights large enough that every layer matters
        p.data.normal_(0, 0.2)
    vocoder = HifiGanVocoder(gen.remove_weight_norm(), AC, torch.device("cpu"))
    mel = np.random.default_rng(0).normal(-4, 2, (57, AC.n_mels)).astype(np.float32)
    whole = vocoder(mel)
    before, after = receptive_frames(gen)
    # the bound is exact: the audio of frame 30 has a gradient from frames 30 - before .. 30 + after
    # (float64: the far frames' share is tiny but not zero)
    x = torch.tensor(mel.T[None], dtype=torch.float64, requires_grad=True)
    audio = gen.double()(x)[0, 0]
    audio[30 * AC.hop_length:31 * AC.hop_length].sum().backward()
    reached = np.flatnonzero(x.grad[0].abs().sum(0).numpy())
    gen.float()
    assert (reached.min(), reached.max()) == (30 - before, 30 + after)
    for sizes in ([1] * 57, [5, 2, 13, 1, 30, 6], [57]):
        stream = HifiGanStream(vocoder)
        parts, at = [], 0
        for n in sizes:
            part = stream.push(mel[at:at + n])
            at += n
            assert (at - len(np.concatenate(parts + [part])) // AC.hop_length) <= stream.lookahead
            parts.append(part)
        parts.append(stream.flush())
        audio = np.concatenate(parts)
        assert audio.shape == whole.shape
        np.testing.assert_allclose(audio, whole, atol=2e-5)
    assert (stream.context, stream.lookahead) == (after, before) and stream.latency_ms == 10.0 * before
    with pytest.raises(ValueError, match="shape"):
        HifiGanStream(vocoder).push(mel[:, :40])


def _voiced_mel(seconds: float = 1.5) -> np.ndarray:
    """The log-mel of a harmonic tone with vibrato and a slow loudness swell."""
    sr = AC.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 3 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.3 + 0.2 * np.sin(2 * np.pi * 1.3 * t))
    x = torch.from_numpy((0.3 * x / np.abs(x).max()).astype(np.float32))[None]
    return MelSpectrogram(AC)(x)[0].numpy()


def test_windowed_griffin_lim_does_not_depend_on_chunking_and_nears_the_offline_one():
    from lipspeech.vocoder.api import GriffinLimVocoder
    from lipspeech.vocoder.streaming import GriffinLimStream

    mel = _voiced_mel()
    vocoder = GriffinLimVocoder(AC, torch.device("cpu"), **GL)
    target = vocoder.module.mel_to_magnitude(torch.from_numpy(mel)[None])

    def convergence(audio: np.ndarray) -> float:
        return spectral_convergence(target, vocoder.module.stft(torch.from_numpy(audio)[None]).abs())

    outputs = []
    for sizes in ([1] * len(mel), [7, 3, 50, 1, 89], [len(mel)]):
        stream = GriffinLimStream(vocoder, lookahead=3, n_iter=8, step=4)
        parts, at = [], 0
        for n in sizes:
            parts.append(stream.push(mel[at:at + n]))
            at += n
            written = sum(len(p) for p in parts)
            assert written <= at * AC.hop_length  # never audio of frames not received
        parts.append(stream.flush())
        outputs.append(np.concatenate(parts))
    assert outputs[0].shape == (len(mel) * AC.hop_length,)
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])
    # the same magnitudes, nearly as consistent a phase as 64 offline iterations; random phases are far off
    offline, streamed = convergence(vocoder(mel)), convergence(outputs[0])
    rng = torch.Generator().manual_seed(0)
    random_phase = torch.polar(torch.ones_like(target), torch.rand(target.shape, generator=rng) * 2 * torch.pi)
    unaligned = convergence(vocoder.module.istft(target * random_phase)[0].numpy())
    assert offline < streamed < 1.8 * offline and streamed < unaligned / 3, (offline, streamed, unaligned)
    assert stream.latency_ms == pytest.approx(1000 * (3 + 3) * 160 / 16000 + 25.0)
