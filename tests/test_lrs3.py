"""The LRS3 reader on a tree in LRS3's layout (tests/lrs3tree.py): subsets, splits, val ids,
transcripts, rejections, and the manifest built from it."""

import random

import pytest
from lrs3tree import CLIPS, build_lrs3
from needs import needs_ffmpeg

from lipspeech.core.config import validate_config
from lipspeech.data.corpora import CorpusError, lrs3_val_ids, read_corpus, read_lrs3, read_lrs3_text
from lipspeech.data.manifest import assign_splits, build_manifest, transcript_problem

TRAINVAL = ["Ab3-dEf_GhI", "-x9Yz_QwErT", "Zz_zz-Zz_zz", "mNoPqRsTuVw"]


@pytest.fixture
def lrs3(tmp_path):
    return build_lrs3(tmp_path / "LRS3")


def _cfg(root, **lrs3):
    return validate_config({"corpus": {"kind": "lrs3", "root": str(root), "lrs3": lrs3}, "manifest": {"shards": 2}})


def test_30h_reads_trainval_and_test_with_unique_safe_ids(lrs3):
    entries = read_lrs3(lrs3, "30h", 1, None)
    assert len(entries) == sum(part != "pretrain" for part, _, _ in CLIPS)
    utts = [e.utt for e in entries]
    assert len(set(utts)) == len(utts)
    # ids that start with '-' are inside the utterance id, never at its start (no option-like file names)
    assert "trainval_-x9Yz_QwErT_00001" in utts and "test_-tEsT_00001_00001" in utts
    assert all(u[0].isalnum() and all(c.isalnum() or c in "-_" for c in u) for u in utts)
    by = {e.utt: e for e in entries}
    e = by["trainval_Ab3-dEf_GhI_00001"]
    assert (e.speaker, e.list_key, e.audio_path) == ("Ab3-dEf_GhI", "Ab3-dEf_GhI/00001", None)
    assert e.video_path == lrs3 / "trainval" / "Ab3-dEf_GhI" / "00001.mp4"
    # one of the four trainval ids is val (the hash picks -x9Yz_QwErT), the others train; test/ is test
    split_of = {e.speaker: e.split for e in entries}
    assert {v: split_of[v] for v in TRAINVAL} == {"Ab3-dEf_GhI": "train", "-x9Yz_QwErT": "val",
                                                  "Zz_zz-Zz_zz": "train", "mNoPqRsTuVw": "train"}
    assert split_of["-tEsT_00001"] == split_of["TeStId_0002"] == "test"
    # the splits are the corpus's own: assign_splits keeps them (no hash split)
    cfg = _cfg(lrs3, val_speakers=1)["corpus"]
    assert [(e.utt, s) for e, s in assign_splits(read_corpus(cfg, lrs3), cfg)] == [(e.utt, e.split) for e in entries]


def test_433h_adds_pretrain_but_not_the_val_speakers(lrs3, tmp_path):
    entries = {e.utt: e for e in read_lrs3(lrs3, "433h", 0, None)}
    assert entries["pretrain_Ab3-dEf_GhI_00001"].split == entries["pretrain_pReTrAiN001_00001"].split == "train"
    assert entries["pretrain_Ab3-dEf_GhI_00001"].text == "hello world again"
    assert not any(e.split == "val" for e in entries.values())  # val_speakers 0: no val split
    # a held-out id's pretrain clips are left out: its speaker stays unseen in training
    listed = tmp_path / "val.txt"
    listed.write_text("# held out\nAb3-dEf_GhI\n\n")
    entries = {e.utt: e for e in read_lrs3(lrs3, "433h", 5, listed)}
    assert "pretrain_Ab3-dEf_GhI_00001" not in entries and "pretrain_pReTrAiN001_00001" in entries
    assert {e.speaker for e in entries.values() if e.split == "val"} == {"Ab3-dEf_GhI"}


def test_val_ids_are_a_stable_hash_choice():
    assert lrs3_val_ids(TRAINVAL, 2, None) == {"-x9Yz_QwErT", "Ab3-dEf_GhI"}  # known answer: reproducible
    ids = [f"v{i:010d}" for i in range(1000)]
    chosen = lrs3_val_ids(ids, 100, None)
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert lrs3_val_ids(shuffled, 100, None) == chosen and len(chosen) == 100
    assert lrs3_val_ids(ids, 50, None) < chosen  # a smaller count holds out a subset of the same ids
    assert chosen != set(ids[:100]) and chosen != set(ids[-100:])  # spread, not the first or last ids
    assert lrs3_val_ids(TRAINVAL, 10, None) == set(TRAINVAL)


