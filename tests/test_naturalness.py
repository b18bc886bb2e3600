"""DNSMOS, GE2E speaker similarity, the bootstrap intervals and the metric families, on real
(espeak-ng) speech: each metric must move the right way."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from needs import needs_espeak

from lipspeech.core.config import ConfigError, default_section, validate_config
from lipspeech.core.settings import EvaluateConfig
from lipspeech.evaluation import bootstrap
from lipspeech.evaluation.compare import compare_systems
from lipspeech.evaluation.families import FIGURES, check_families, family_problems
from lipspeech.evaluation.pool import _score_one as _REAL_SCORE_ONE
from lipspeech.evaluation.text import corpus_rates, word_errors

REPO = Path(__file__).resolve().parents[1]


def say(text: str, voice: str, pitch: int, pitch_range: int, rate: int = 160) -> np.ndarray:
    from lipspeech.data.synth.speech import synthesize
    from lipspeech.evaluation.asr import resample

    syn = synthesize(text.split(), voice, pitch, pitch_range, rate)
    x = resample(syn.audio.astype(np.float32) / 32768, syn.sample_rate, 16_000)
    return np.concatenate([np.zeros(4800, np.float32), x, np.zeros(4800, np.float32)])


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    active = x[np.abs(x) > 1e-4]
    n *= np.sqrt(np.mean(active.astype(np.float64) ** 2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return np.clip(x + n, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------- DNSMOS
@pytest.fixture(scope="module")
def dnsmos():
    from lipspeech.evaluation.dnsmos import DNSMOS

    return DNSMOS(threads=1)


def test_dnsmos_windows_follow_the_reference_input_handling():
    from lipspeech.evaluation.dnsmos import SEGMENT_SAMPLES, windows

    # 2.064 s is tiled by doubling to 16.512 s: int(16 - 9.01) + 1 = 7 windows, starting at whole seconds
    x = np.arange(33024, dtype=np.float32) / 33024
    w = windows(x)
    assert w.shape == (7, SEGMENT_SAMPLES)
    tiled = np.concatenate([x] * 8)
    assert np.array_equal(w[3], tiled[3 * 16000 : 3 * 16000 + SEGMENT_SAMPLES])
    # a 3 s GRID-like utterance: 12 s, 3 windows; 20 s: 11 windows; values are clipped to [-1, 1]
    assert windows(np.zeros(48000)).shape[0] == 3 and windows(np.zeros(320000)).shape[0] == 11
    assert windows(np.full(48000, 3.0)).max() == 1.0
    with pytest.raises(ValueError):
        windows(np.zeros(0))


@needs_espeak
def test_dnsmos_ranks_clean_above_noisy_and_vocoded(speech, dnsmos):
    import torch

    from lipspeech.features.audio import AudioConfig, MelSpectrogram
    from lipspeech.vocoder.api import GriffinLimVocoder

    x = speech[0]
    clean, snr10, snr0 = dnsmos(x), dnsmos(with_noise(x, 10)), dnsmos(with_noise(x, 0))
    assert set(clean) == {"dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    # measured on the four test voices: OVRL 2.4-3.2 clean, 1.5-1.9 at 10 dB, 1.2-1.4 at 0 dB
    assert clean["dnsmos_ovrl"] > snr10["dnsmos_ovrl"] + 0.5 and snr10["dnsmos_ovrl"] > snr0["dnsmos_ovrl"]
    assert clean["dnsmos_p808"] > snr10["dnsmos_p808"] > snr0["dnsmos_p808"]
    assert clean["dnsmos_bak"] > snr10["dnsmos_bak"] > snr0["dnsmos_bak"]
    # the ground truth's own mel through Griffin-Lim (phase noise, smearing) scores below the ground truth
    with torch.inference_mode():
        mel = MelSpectrogram(AudioConfig.default())(torch.from_numpy(x)).numpy()
    settings = {**default_section("vocoder")["griffin_lim"], "n_iter": 32}
    gl = GriffinLimVocoder(AudioConfig.default(), torch.device("cpu"), **settings)(mel)[: len(x)]
    vocoded = dnsmos(gl)
    assert vocoded["dnsmos_ovrl"] < clean["dnsmos_ovrl"] and vocoded["dnsmos_p808"] < clean["dnsmos_p808"]
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *snr0.values(), *vocoded.values()))
    assert dnsmos(x) == clean  # deterministic


@needs_espeak
def test_dnsmos_equals_the_reference_implementation(speech, dnsmos):
    """The speechmos package's own DNSMOS code, where it imports, gives the same numbers."""
    try:
        from speechmos import dnsmos as reference
    except Exception as exc:  # its import chain (requests, librosa) is not ours to require
        pytest.skip(f"speechmos.dnsmos does not import here: {exc}")
    x = speech[2]
    ref = reference.run(x, 16000)
    mine = dnsmos(x)
    for ours, theirs in (("dnsmos_p808", "p808_mos"), ("dnsmos_sig", "sig_mos"), ("dnsmos_bak", "bak_mos"),
                         ("dnsmos_ovrl", "ovrl_mos")):
        assert mine[ours] == pytest.approx(float(ref[theirs]), abs=1e-4)


