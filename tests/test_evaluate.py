"""The evaluation: text normalisation and WER/CER, slot grammars, pocketsphinx, the signal
metrics and the evaluate stage end to end on a tiny fake corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from needs import SENTENCES, needs_espeak

from lipspeech.core.config import ConfigError, default_section, validate_config
from lipspeech.core.shards import StageError
from lipspeech.core.store import Store, StoreMeta, write_store
from lipspeech.core.timing import SAMPLES_PER_FRAME
from lipspeech.data import gridgrammar as gg
from lipspeech.evaluation.grammar import (
    GrammarError,
    SlotGrammar,
    choose_grammar,
    grammar_from_transcripts,
    random_sentence_wer,
)
from lipspeech.evaluation.text import char_errors, corpus_rates, normalize_text, word_errors

GRID_GRAMMAR = SlotGrammar(tuple(tuple(sorted(gg.VOCAB[s])) for s in gg.SLOTS))


# --------------------------------------------------------------------------- text
def test_normalisation_is_shared_by_ref_and_hyp():
    assert normalize_text("Bin BLUE, at F two -- now!") == "bin blue at f two now"
    assert normalize_text("  set\twhite  with z 9 please. ") == "set white with z nine please"
    assert normalize_text("'Don't' stop_it") == "don't stop it"
    assert normalize_text(None) == "" and normalize_text(float("nan")) == ""
    assert normalize_text("12 3") == "12 three"  # only lone digits are spelt out


def test_known_error_rates():
    ref = "bin blue at f two now"
    assert word_errors(ref, "bin blue at s two now").rate == pytest.approx(1 / 6)  # one substitution
    assert word_errors(ref, "bin blue at f two").rate == pytest.approx(1 / 6)  # one deletion
    assert word_errors(ref, "bin blue at f two now please").rate == pytest.approx(1 / 6)  # one insertion
    assert word_errors(ref, "").rate == 1.0
    assert word_errors(ref, ref).rate == 0.0
    assert char_errors("abc", "abd").rate == pytest.approx(1 / 3)
    assert char_errors("ab c", "ab").rate == pytest.approx(2 / 4)  # the space counts
    assert math.isnan(word_errors("", "anything").rate)
    # corpus level: summed edits over summed reference words, not the mean of the rates
    wer, cer = corpus_rates([ref, "one two three"], ["bin blue at s two now", ""])
    assert wer == pytest.approx((1 + 3) / (6 + 3))
    assert cer == pytest.approx((1 + 13) / (21 + 13))


# --------------------------------------------------------------------------- grammar
def test_grammar_from_a_toy_manifest():
    texts = ["Bin blue at F two now.", "set red with z nine please", "bin green at a zero soon"]
    g = grammar_from_transcripts(texts)
    assert g.slots == (("bin", "set"), ("blue", "green", "red"), ("at", "with"), ("a", "f", "z"),
                       ("nine", "two", "zero"), ("now", "please", "soon"))
    assert g.n_sentences == 2 * 3 * 2 * 3 * 3 * 3
    jsgf = g.jsgf()
    assert "<slot3> = a | f | z ;" in jsgf
    assert "public <sentence> = <slot0> <slot1> <slot2> <slot3> <slot4> <slot5> ;" in jsgf
    assert "public <s>" not in jsgf  # <s> is pocketsphinx's sentence marker
    # auto: GRID sentences -> the slot grammar; anything else -> the language model
    auto, why = choose_grammar("auto", texts)
    assert auto == g and "grid" in why
    none, why = choose_grammar("auto", texts + ["the cat sat on the mat"])
    assert none is None and "1 of 4" in why
    assert choose_grammar("none", texts)[0] is None
    # grid on a fixed-form non-GRID corpus is allowed; mixed lengths are not
    assert choose_grammar("grid", ["turn left now", "go right soon"])[0].slots[0] == ("go", "turn")
    with pytest.raises(GrammarError, match="different word counts"):
        grammar_from_transcripts(["turn left now", "stop"])
    with pytest.raises(GrammarError, match="slot 1"):
        g.without(["bin", "set"])


def test_random_sentence_wer_is_chance_level():
    """A random GRID sentence matches a slot with probability 1/|slot|: expected WER 1 - mean(1/|slot|)."""
    refs = [" ".join(s) for s in gg.sample_sentences(np.random.default_rng(0), 500)]
    expected = 1 - np.mean([1 / len(s) for s in GRID_GRAMMAR.slots])  # 0.81
    got = random_sentence_wer(GRID_GRAMMAR, refs, np.random.default_rng(1), draws=4)
    assert got == pytest.approx(expected, abs=0.02)


# --------------------------------------------------------------------------- ASR
def test_pocketsphinx_dictionary_check():
    from lipspeech.evaluation.asr import PocketSphinxASR

    g = SlotGrammar((("bin", "zqxvbn"), ("blue", "red")))
    asr = PocketSphinxASR(g)
    assert asr.missing_words == ["zqxvbn"]
    assert asr.grammar.slots == (("bin",), ("blue", "red"))
    assert "zqxvbn" in asr.description and "not in the dictionary" in asr.description
    assert asr.oov(["bin blue florbix"]) == ["florbix"]
    # every GRID word is in the bundled dictionary
    assert PocketSphinxASR(GRID_GRAMMAR).missing_words == []


@needs_espeak
def test_pocketsphinx_grid_grammar_recognises_espeak_grid(speech):
    """Measured: 2 word errors in 24 (WER 0.083); reversed speech ~0.9, white noise 1.0 (nothing recognised)."""
    from lipspeech.evaluation.asr import PocketSphinxASR

    asr = PocketSphinxASR(GRID_GRAMMAR)
    hyps = [asr.transcribe(x) for x in speech]
    wer, _ = corpus_rates(SENTENCES, [normalize_text(h) for h in hyps])
    assert wer <= 0.25, hyps
    assert all(len(h.split()) == 6 for h in hyps)  # the grammar only allows whole sentences
    rev_wer, _ = corpus_rates(SENTENCES, [normalize_text(asr.transcribe(x[::-1].copy())) for x in speech])
    noise = [0.1 * np.random.default_rng(i).standard_normal(len(x)).astype(np.float32) for i, x in enumerate(speech)]
    noise_wer, _ = corpus_rates(SENTENCES, [normalize_text(asr.transcribe(x)) for x in noise])
    assert rev_wer >= 0.6 and noise_wer >= 0.9
    assert rev_wer > wer + 0.4
    # one decoder reused: the transcript of an utterance does not depend on what came before
    assert [asr.transcribe(x) for x in reversed(speech)] == hyps[::-1]
    # other sample rates are resampled to 16 kHz
    from lipspeech.evaluation.asr import resample

    assert asr.transcribe(resample(speech[0], 16_000, 22_050), 22_050).split()[:2] == hyps[0].split()[:2]


def test_whisper_without_the_package_says_so():
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("faster-whisper is installed: the missing-package error cannot be checked")
    from lipspeech.evaluation.asr import build_asr

    cfg = {**default_section("evaluate"), "asr": "whisper", "whisper_model": "/nonexistent"}
    with pytest.raises(StageError, match="faster-whisper is not installed"):
        build_asr(cfg, SENTENCES)


# --------------------------------------------------------------------------- signal metrics
@needs_espeak
def test_signal_metrics_identity_delay_noise(speech):
    from lipspeech.evaluation.metrics import SignalScorer

    ev = default_section("evaluate")
    scorer = SignalScorer(default_section("mel"), default_section("prosody"), ev["mcd_order"], ev["pesq"],
                          ev["f0_silence_db"])
    x = speech[0]
    T = len(x) // SAMPLES_PER_FRAME
    ref = scorer.features(x, T)
    same = scorer.score(ref, scorer.features(x.copy(), T))
    assert same["stoi"] == pytest.approx(1.0, abs=1e-6) and same["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert same["pesq_nb"] > 4.4
    assert same["mcd"] == 0.0 and same["vuv_error"] == 0.0 and same["energy_mae"] == 0.0
    assert same["f0_rmse_cents"] == 0.0 and 60 < same["f0_mean"] < 400 and same["f0_std"] > 0
    delayed = np.concatenate([np.zeros(320, np.float32), x[:-320]])  # 20 ms late
    late = scorer.score(ref, scorer.features(delayed, T))
    assert late["stoi"] < 0.9 and late["estoi"] < 0.9 and late["mcd"] > 1.0 and late["vuv_error"] > 0
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    nz = scorer.score(ref, scorer.features(noisy, T))
    assert nz["pesq_nb"] < 2.5 and nz["stoi"] < 0.97 and nz["mcd"] > 1.0 and nz["energy_mae"] > 0
    assert set(scorer.seconds) >= {"f0", "mel_energy", "stoi", "estoi", "pesq_nb", "mcd"}


def test_f0_metrics_ignore_the_pitch_dio_finds_in_near_silence(speech):
    """The speech's own mels through Griffin-Lim: DIO hears ~100 Hz in the frame-rate ripple GL leaves
    at -90 dB between words; with the silence gate the V/UV error and mean F0 stay near the source's."""
    import torch

    from lipspeech.evaluation.metrics import SignalScorer, loud_frames
    from lipspeech.features.audio import AudioConfig, MelSpectrogram
    from lipspeech.vocoder.api import GriffinLimVocoder

    x = speech[1]  # a female voice: its F0 (about 200 Hz) is well clear of the ripple's
    T = len(x) // SAMPLES_PER_FRAME
    with torch.inference_mode():
        mel = MelSpectrogram(AudioConfig.default())(torch.from_numpy(x)).numpy()
    gl = {**default_section("vocoder")["griffin_lim"], "n_iter": 32}
    y = GriffinLimVocoder(AudioConfig.default(), torch.device("cpu"), **gl)(mel)[: len(x)]
    mcd_order, silence_db = default_section("evaluate")["mcd_order"], default_section("evaluate")["f0_silence_db"]
    gated = SignalScorer(default_section("mel"), default_section("prosody"), mcd_order, use_pesq=False,
                         f0_silence_db=silence_db)
    raw = SignalScorer(default_section("mel"), default_section("prosody"), mcd_order, use_pesq=False, f0_silence_db=0)
    ref = gated.features(x, T)
    with_gate, without = gated.score(ref, gated.features(y, T)), raw.score(raw.features(x, T), raw.features(y, T))
    assert with_gate["vuv_error"] < 0.1 and without["vuv_error"] > 0.2  # measured: 0.045 and 0.275
    assert abs(with_gate["f0_mean"] - gated.score(ref, ref)["f0_mean"]) < 5
    assert without["f0_mean"] < with_gate["f0_mean"] - 20  # the spurious ~100 Hz frames pull it down

    assert loud_frames(np.array([1.0, 1e-2, 1e-4, 0.0]), 60).tolist() == [True, True, False, False]
    assert loud_frames(np.zeros(3), 60).tolist() == [False] * 3 and loud_frames(np.zeros(2), 0).all()


