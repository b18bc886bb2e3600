"""Corpus readers and the manifest on hand-built GRID / Lip2Wav / folder / CSV trees."""

import shutil

import numpy as np
import pandas as pd
import pytest

from lipspeech.core.config import validate_config
from lipspeech.core.store import Store, read_rejected
from lipspeech.core.timing import SAMPLES_PER_FRAME
from lipspeech.data.corpora import CorpusError, read_grid, read_grid_align, read_lip2wav
from lipspeech.data.decode import decode_shard
from lipspeech.data.manifest import assign_splits, build_manifest, hash_split, load_grid_split, shard_of


def _cfg(**corpus):
    return validate_config({"corpus": corpus, "manifest": {"shards": 2}})


def _manifest(tmp_path, cfg, root):
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], root, tmp_path / "m.parquet",
                                  tmp_path / "r.parquet", threads=2, progress=False, fail_fast=False)
    return df.set_index("utt"), rejected


def test_grid_align_parsing(fixtures_dir):
    text, rows = read_grid_align(fixtures_dir / "grid/s1/align/bbaf2n.align")
    assert text == "bin blue at f two now"
    assert rows[0] == (0, 5000, "sil") and rows[-1] == (22000, 25000, "sil")


def test_grid_manifest(tmp_path, fixtures_dir):
    root = fixtures_dir / "grid"
    cfg = _cfg(kind="grid", root=str(root), audio_root=str(root / "audio_25k"))
    m, rejected = _manifest(tmp_path, cfg, root)
    assert sorted(m.index) == ["s1_bbaf2n", "s1_lgwm9a", "s2_pwbyzp"]
    assert m.loc["s1_bbaf2n", "text"] == "bin blue at f two now"
    assert m.loc["s2_pwbyzp", "text"] == "place white by y zero please"
    assert m.loc["s1_lgwm9a", "speaker"] == "s1"
    # separate audio from the audio tree where it exists, the video's own track otherwise
    assert m.loc["s2_pwbyzp", "audio_path"].endswith("audio_25k/s2/pwbyzp.wav")
    assert m.loc["s2_pwbyzp", "sample_rate"] == 25000
    assert m.loc["s1_bbaf2n", "audio_path"] == m.loc["s1_bbaf2n", "video_path"]
    assert m.loc["s1_bbaf2n", "duration"] == pytest.approx(1.0, abs=0.05)
    assert m.loc["s1_lgwm9a", "fps"] == 25 and not m["fps_resampled"].any()
    assert all(m.loc[u, "shard"] == shard_of(u, 2) for u in m.index)
    assert set(m["split"]) <= {"train", "val", "test"}
    # the truncated file is rejected with a reason, the rest goes through
    assert list(rejected) == ["s2_bbaszp"] and rejected["s2_bbaszp"]
    assert read_rejected([tmp_path / "r.parquet"]).column("stage").to_pylist() == ["manifest"]


def test_lip2wav_manifest(tmp_path, fixtures_dir):
    root = fixtures_dir / "lip2wav"
    m, rejected = _manifest(tmp_path, _cfg(kind="lip2wav", root=str(root)), root)
    assert not rejected
    assert m["split"].to_dict() == {
        "chem_abc123_00001": "train",
        "chem_abc123_00002": "val",
        "chem_xyz789_00000": "test",
        "hs_q1w2e3_00007": "test",
    }
    assert m.loc["chem_abc123_00001", "fps"] == pytest.approx(30)
    assert m.loc["hs_q1w2e3_00007", "fps"] == pytest.approx(29.97, abs=0.01)
    assert m.loc["chem_abc123_00001", "fps_resampled"] and not m.loc["chem_xyz789_00000", "fps_resampled"]
    assert m["text"].isna().all()  # Lip2Wav has no transcripts
    assert (m["width"] == 96).all() and (m["height"] == 64).all()


def test_folder_and_csv_corpora(tmp_path, fixtures_dir):
    src = fixtures_dir / "lip2wav/chem/intervals/abc123"
    root = tmp_path / "folder"
    (root / "anna").mkdir(parents=True)
    shutil.copy(src / "00001.mp4", root / "anna" / "hello there.mp4")
    (root / "anna" / "hello there.txt").write_text("hello\nthere\n")
    m, rejected = _manifest(tmp_path, _cfg(kind="folder", root=str(root)), root)
    assert list(m.index) == ["anna_hello there"] and m.iloc[0]["text"] == "hello there" and not rejected

    csv = tmp_path / "list.csv"
    csv.write_text(f"video,utt,speaker,text,split\n{src / '00001.mp4'},a1,bob,one two,test\n{src / '00002.mp4'},a2,bob,,\n")
    m, _ = _manifest(tmp_path, _cfg(kind="csv", root=str(csv)), csv)
    assert m.loc["a1", "split"] == "test" and m.loc["a1", "text"] == "one two"
    assert m.loc["a2", "split"] == hash_split("a2", [0.8, 0.1, 0.1]) and pd.isna(m.loc["a2", "text"])


