"""Tests of the SynthGRID generator (grammar, espeak-ng synthesis, rendering, corpus layout)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from needs import needs_synthgrid

from lipspeech.data import gridgrammar as gg

TINY = {
    "seed": 7,
    "speakers": ["s1"],
    "utterances_per_speaker": 2,
    "faces": ["astronaut"],
    "voices": [{"voice": "en-us", "pitch": 40, "range": 50, "rate": 170}],
    "jitter": {"pitch": 5, "range": 5, "rate": 10},
    "frame_size": [180, 144],
    "fps": 25,
    "container": "mpg",
    "silence": [0.2, 0.3],
    "head_motion": 1.0,
    "lighting": 1.0,
}


# --------------------------------------------------------------------------- grammar
def test_utt_id_examples():
    assert gg.utt_id("bin blue at f two now".split()) == "bbaf2n"
    assert gg.utt_id("set white with z zero please".split()) == "swwzzp"
    assert gg.words_from_utt_id("bbaf2n") == "bin blue at f two now".split()
    assert gg.words_from_utt_id("swwzzp") == "set white with z zero please".split()
    assert len(gg.all_words()) == 51 and "w" not in gg.VOCAB["letter"]
    with pytest.raises(ValueError):
        gg.utt_id("bin blue at w two now".split())


def test_sample_sentences_roundtrip_distinct():
    sents = gg.sample_sentences(np.random.default_rng(0), 300)
    ids = [gg.utt_id(s) for s in sents]
    assert len(set(ids)) == 300
    for s, i in zip(sents, ids):
        assert gg.words_from_utt_id(i) == s
    again = gg.sample_sentences(np.random.default_rng(0), 300)
    assert again == sents


# --------------------------------------------------------------------------- speech
@needs_synthgrid
def test_espeak_timing_and_determinism():
    from lipspeech.data.synth.speech import synthesize
    s = synthesize("bin blue at a two now".split(), "en-us", 50, 50, 170)
    assert s.sample_rate == 22050 and s.audio.dtype == np.int16 and np.abs(s.audio).max() > 1000
    starts = np.array([p[1] for p in s.phonemes])
    ends = np.array([p[2] for p in s.phonemes])
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert starts[0] >= 0 and ends[-1] <= s.duration + 1e-6
    assert [w for w, _, _ in s.words] == "bin blue at a two now".split()
    ws = np.array([[a, b] for _, a, b in s.words])
    assert np.all(np.diff(ws[:, 0]) > 0) and np.all(ws[:, 1] > ws[:, 0]) and ws[-1, 1] <= s.duration
    # the letter "a" is said as its name, not as the article
    assert any(p[0] == "eI" for p in s.phonemes)
    # the same request gives the same sound whatever was spoken before
    synthesize("set red with z nine again".split(), "en-us+f2", 70, 30, 140)
    s2 = synthesize("bin blue at a two now".split(), "en-us", 50, 50, 170)
    assert np.array_equal(s.audio, s2.audio)


# --------------------------------------------------------------------------- articulation
@needs_synthgrid
def test_lips_close_on_bilabials_and_open_on_vowels():
    from lipspeech.data.synth.render import OPEN, articulation, mouth_geometry, phoneme_segments
    from lipspeech.data.synth.speech import synthesize
    s = synthesize("place blue by m five again".split(), "en-us", 50, 50, 160)
    lead, fps = 0.3, 25.0
    ph = [(n, a + lead, b + lead) for n, a, b in s.phonemes]
    T = int(np.ceil((s.duration + 2 * lead) * fps))
    t = (np.arange(T) + 0.5) / fps
    tr = articulation(phoneme_segments(ph, T / fps), t)
    opening = np.array([mouth_geometry(p, 20.0).gap / 40.0 for p in tr])
    closures = [(a, b) for n, a, b in ph if n in ("p", "b", "m")]
    assert len(closures) >= 3
    for a, b in closures:
        near = (t >= b - 0.07) & (t <= b + 0.005)
        assert near.any() and opening[near].min() < 0.02, (a, b, opening[near])
    vowels = [(a, b) for n, a, b in ph if n in ("aI", "a", "A:", "eI", "E")]
    peak = max(opening[(t >= a) & (t <= b)].max() for a, b in vowels if ((t >= a) & (t <= b)).any())
    assert peak > 0.15
    assert opening[0] < 0.02 and opening[-1] < 0.02  # silence: closed
    assert tr[:, OPEN].min() >= 0


# --------------------------------------------------------------------------- corpus
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from lipspeech.data.synth.corpus import generate_corpus
    out = tmp_path_factory.mktemp("synthgrid")
    summary = generate_corpus(TINY, out, threads=1, progress=False)
    return out, summary


def _ffprobe(path: Path) -> list[dict]:
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                        "stream=codec_type,codec_name,r_frame_rate,nb_read_frames,width,height,sample_rate",
                        "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["streams"]


@needs_synthgrid
def test_corpus_layout(tiny_corpus):
    import lipspeech
    out, summary = tiny_corpus
    assert summary["n_utterances"] == 2 and summary["speakers"] == ["s1"] and summary["seconds"] > 2
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["generator"] == "SynthGRID" and meta["lipspeech_version"] == lipspeech.__version__
    assert len(meta["utterances"]) == 2 and meta["config"]["frame_size"] == [180, 144]
    assert not list(out.rglob(".*tmp*"))
    for u in meta["utterances"]:
        uid = u["utt"]
        assert gg.utt_id(u["words"]) == uid
        video = out / "s1" / f"{uid}.mpg"
        streams = _ffprobe(video)
        v = [s for s in streams if s["codec_type"] == "video"]
        a = [s for s in streams if s["codec_type"] == "audio"]
        assert len(v) == 1 and len(a) == 1
        assert v[0]["codec_name"] == "mpeg1video" and v[0]["r_frame_rate"] == "25/1"
        assert (v[0]["width"], v[0]["height"]) == (180, 144)
        n_frames = int(v[0]["nb_read_frames"])
        assert n_frames == u["n_frames"]
        # GRID alignment
        lines = [ln.split() for ln in (out / "s1" / "align" / f"{uid}.align").read_text().splitlines()]
        assert [ln[2] for ln in lines] == ["sil"] + u["words"] + ["sil"]
        times = np.array([[int(ln[0]), int(ln[1])] for ln in lines])
        assert times[0, 0] == 0 and times[-1, 1] == n_frames * 1000
        assert np.all(times[:, 1] >= times[:, 0]) and np.all(times[1:, 0] == times[:-1, 1])
        assert times[1, 1] > times[1, 0] and times[-1, 1] > times[-1, 0]
        # mouth ground truth
        m = np.load(out / "s1" / "mouth" / f"{uid}.npz")
        assert m["centre"].shape == (n_frames, 2) and m["lips"].shape == (n_frames, 20, 2)
        assert m["opening"].shape == (n_frames,) and m["centre"].dtype == np.float32
        np.testing.assert_allclose(m["centre"], m["lips"].mean(1), atol=1e-4)
        assert len(m["phonemes"]) == len(m["phoneme_start"]) == len(m["phoneme_end"])
        assert np.all(np.diff(m["phoneme_start"]) >= 0) and m["phoneme_end"][-1] <= n_frames / 25 + 1e-6
        lips = m["lips"]
        assert np.all(lips[:, 0, 0] < lips[:, 6, 0])    # 48 is the image-left corner
        assert np.all(lips[:, 3, 1] < lips[:, 9, 1])    # 51 (upper) above 57 (lower)
        assert m["opening"].min() < 0.02 and m["opening"].max() > 0.1


@needs_synthgrid
def test_corpus_deterministic_and_thread_independent(tiny_corpus, tmp_path):
    from lipspeech.data.synth.corpus import generate_corpus
    out, _ = tiny_corpus
    generate_corpus(TINY, tmp_path, threads=2, progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert any(str(f).endswith(".mpg") for f in files) and any(str(f).endswith(".npz") for f in files)
    for f in files:
        assert (tmp_path / f).read_bytes() == (out / f).read_bytes(), f


@needs_synthgrid
def test_dlib_agrees_with_stored_mouth_centre(tmp_path):
    from lipspeech.data.synth.corpus import generate_corpus
    from lipspeech.vision.landmarks import detect_landmarks_68
    cfg = dict(TINY, speakers=["s2"], utterances_per_speaker=1, faces=["grace_hopper"],
               frame_size=[360, 288], seed=11)
    generate_corpus(cfg, tmp_path, threads=1, progress=False)
    u = json.loads((tmp_path / "corpus.json").read_text())["utterances"][0]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / u["video"]), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 288, 360, 3)
    centre = np.load(tmp_path / u["mouth"])["centre"]
    assert len(frames) == len(centre)
    err = []
    for f, c in zip(frames, centre):
        L = detect_landmarks_68(f)
        err.append(np.inf if L is None else float(np.linalg.norm(L[48:68].mean(0) - c)))
    err = np.array(err)
    assert np.isfinite(err).mean() >= 0.95
    assert (err < 3.0).mean() >= 0.9, np.round(err, 2)


def test_dlib_model_path_and_detection():
    from lipspeech.vision.landmarks import detect_landmarks_68, dlib_model_path
    p = dlib_model_path("shape_predictor_68_face_landmarks.dat")
    assert p.is_file()
    from lipspeech.data.synth.face import load_face_image
    L = detect_landmarks_68(load_face_image("astronaut"))
    assert L is not None and L.shape == (68, 2) and L.dtype == np.float32
    assert L[48, 0] < L[54, 0]
    assert detect_landmarks_68(np.zeros((120, 160, 3), np.uint8)) is None