def test_metric_edge_cases():
    from lipspeech.evaluation.metrics import (
        cepstrum_matrix,
        f0_moments,
        f0_rmse_cents,
        mel_cepstral_distortion,
        pesq_nb,
        stoi,
        vuv_error,
    )

    # too short for pystoi / silent for PESQ: NaN, not a placeholder number
    short = np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    assert math.isnan(stoi(short, short))
    value, error = pesq_nb(np.zeros(16000, np.float32), np.zeros(16000, np.float32))
    assert math.isnan(value) and error == "NoUtterancesError"
    # MCD: a frame-constant offset (level) is c0 only -> 0; a known cepstral difference -> known dB
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 80))
    assert mel_cepstral_distortion(a, a + 3.0) == pytest.approx(0.0, abs=1e-9)
    basis = cepstrum_matrix(80, 24)
    # log-mel = 2 * 0.1 * cos(pi * 1 * (n + 1/2) / M): c_1 = 0.1, others 0
    b = a + 2 * 0.1 * np.cos(np.pi * (np.arange(80) + 0.5) / 80)
    assert (b - a)[0] @ basis[0] == pytest.approx(0.1)
    assert mel_cepstral_distortion(a, b) == pytest.approx(10 / np.log(10) * np.sqrt(2) * 0.1)
    # F0
    assert all(math.isnan(v) for v in f0_moments(np.zeros(10)))
    mean, std, skew, kurt = f0_moments(np.array([0, 100, 200, 300, 0.0]))
    assert (mean, std, skew) == (200.0, pytest.approx(np.sqrt(20000 / 3)), pytest.approx(0.0))
    assert kurt == pytest.approx(-1.5)
    assert vuv_error(np.array([0, 100, 100, 0]), np.array([100, 100, 0, 0])) == 0.5
    assert f0_rmse_cents(np.array([100.0, 100, 0]), np.array([200.0, 100, 100])) == pytest.approx(np.sqrt(1200**2 / 2))