def test_val_list_must_name_trainval_ids(lrs3, tmp_path):
    listed = tmp_path / "val.txt"
    listed.write_text("Ab3-dEf_GhI\nnot_an_id_1\n")
    with pytest.raises(CorpusError, match=r"val_list .*1 id\(s\) not under trainval/: not_an_id_1"):
        read_lrs3(lrs3, "30h", 1, listed)
    with pytest.raises(CorpusError, match="is not a file"):
        read_lrs3(lrs3, "30h", 1, tmp_path / "none.txt")


def test_transcripts_are_normalised_as_scored(lrs3):
    text = {e.utt: e.text for e in read_lrs3(lrs3, "30h", 0, None)}
    assert text["trainval_Ab3-dEf_GhI_00001"] == "hello world"
    # any white space after "Text:", apostrophes kept inside words, other punctuation gone, spacing collapsed
    assert text["trainval_Ab3-dEf_GhI_00002"] == "it's a test of the set up"
    assert text["trainval_-x9Yz_QwErT_00001"] == "we saw three birds"  # a digit spelt, as the scoring does
    assert read_lrs3_text(lrs3 / "test" / "-tEsT_00001" / "00001.txt") == "thank you"


def test_bad_transcripts_are_rejected_with_reasons(lrs3):
    entries = {e.utt: e for e in read_lrs3(lrs3, "30h", 0, None)}
    reasons = {u: transcript_problem(e, "lrs3", "auto") for u, e in entries.items()}
    assert {u: r for u, r in reasons.items() if r} == {
        "trainval_-x9Yz_QwErT_00002": "no transcript (trainval/-x9Yz_QwErT/00002.txt missing or without words; "
                                      "manifest.transcripts: optional keeps such clips)",
        "trainval_Zz_zz-Zz_zz_00003": "unusable transcript trainval/Zz_zz-Zz_zz/00003.txt: no 'Text:' line",
        "trainval_Zz_zz-Zz_zz_00004": "no transcript (trainval/Zz_zz-Zz_zz/00004.txt missing or without words; "
                                      "manifest.transcripts: optional keeps such clips)",
        "test_TeStId_0002_00002": "unusable transcript test/TeStId_0002/00002.txt: not UTF-8 text",
    }
    # manifest.transcripts: optional keeps the clips without words, never a damaged file
    kept = {u for u, e in entries.items() if not transcript_problem(e, "lrs3", "optional")}
    assert "trainval_-x9Yz_QwErT_00002" in kept and "trainval_Zz_zz-Zz_zz_00003" not in kept


def test_missing_folders_are_a_clear_error(lrs3, tmp_path):
    with pytest.raises(CorpusError, match="is not a folder"):
        read_lrs3(tmp_path / "nope", "30h", 1, None)
    (lrs3 / "pretrain").rename(tmp_path / "elsewhere")
    assert read_lrs3(lrs3, "30h", 1, None)  # 30h does not read pretrain/
    with pytest.raises(CorpusError, match=r"has no pretrain/ \(corpus.lrs3.subset 433h reads pretrain/, trainval/, test/\)"):
        read_lrs3(lrs3, "433h", 1, None)


@needs_ffmpeg
def test_lrs3_manifest(tmp_path, fixtures_dir):
    clip = fixtures_dir / "lip2wav/chem/intervals/xyz789/00000.mp4"  # 1 s, 25 fps, with audio
    root = build_lrs3(tmp_path / "LRS3", clip)
    cfg = _cfg(root, subset="433h", val_speakers=1)
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], root, tmp_path / "m.parquet", tmp_path / "r.parquet",
                                  threads=2, progress=False, fail_fast=False)
    m = df.set_index("utt")
    assert sorted(rejected) == ["test_TeStId_0002_00002", "trainval_-x9Yz_QwErT_00002", "trainval_Zz_zz-Zz_zz_00003",
                                "trainval_Zz_zz-Zz_zz_00004"]
    assert "no 'Text:' line" in rejected["trainval_Zz_zz-Zz_zz_00003"]
    assert m["split"].value_counts().to_dict() == {"train": 5, "test": 2, "val": 1}
    assert m.loc["trainval_-x9Yz_QwErT_00001", "split"] == "val"
    assert m.loc["trainval_Ab3-dEf_GhI_00002", "text"] == "it's a test of the set up"
    assert (m["audio_path"] == m["video_path"]).all()  # the mp4's own audio track
    assert m.loc["test_-tEsT_00001_00001", "speaker"] == "-tEsT_00001"