# --------------------------------------------------------------------------- speaker similarity
@pytest.fixture(scope="module")
def speaker():
    from lipspeech.evaluation.speaker import SpeakerScorer

    return SpeakerScorer()


def test_ge2e_weights_load_without_importing_resemblyzer(speaker):
    import torch

    from lipspeech.evaluation.speaker import GE2EEncoder, partial_starts, weights_path

    assert weights_path().name == "pretrained.pt" and "resemblyzer" not in sys.modules
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    loaded = speaker.encoder.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    emb = GE2EEncoder()(torch.rand(3, 160, 40))
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=1), torch.ones(3)) and (emb >= 0).all()
    # partials: one for a short signal, 1.3 per second otherwise, the last kept at >= 75 % coverage
    assert partial_starts(8000) == [0] and partial_starts(48000) == [0, 77, 154]
    assert partial_starts(160 * 160 + 160 * 77) == [0, 77]


def test_speech_windows_find_the_sound_and_trimming_keeps_only_them():
    from lipspeech.evaluation.speaker import VAD_DILATE, VAD_WINDOW, speech_windows, trim_long_silences

    # 1 s of silence, 1 s of a 200 Hz tone, 1 s of silence at 16 kHz: the tone's 30 ms windows and
    # VAD_DILATE windows either side of them are speech, the rest of the silence is not
    t = np.arange(16000) / 16000
    x = np.concatenate([np.zeros(16000), 0.5 * np.sin(2 * np.pi * 200 * t), np.zeros(16000)]).astype(np.float32)
    keep = speech_windows(x)
    assert keep.shape == (x.size // VAD_WINDOW,)
    idx = np.flatnonzero(keep)
    tone = (16000 // VAD_WINDOW, 32000 // VAD_WINDOW)  # the windows that overlap the tone
    assert abs(idx[0] - (tone[0] - VAD_DILATE)) <= 1 and abs(idx[-1] - (tone[1] + VAD_DILATE)) <= 1
    assert np.all(np.diff(idx) == 1)  # one span
    kept = trim_long_silences(x)
    assert kept.size == keep.sum() * VAD_WINDOW
    assert not speech_windows(np.zeros(16000, np.float32)).any() and trim_long_silences(np.zeros(5, np.float32)).size == 5


@needs_espeak
def test_speaker_similarity_same_voice_above_different_voice(speaker):
    a1 = say("bin blue at f two now", "en-us", 35, 40)
    a2 = say("place red by m five again", "en-us", 35, 40)
    b1 = say("set white with z nine please", "en-us+f2", 65, 60)
    b2 = say("lay green in q seven soon", "en-us+f2", 65, 60)
    e = {k: speaker.embed(v) for k, v in dict(a1=a1, a2=a2, b1=b1, b2=b2).items()}
    sim = speaker.similarity
    assert sim(e["a1"], e["a1"]) == pytest.approx(1.0, abs=1e-6)
    same = min(sim(e["a1"], e["a2"]), sim(e["b1"], e["b2"]))  # measured 0.78, 0.74
    different = max(sim(e["a1"], e["b1"]), sim(e["a1"], e["b2"]), sim(e["a2"], e["b1"]), sim(e["a2"], e["b2"]))
    assert same > different + 0.05  # measured <= 0.63
    # 20 dB quieter is still the same speaker (quiet input is raised to -30 dBFS; measured 0.91)
    assert sim(speaker.embed(0.1 * a1), e["a1"]) > same


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_known_cases():
    rng = np.random.default_rng(0)
    n = 40
    ref_words = np.full(n, 6.0)
    good = {"word_edits": rng.integers(0, 2, n).astype(float), "ref_words": ref_words, "stoi": rng.uniform(0.6, 0.8, n)}
    same = {k: v.copy() for k, v in good.items()}
    worse = {"word_edits": good["word_edits"] + rng.integers(1, 3, n), "ref_words": ref_words,
             "stoi": good["stoi"] - 0.1}
    # corpus-level WER of the figure is summed edits / summed words, as corpus_rates computes it
    refs = ["a b c d e f"] * n
    hyps = [" ".join(["a", "b", "c", "d", "e", "f"][: 6 - int(k)]) for k in good["word_edits"]]
    assert bootstrap.figure(good, "wer") == pytest.approx(corpus_rates(refs, hyps)[0])
    identical = bootstrap.paired_difference(good, same, "wer", 1000, 7)
    assert identical["diff"] == 0 and identical["ci95"] == (0.0, 0.0) and not identical["significant"]
    for metric in ("wer", "stoi"):
        res = bootstrap.paired_difference(good, worse, metric, 1000, 7)
        assert res["significant"] and res["ci95"][0] <= res["diff"] <= res["ci95"][1]
    assert bootstrap.paired_difference(good, worse, "stoi", 1000, 7)["ci95"] == pytest.approx((-0.1, -0.1))
    # a system equal to another up to noise: the interval holds 0
    noisy = {**good, "stoi": good["stoi"] + rng.normal(0, 0.01, n)}
    res = bootstrap.paired_difference(good, noisy, "stoi", 1000, 7)
    assert res["ci95"][0] < 0 < res["ci95"][1] and not res["significant"]
    # per-system interval: deterministic for a seed, around the figure, NaN values left out of the means
    ci = bootstrap.intervals(good, ["wer", "stoi"], 1000, 3)
    assert ci == bootstrap.intervals(good, ["wer", "stoi"], 1000, 3) != bootstrap.intervals(good, ["wer", "stoi"], 1000, 4)
    assert ci["wer"][0] < bootstrap.figure(good, "wer") < ci["wer"][1]
    holes = {**good, "stoi": np.where(np.arange(n) % 2 == 0, good["stoi"], np.nan)}
    assert bootstrap.figure(holes, "stoi") == pytest.approx(np.nanmean(holes["stoi"]))
    assert bootstrap.intervals({"stoi": np.full(3, np.nan)}, ["stoi"], 100, 0) == {"stoi": None}


def test_compare_pairs_utterances_by_id():
    import pandas as pd

    base = pd.DataFrame({"utt": ["a", "b", "c", "d"], "ref": ["x y"] * 4, "wer": [0.0, 0.5, 0.0, 0.5],
                         "dnsmos_p808": [3.0, 3.2, 3.1, 3.3]})
    # the ablation lacks utterance d and lists rows in another order: only a, b, c are compared
    abl = pd.DataFrame({"utt": ["c", "a", "b"], "ref": ["x y"] * 3, "wer": [1.0, 0.5, 0.5],
                        "dnsmos_p808": [2.1, 2.0, 2.2]})
    voc = base.assign(dnsmos_p808=base["dnsmos_p808"] + 0.5)
    out = compare_systems({"full": base, "abl": abl, "gt_vocoded": voc}, ["full", "abl"], "gt_vocoded", 500, 0)
    assert out["baseline"] == "full" and set(out["vs_baseline"]) == {"abl"}
    wer = out["vs_baseline"]["abl"]["wer"]
    assert wer["n"] == 3 and wer["diff"] == pytest.approx((4 / 6) - (1 / 6))  # edits recovered from rate x words
    assert out["vs_baseline"]["abl"]["dnsmos_p808"]["diff"] == pytest.approx(-1.0)
    assert out["gap_to_vocoded"]["full"]["dnsmos_p808"]["diff"] == pytest.approx(-0.5)
    assert out["gap_to_vocoded"]["abl"]["dnsmos_p808"]["n"] == 3
    assert set(out["vs_baseline"]["abl"]) == set(FIGURES)


# --------------------------------------------------------------------------- metric families
def test_metric_families_in_the_config():
    cfg = validate_config({})
    assert cfg["evaluate"]["metrics"] == ["asr", "signal", "dnsmos", "speaker"]
    assert cfg["evaluate"]["bootstrap_resamples"] >= 1000
    with pytest.raises(ConfigError, match="evaluate.metrics"):
        validate_config({"evaluate": {"metrics": ["asr", "mos"]}})
    with pytest.raises(ConfigError, match="evaluate.metrics"):
        validate_config({"evaluate": {"metrics": []}})
    assert family_problems(["asr", "signal", "dnsmos", "speaker"]) == {}


def evaluate_section(metrics: list[str]) -> dict:
    return validate_config({"evaluate": {"metrics": metrics}})["evaluate"]


def test_missing_metric_package_is_one_clear_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("speechmos", "resemblyzer") else real(name, *a))
    problems = family_problems(["asr", "dnsmos", "speaker"])
    assert set(problems) == {"dnsmos", "speaker"}
    assert "pip install speechmos onnxruntime" in problems["dnsmos"]
    assert "pip install --no-deps resemblyzer" in problems["speaker"]
    with pytest.raises(RuntimeError, match=r"config key evaluate.metrics: family dnsmos cannot run: package speechmos"):
        check_families(evaluate_section(["asr", "dnsmos"]))
    check_families(evaluate_section(["asr", "signal"]))  # what is not selected is not needed
    from lipspeech.commands.doctor import check_metric_families

    checks = {c.name: c for c in check_metric_families(EvaluateConfig.from_section(evaluate_section(["dnsmos"])))}
    assert checks["DNSMOS models"].status == "MISSING" and checks["speaker encoder"].status == "--"
    assert "pip install speechmos onnxruntime" in checks["DNSMOS models"].line()


def test_workflow_says_a_missing_metric_package_before_any_job(tmp_path):
    """A speechmos without its models (a stand-in package on PYTHONPATH): snakemake stops at parse time."""
    fake = tmp_path / "site" / "speechmos"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"corpus": {"name": "x"}}))
    snakemake = Path(sys.executable).parent / "snakemake"
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([str(snakemake), "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
                           str(tmp_path / "config.yaml"), "--cores", "1"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key evaluate.metrics: family dnsmos cannot run" in text and "model_v8.onnx" in text, text[-2000:]


# --------------------------------------------------------------------------- the stage
@needs_espeak
def test_evaluate_stage_writes_naturalness_speaker_and_intervals(tmp_path, speech):
    from test_evaluate import _fake_corpus

    from lipspeech.core.store import Store
    from lipspeech.evaluation.stage import COLUMNS, run_evaluate

    res = _fake_corpus(tmp_path, speech)
    cfg = validate_config({"evaluate": {"pesq": False, "bootstrap_resamples": 200}})
    out = {}
    for system, audio in (("ground_truth", None), ("fake_exp", res / "eval" / "fake_exp" / "audio.parquet")):
        folder = res / "eval" / system
        out[system] = run_evaluate(system, res / "manifest.parquet", [res / "audio" / "000.parquet"], audio,
                                   cfg["evaluate"], cfg["prosody"], cfg["mel"], folder / "metrics.parquet",
                                   folder / "summary.json", folder / "metrics.rejected.parquet", progress=False)
        df = Store(folder / "metrics.parquet", expect_stage="evaluate").df
        assert list(df.columns) == ["utt", *COLUMNS]
        out[system + "_df"] = df
    gt, exp = out["ground_truth"], out["fake_exp"]
    gdf, edf = out["ground_truth_df"], out["fake_exp_df"]
    # the ground truth against itself: similarity 1; against a different speaker's ground truth: the floor
    assert np.allclose(gdf["speaker_sim"], 1.0, atol=1e-5)
    assert (gdf["speaker_sim_other"] < 0.95).all() and gt["speaker_sim_other"] < gt["speaker_sim"]
    # the fake system is the ground truth plus white noise (std 0.02): lower DNSMOS, a bit less like its speaker
    both = gdf.set_index("utt").loc[list(edf["utt"])]
    assert (edf["dnsmos_ovrl"].to_numpy() < both["dnsmos_ovrl"].to_numpy()).all()
    assert (edf["dnsmos_bak"].to_numpy() < both["dnsmos_bak"].to_numpy() - 0.5).all()
    assert (edf["speaker_sim"] < 1).all() and (edf["speaker_sim"] > edf["speaker_sim_other"]).all()
    # counts behind WER/CER, summary means and intervals as numbers
    assert (gdf["ref_words"] == 6).all() and gdf["word_edits"].sum() == sum(
        word_errors(r, h).errors for r, h in zip(gdf["ref"], gdf["hyp"]))
    for key in ("dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "speaker_sim", "speaker_sim_other"):
        assert isinstance(gt[key], float) and isinstance(exp[key], float), key
        assert gt[key] == pytest.approx(float(np.mean(gdf[key])))
    lo, hi = gt["ci95"]["dnsmos_ovrl"]
    assert lo <= gt["dnsmos_ovrl"] <= hi and gt["ci95"]["pesq_nb"] is None  # PESQ off: no interval
    assert gt["bootstrap"] == {"resamples": 200, "seed": 1234, "level": 0.95}
    assert gt["metrics"] == ["asr", "signal", "dnsmos", "speaker"]
    assert "dnsmos" in gt["seconds_per_utt"] and "speaker" in gt["seconds_per_utt"]
    assert "ci95" in gt["definitions"] and "200 seeded bootstrap" in gt["definitions"]["ci95"]
    on_disk = json.loads((res / "eval" / "ground_truth" / "summary.json").read_text())
    assert on_disk["ci95"]["wer"] == [pytest.approx(v) for v in gt["ci95"]["wer"]]

    # only some families: the others' columns are empty, nothing of theirs runs
    only = validate_config({"evaluate": {"metrics": ["dnsmos"], "bootstrap_resamples": 100}})
    folder = tmp_path / "only"
    s = run_evaluate("ground_truth", res / "manifest.parquet", [res / "audio" / "000.parquet"], None,
                     only["evaluate"], only["prosody"], only["mel"], folder / "m.parquet", folder / "s.json",
                     folder / "r.parquet", progress=False)
    df = Store(folder / "m.parquet").df
    assert df["dnsmos_ovrl"].notna().all() and df["wer"].isna().all() and df["stoi"].isna().all()
    assert df["speaker_sim"].isna().all() and (df["hyp"] == "").all()
    assert s["wer"] is None and s["stoi"] is None and s["dnsmos_ovrl"] == pytest.approx(gt["dnsmos_ovrl"])
    assert set(s["seconds_per_utt"]) == {"dnsmos"} and not math.isnan(s["dnsmos_p808"])


def _score_one_noting_where(i):
    """The evaluate pool's per-utterance function, noting which process ran it (a file i.pid)."""
    import os

    from lipspeech.evaluation.pool import _FORKED

    (Path(os.environ["LIPSPEECH_TEST_SCORED_IN"]) / f"{i}.{os.getpid()}").touch()
    assert _FORKED, "not a forked worker"
    return _REAL_SCORE_ONE(i)


def _flat(tree, prefix=""):
    """A summary's nested dicts and lists as one flat dict of path -> value (pytest.approx takes no nesting)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {prefix: tree}
    out = {}
    for k, v in items:
        out.update(_flat(v, f"{prefix}/{k}"))
    return out


@needs_espeak
def test_evaluate_in_processes_gives_the_same_table(tmp_path, speech, monkeypatch):
    """threads > 1 scores the utterances in forked processes: the same rows, figures and failure counts
    as one process, and the families' seconds summed over the workers."""
    import os

    import pandas as pd
    from test_evaluate import _fake_corpus

    from lipspeech.core.store import Store
    from lipspeech.evaluation import pool
    from lipspeech.evaluation.stage import run_evaluate

    res = _fake_corpus(tmp_path, speech)
    cfg = validate_config({"evaluate": {"bootstrap_resamples": 200}})
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("LIPSPEECH_TEST_SCORED_IN", str(pids))
    monkeypatch.setattr(pool, "_score_one", _score_one_noting_where)
    out = {}
    for threads in (1, 3):
        folder = tmp_path / f"t{threads}"
        summary = run_evaluate("fake_exp", res / "manifest.parquet", [res / "audio" / "000.parquet"],
                               res / "eval" / "fake_exp" / "audio.parquet", cfg["evaluate"], cfg["prosody"],
                               cfg["mel"], folder / "metrics.parquet", folder / "summary.json",
                               folder / "metrics.rejected.parquet", progress=False, threads=threads)
        out[threads] = (summary, Store(folder / "metrics.parquet").df,
                        pd.read_parquet(folder / "metrics.rejected.parquet"))
    scored = sorted(p.name.split(".") for p in pids.iterdir())
    assert [i for i, _ in scored] == ["0", "1"] and str(os.getpid()) not in {pid for _, pid in scored}
    one, many = out[1], out[3]
    assert len(one[1]) == 2 and list(one[1]["utt"]) == list(many[1]["utt"])
    pd.testing.assert_frame_equal(one[1], many[1])
    pd.testing.assert_frame_equal(one[2], many[2])
    timing = ("seconds_per_utt", "seconds_total")
    # the same figures to float rounding, as the rows above (assert_frame_equal's default): in CI
    # under load, an ESTOI interval once differed in its last bit between the two runs
    a, b = (_flat({k: v for k, v in s.items() if k not in timing}) for s in (one[0], many[0]))
    number = {k for k, v in a.items() if isinstance(v, float)}
    assert {k: v for k, v in a.items() if k not in number} == {k: v for k, v in b.items() if k not in number}
    assert {k: a[k] for k in number} == pytest.approx({k: b[k] for k in number}, rel=1e-12, abs=0, nan_ok=True)
    assert set(one[0]["seconds_per_utt"]) == set(many[0]["seconds_per_utt"])
    assert all(v > 0 for v in many[0]["seconds_per_utt"].values())