# --------------------------------------------------------------------------- the stage
def _fake_corpus(tmp_path, speech):
    """manifest + one decode shard (4 test utterances, one of them rejected by decode, + 1 train) and a
    fake system store: noisy copies, one utterance 5 frames short, one missing, one not a test utterance."""
    res = tmp_path / "results" / "fake"
    utts = ["s1_a", "s1_b", "s2_c", "s2_d", "s1_train", "s2_lost"]
    texts = [*SENTENCES, "bin red at b one soon", "set blue by c six now"]
    write_store(res / "manifest.parquet", StoreMeta("manifest", "x"), utts, {
        "speaker": [u.split("_")[0] for u in utts],
        "split": ["test", "test", "test", "test", "train", "test"],
        "shard": [0] * 6,
        "text": texts,
    })
    audio = [*speech, speech[0]]
    n_frames = [len(a) // SAMPLES_PER_FRAME for a in audio]
    write_store(res / "audio" / "000.parquet", StoreMeta("decode", "x"), utts[:5],
                {"n_frames": pa.array(n_frames, type=pa.int32()), "duration": [n / 25 for n in n_frames]},
                {"audio": audio})
    rng = np.random.default_rng(0)
    sys_utts = ["s1_a", "s1_b", "s2_c", "s1_train"]
    sys_audio = [speech[0] + 0.02 * rng.standard_normal(len(speech[0])).astype(np.float32),
                 speech[1] + 0.02 * rng.standard_normal(len(speech[1])).astype(np.float32),
                 speech[2][: -5 * SAMPLES_PER_FRAME].copy(),
                 speech[0].copy()]
    sys_frames = [len(a) // SAMPLES_PER_FRAME for a in sys_audio]
    write_store(res / "eval" / "fake_exp" / "audio.parquet",
                StoreMeta("vocode", "y", extra={"system": "fake_exp", "vocoder": "griffin_lim"}), sys_utts,
                {"n_frames": pa.array(sys_frames, type=pa.int32()), "duration": [n / 25 for n in sys_frames]},
                {"audio": sys_audio})
    return res


@needs_espeak
def test_evaluate_stage_end_to_end(tmp_path, speech):
    from lipspeech.cli import main
    from lipspeech.evaluation.stage import COLUMNS, run_evaluate

    res = _fake_corpus(tmp_path, speech)
    cfg = validate_config({})
    gt = res / "eval" / "ground_truth"
    summary = run_evaluate("ground_truth", res / "manifest.parquet", [res / "audio" / "000.parquet"], None,
                           cfg["evaluate"], cfg["prosody"], cfg["mel"], gt / "metrics.parquet", gt / "summary.json",
                           gt / "metrics.rejected.parquet", progress=False)
    table = Store(gt / "metrics.parquet", expect_stage="evaluate")
    df = table.df
    assert list(df.columns) == ["utt", *COLUMNS]
    assert table.utts == ["s1_a", "s1_b", "s2_c", "s2_d"]
    assert np.allclose(df["stoi"], 1.0) and np.allclose(df["estoi"], 1.0)
    assert (df["mcd"] == 0).all() and (df["vuv_error"] == 0).all() and (df["energy_mae"] == 0).all()
    assert (df["pesq_nb"] > 4.4).all() and df["ref"][0] == SENTENCES[0]
    rejected = pq.read_table(gt / "metrics.rejected.parquet").to_pylist()
    assert rejected == [{"utt": "s2_lost", "stage": "evaluate", "reason": "no ground-truth audio (rejected by decode)"}]
    on_disk = json.loads((gt / "summary.json").read_text())
    assert on_disk == summary
    for key in ("system", "n", "wer", "cer", "stoi", "estoi", "pesq_nb", "mcd", "f0_mean", "f0_std", "f0_skew",
                "f0_kurt", "vuv_error", "energy_mae", "asr"):
        assert key in summary, key
    assert summary["system"] == "ground_truth" and summary["n"] == 4 and summary["n_rejected"] == 1
    assert summary["stoi"] == pytest.approx(1.0) and summary["mcd"] == 0.0 and summary["energy_mae"] == 0.0
    assert summary["wer"] <= 0.25 and "grid" in summary["asr_details"]["grammar"]
    assert summary["wer"] == pytest.approx(corpus_rates(list(df["ref"]), list(df["hyp"]))[0])
    assert summary["asr"].startswith("pocketsphinx")
    # chance level: each reference word is guessed right with probability 1/|its slot|
    slots = [s.split() for s in summary["asr_details"]["grammar_slots"]]
    assert summary["chance_wer"] == pytest.approx(1 - np.mean([1 / len(s) for s in slots]), abs=0.05)

    # a system through the command line, as the workflow runs it
    out = res / "eval" / "fake_exp"
    params = json.dumps({"evaluate": {"pesq": False}})
    rc = main(["evaluate", "--params", params, "--system", "fake_exp", "--manifest", str(res / "manifest.parquet"),
               "--reference", str(res / "audio" / "000.parquet"), "--audio", str(out / "audio.parquet"),
               "--out", str(out / "metrics.parquet"), "--summary", str(out / "summary.json"),
               "--rejected", str(out / "metrics.rejected.parquet"), "--no-progress", "--threads", "1"])
    assert rc == 0
    sysdf = Store(out / "metrics.parquet", expect_stage="evaluate").df
    assert list(sysdf["utt"]) == ["s1_a", "s1_b"]
    assert (sysdf["stoi"] < 1).all() and (sysdf["mcd"] > 0).all() and sysdf["pesq_nb"].isna().all()
    reasons = {r["utt"]: r["reason"] for r in pq.read_table(out / "metrics.rejected.parquet").to_pylist()}
    assert set(reasons) == {"s2_c", "s2_d", "s2_lost", "s1_train"}
    assert "more than evaluate.max_length_mismatch" in reasons["s2_c"]
    assert "no audio from system fake_exp" in reasons["s2_d"]
    assert "not a test-split utterance" in reasons["s1_train"]
    sys_summary = json.loads((out / "summary.json").read_text())
    assert sys_summary["n"] == 2 and sys_summary["pesq_nb"] is None and sys_summary["stoi"] < 1

    # the system store must be the system it claims to be
    with pytest.raises(StageError, match="holds system 'fake_exp'"):
        run_evaluate("other", res / "manifest.parquet", [res / "audio" / "000.parquet"], out / "audio.parquet",
                     cfg["evaluate"], cfg["prosody"], cfg["mel"], tmp_path / "m.parquet", tmp_path / "s.json",
                     tmp_path / "r.parquet", progress=False)


def test_reserved_system_names_are_not_experiments():
    with pytest.raises(ConfigError, match="reserved"):
        validate_config({"experiments": [{"name": "ground_truth"}]})
    with pytest.raises(ConfigError, match="reserved"):
        validate_config({"experiments": [{"name": "gt_vocoded"}]})