def test_duplicate_ids_are_rejected(tmp_path, fixtures_dir):
    src = fixtures_dir / "lip2wav/chem/intervals/abc123/00001.mp4"
    csv = tmp_path / "dup.csv"
    csv.write_text(f"video,utt\n{src},x\n{src},x\n")
    m, rejected = _manifest(tmp_path, _cfg(kind="csv", root=str(csv)), csv)
    assert list(m.index) == ["x"] and "duplicate" in rejected["x"]


def test_grid_speaker_splits_and_lists(tmp_path, fixtures_dir):
    entries = read_grid(fixtures_dir / "grid")
    seen = assign_splits(entries, _cfg(kind="grid", root="x", split="seen4")["corpus"])
    assert {e.speaker for e, _ in seen} == {"s1", "s2"}  # s1, s2 are among s1, s2, s4, s29
    unseen = dict((e.utt, s) for e, s in assign_splits(entries, _cfg(kind="grid", root="x", split="unseen")["corpus"]))
    assert unseen["s1_bbaf2n"] == "train" and unseen["s2_pwbyzp"] == "test"
    spec = load_grid_split("unseen").speakers
    assert len(spec) == 33 and "s21" not in spec and sum(v == "test" for v in spec.values()) == 10
    # published lists win over everything else, in their own path style
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "test.txt").write_text("s1/video/bbaf2n.mp4\n")
    (lists / "val.txt").write_text("val/s2/pwbyzp\n")
    listed = dict((e.utt, s) for e, s in assign_splits(
        entries, _cfg(kind="grid", root="x", split="unseen", split_lists=str(lists))["corpus"]))
    assert listed["s1_bbaf2n"] == "test" and listed["s2_pwbyzp"] == "val" and listed["s1_lgwm9a"] == "train"


def test_hash_split_proportions_are_stable():
    utts = [f"s1_u{i}" for i in range(4000)]
    splits = [hash_split(u, [0.8, 0.1, 0.1]) for u in utts]
    assert splits == [hash_split(u, [0.8, 0.1, 0.1]) for u in utts]
    frac = np.mean([s == "train" for s in splits])
    assert 0.77 < frac < 0.83


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="is not a folder"):
        read_lip2wav(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no speaker folders"):
        read_grid(tmp_path)


def test_decode_resamples_to_25fps_and_fits_audio(tmp_path, fixtures_dir):
    root = fixtures_dir / "lip2wav"
    cfg = validate_config({"corpus": {"kind": "lip2wav", "root": str(root)}, "manifest": {"shards": 1}})
    build_manifest(cfg["corpus"], cfg["manifest"], root, tmp_path / "m.parquet", tmp_path / "r.parquet", progress=False,
                   fail_fast=False)
    ok, bad = decode_shard(tmp_path / "m.parquet", 0, cfg["decode"], tmp_path / "a.parquet", tmp_path / "ar.parquet",
                           threads=2, progress=False, fail_fast=False)
    assert (ok, bad) == (4, 0)
    store = Store(tmp_path / "a.parquet", expect_stage="decode")
    df = store.df.set_index("utt")
    # 0.8 s at 30 fps and 1.0 s at 25 fps both become 25 fps frame counts
    assert df.loc["chem_abc123_00001", "n_frames"] == 20
    assert df.loc["chem_xyz789_00000", "n_frames"] == 25
    assert df.loc["hs_q1w2e3_00007", "n_frames"] in (17, 18)
    for i, utt in enumerate(store.utts):
        audio = store.array("audio", i)
        assert audio.dtype == np.float32 and audio.shape == (df.loc[utt, "n_frames"] * SAMPLES_PER_FRAME,)
    # the 250 Hz test tone survives resampling to 16 kHz
    audio = store.array("audio", store.row_index()["chem_xyz789_00000"])
    spec = np.abs(np.fft.rfft(audio[:16000]))
    assert abs(np.argmax(spec) * 16000 / 16000 - 250) <= 2


def test_decode_rejects_av_mismatch_and_keeps_the_rest(tmp_path, fixtures_dir):
    root = tmp_path / "grid"
    shutil.copytree(fixtures_dir / "grid", root)
    # a separate audio file far longer than its video
    import soundfile as sf
    sf.write(root / "audio_25k" / "s2" / "pwbyzp.wav", np.zeros(25000 * 3, np.float32), 25000)
    cfg = validate_config({"corpus": {"kind": "grid", "root": str(root), "audio_root": str(root / "audio_25k")},
                           "manifest": {"shards": 1}})
    build_manifest(cfg["corpus"], cfg["manifest"], root, tmp_path / "m.parquet", tmp_path / "r.parquet", progress=False,
                   fail_fast=False)
    ok, bad = decode_shard(tmp_path / "m.parquet", 0, cfg["decode"], tmp_path / "a.parquet", tmp_path / "ar.parquet",
                           progress=False, fail_fast=False)
    assert (ok, bad) == (2, 1)
    (row,) = read_rejected([tmp_path / "ar.parquet"]).to_pylist()
    assert row["utt"] == "s2_pwbyzp" and "audio is 3.00 s but video is" in row["reason"]
