"""The bad-input zoo (tests/zoo.py) through manifest, decode and roi: every odd input either goes
through or lands in the right stage's rejected table with a one-line reason, and the good
utterances beside it are never lost. Plus fail_fast, corrupt stores, mistyped config keys."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from zoo import FOLDER_CASES, GRID_CASES, UNICODE_NAME

from lipspeech.cli import main as cli_main
from lipspeech.commands.summary import corpus_summary, format_summary
from lipspeech.core.config import ConfigError, validate_config
from lipspeech.core.media import count_frames, read_audio, read_audio_and_count, read_frames
from lipspeech.core.shards import StageError
from lipspeech.core.store import Store, StoreError, read_rejected
from lipspeech.core.timing import SAMPLES_PER_FRAME
from lipspeech.data.decode import decode_shard
from lipspeech.data.manifest import build_manifest
from lipspeech.features.mel import mel_shard
from lipspeech.features.prosody import prosody_stats

BIN = Path(sys.executable).parent
STAGES = ("manifest", "decode", "roi")


def _cfg(kind, root, **manifest):
    return validate_config({"corpus": {"kind": kind, "root": str(root)}, "manifest": {"shards": 1, **manifest}})


@pytest.fixture(scope="module")
def folder_run(zoo, tmp_path_factory):
    """The folder corpus of the zoo, one shard: manifest -> decode -> roi (in-process)."""
    from lipspeech.vision.roi import roi_shard

    out = tmp_path_factory.mktemp("zoo_run")
    cfg = _cfg("folder", zoo.folder)
    build_manifest(cfg["corpus"], cfg["manifest"], zoo.folder, out / "manifest.parquet",
                   out / "manifest.rejected.parquet", threads=2, progress=False, fail_fast=False)
    decode_shard(out / "manifest.parquet", 0, cfg["decode"], out / "audio/000.parquet",
                 out / "audio/000.rejected.parquet", threads=2, progress=False, fail_fast=False)
    roi_shard(out / "manifest.parquet", out / "audio/000.parquet", cfg["roi"], out / "roi/000.parquet",
              out / "roi/000.qc.parquet", out / "roi/000.rejected.parquet", threads=2, progress=False, fail_fast=False)
    rejected = {stage: {r["utt"]: r for r in read_rejected([path]).to_pylist()} for stage, path in (
        ("manifest", out / "manifest.rejected.parquet"), ("decode", out / "audio/000.rejected.parquet"),
        ("roi", out / "roi/000.rejected.parquet"))}
    stores = {"manifest": Store(out / "manifest.parquet", expect_stage="manifest"),
              "decode": Store(out / "audio/000.parquet", expect_stage="decode"),
              "roi": Store(out / "roi/000.parquet", expect_stage="roi")}
    return {"out": out, "cfg": cfg, "rejected": rejected, "stores": stores}


@pytest.mark.parametrize("utt", list(FOLDER_CASES))
def test_zoo_case(folder_run, utt):
    """Each case goes through every stage, or is rejected by exactly its stage with its one-line reason."""
    what, stage, needle = FOLDER_CASES[utt]
    rejected, stores = folder_run["rejected"], folder_run["stores"]
    if stage is None:
        assert all(utt in stores[s].utts for s in STAGES), f"{utt} ({what}) was lost"
        assert not any(utt in rejected[s] for s in STAGES)
        return
    row = rejected[stage].get(utt)
    assert row is not None, f"{utt} ({what}) not rejected by {stage}: {rejected}"
    assert row["stage"] == stage and needle in row["reason"], row
    assert "\n" not in row["reason"] and len(row["reason"]) <= 300
    later = STAGES[STAGES.index(stage):]
    assert not any(utt in stores[s].utts for s in later)  # not in its own store, nor after it
    assert not any(utt in rejected[s] for s in STAGES if s != stage)  # rejected once, by the first stage to see it


def test_zoo_table_is_complete(zoo, folder_run):
    """Every file of the folder corpus is accounted for: in the final store or rejected once."""
    files = {f"{p.parent.name}_{p.stem}" for p in zoo.folder.rglob("*") if p.suffix in (".mp4", ".mpg", ".mkv")}
    assert files == set(FOLDER_CASES)
    done = set(folder_run["stores"]["roi"].utts)
    lost = set(FOLDER_CASES) - done - {u for r in folder_run["rejected"].values() for u in r}
    assert not lost


def test_non_25fps_resampled_consistently(folder_run):
    """29.97, 30 and 50 fps: decode's frame count = roi's frame count = duration at 25 fps, and the
    mouth moves in step with the 25 fps encode of the same clip."""
    manifest = folder_run["stores"]["manifest"].df.set_index("utt")
    audio, roi = folder_run["stores"]["decode"], folder_run["stores"]["roi"]
    n_decode = dict(zip(audio.utts, audio.df["n_frames"]))
    idx = roi.row_index()

    def opening(utt):  # inner-lip gap per frame
        L = roi.array("landmarks", idx[utt])
        return np.linalg.norm(L[:, 66] - L[:, 62], axis=1)

    ref = opening("good_stereo48k")  # the same clip through the same H.264 encode at 25 fps
    for utt, fps in (("good_fps2997", 29.97), ("good_fps30", 30.0), ("good_fps50", 50.0)):
        assert manifest.loc[utt, "fps"] == pytest.approx(fps, abs=0.01) and manifest.loc[utt, "fps_resampled"]
        n = int(n_decode[utt])
        assert roi.array("roi", idx[utt]).shape[0] == n
        assert abs(n - manifest.loc[utt, "duration"] * 25) <= 1.5
        o = opening(utt)
        m = min(len(o), len(ref)) - 2
        corr = {lag: np.corrcoef(ref[2 + lag: m + lag], o[2: m])[0, 1] for lag in (-2, -1, 0, 1, 2)}
        # within a frame: re-encoding 25 -> 29.97/30/50 fps in the zoo itself shifts content by up to
        # half a frame (the exact nearest-frame rule is test_read_frames_resamples_to_nearest_frame)
        assert abs(max(corr, key=corr.get)) <= 1 and corr[0] > 0.9, corr
    assert not manifest.loc["good_clean", "fps_resampled"]


def test_one_ffmpeg_decode_gives_what_the_separate_reads_give(zoo, tmp_path):
    """The decode stage's one-process read (audio + frame count) against the separate reads: the same
    samples and count on every good clip of the zoo (MPEG-1, H.264/AAC at 29.97/30/50 fps, FFV1 with
    PCM, stereo 48 kHz) and on a clip with its audio in a separate file (GRID's layout); None where
    ffmpeg reports anything (the truncated clip), so the stage falls back to the separate reads."""
    wav = tmp_path / "separate.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(zoo.clips[0]), "-vn", "-ar", "22050", str(wav)],
                   check=True)
    pairs = [(p, p) for p in sorted((zoo.folder / "good").iterdir()) if p.suffix != ".txt"] + [(zoo.clips[0], wav)]
    assert len(pairs) == 9
    for video, audio in pairs:
        both = read_audio_and_count(video, audio)
        assert both is not None, video.name
        assert both[1] == count_frames(video) and np.array_equal(both[0], read_audio(audio)), video.name
    assert read_audio_and_count(zoo.folder / "bad" / "truncated.mpg", zoo.folder / "bad" / "truncated.mpg") is None


@pytest.mark.parametrize("fps", [30000 / 1001, 30.0, 50.0, 12.5])
def test_read_frames_resamples_to_nearest_frame(tmp_path, fps):
    """Frames carrying their own index (lossless): every 25 fps frame is the source frame nearest
    its time, and count_frames (decode) agrees with read_frames (roi)."""
    n_src = int(round(2.0 * fps))
    frames = np.zeros((n_src, 48, 64), np.uint8)
    for i in range(n_src):
        frames[i, :, :] = 10 + 2 * i  # one grey level per source frame
    path = tmp_path / "counter.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x48",
                    "-framerate", f"{fps:.6f}", "-i", "pipe:", "-c:v", "ffv1", str(path)],
                   input=frames.tobytes(), check=True)
    out = read_frames(path, fps=25, gray=True)
    src = np.round((out[:, 24, 32].astype(float) - 10) / 2).astype(int)
    assert count_frames(path) == len(out)
    assert abs(len(out) - n_src * 25 / fps) <= 1
    times_out, times_src = np.arange(len(out)) / 25, src / fps
    assert np.all(np.abs(times_out - times_src) <= 0.5 / min(fps, 25) + 1e-6), (src, times_out)
    assert np.all(np.diff(src) >= 0)


def test_stereo_48k_is_downmixed_and_resampled(folder_run):
    audio = folder_run["stores"]["decode"]
    idx = audio.row_index()
    stereo, mono = audio.array("audio", idx["good_stereo48k"]), audio.array("audio", idx["good_fps30"])
    assert stereo.shape == (int(audio.df["n_frames"][idx["good_stereo48k"]]) * SAMPLES_PER_FRAME,)
    n = min(len(stereo), len(mono))
    assert np.corrcoef(stereo[:n], mono[:n])[0, 1] > 0.95  # same speech, same time, after 48k -> 16k
    assert 0.9 < np.sqrt(np.mean(stereo**2) / np.mean(mono**2)) < 1.1  # averaged, not summed


def test_two_faces_cropped_on_the_larger_one(folder_run):
    roi = folder_run["stores"]["roi"]
    qc = Store(folder_run["out"] / "roi/000.qc.parquet").df.set_index("utt")
    assert qc.loc["good_twofaces", "faces"] == 2 and qc.loc["good_clean", "faces"] == 1
    L = roi.array("landmarks", roi.row_index()["good_twofaces"])
    assert (L[..., 0] < 360).all()  # left half: the full-size face, on every frame (the other is 0.8x)
    assert qc.loc["good_twofaces", "face_size"] == pytest.approx(qc.loc["good_clean", "face_size"], rel=0.1)


def test_unicode_names_keep_their_transcript(folder_run):
    manifest = folder_run["stores"]["manifest"].df.set_index("utt")
    utt = f"good_{UNICODE_NAME}"
    assert manifest.loc[utt, "video_path"].endswith(f"{UNICODE_NAME}.mpg")
    assert manifest.loc[utt, "text"] and utt in folder_run["stores"]["roi"].utts


@pytest.mark.parametrize("utt", list(GRID_CASES))
def test_grid_transcript_cases(zoo, tmp_path, utt):
    what, stage, needle = GRID_CASES[utt]
    cfg = _cfg("grid", zoo.grid)
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], zoo.grid, tmp_path / "m.parquet",
                                  tmp_path / "r.parquet", progress=False, fail_fast=False)
    if stage is None:
        assert utt in set(df["utt"]) and df.set_index("utt").loc[utt, "text"]
    else:
        assert needle in rejected[utt] and "\n" not in rejected[utt], (what, rejected)
        assert utt not in set(df["utt"])


def test_transcripts_optional_keeps_clips_without_one(zoo, tmp_path):
    cfg = _cfg("grid", zoo.grid, transcripts="optional")
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], zoo.grid, tmp_path / "m.parquet",
                                  tmp_path / "r.parquet", progress=False, fail_fast=False)
    m = df.set_index("utt")
    assert "s1_noalign" in m.index and m.loc["s1_noalign", "text"] is None or np.isnan(m.loc["s1_noalign", "text"])
    assert set(rejected) == {"s1_oov", "s1_garbled"}  # a bad transcript still rejects
    # required on a folder corpus: clips without a .txt are rejected
    cfg = _cfg("folder", zoo.folder, transcripts="required", max_duration=1000)
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], zoo.folder, tmp_path / "m2.parquet",
                                  tmp_path / "r2.parquet", threads=2, progress=False, fail_fast=False)
    assert set(df["utt"]) == {"good_clean", f"good_{UNICODE_NAME}"}
    assert "no transcript (good/fps30.txt missing or without words" in rejected["good_fps30"]


def test_csv_corpus_missing_file_and_unicode_path(zoo, tmp_path):
    cfg = _cfg("csv", zoo.csv)
    df, rejected = build_manifest(cfg["corpus"], cfg["manifest"], zoo.csv, tmp_path / "m.parquet",
                                  tmp_path / "r.parquet", progress=False, fail_fast=False)
    assert set(df["utt"]) == {"c_clean", "c_unicode"}
    assert list(rejected) == ["c_missing"] and rejected["c_missing"].startswith("file not found: ")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_ten_minute_clip_rejected_or_decoded_in_bounded_memory(zoo, folder_run, tmp_path):
    """manifest.max_duration (60 s) rejects it; allowed, decode takes it in well under 1 GB."""
    assert "bad_tenminutes" in folder_run["rejected"]["manifest"]
    root = tmp_path / "long"
    (root / "spk").mkdir(parents=True)
    os.link(zoo.folder / "bad" / "tenminutes.mkv", root / "spk" / "long.mkv")
    cfg = _cfg("folder", root, max_duration=700)
    build_manifest(cfg["corpus"], cfg["manifest"], root, tmp_path / "m.parquet", tmp_path / "r.parquet",
                   progress=False, fail_fast=False)
    # the stage in a fresh interpreter that reports its own high-water mark (VmHWM: this process
    # only, from its exec on; a forked child's ru_maxrss would count the pytest process it came from)
    args = ["decode", "--manifest", str(tmp_path / "m.parquet"), "--shard", "0", "--out", str(tmp_path / "a.parquet"),
            "--rejected", str(tmp_path / "ar.parquet"), "--no-progress", "--threads", "1"]
    code = ("import sys; from lipspeech.cli import main; rc = main(sys.argv[1:]); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split("VmHWM:")[1].split()[0]) / 1024
    store = Store(tmp_path / "a.parquet", expect_stage="decode")
    assert list(store.df["n_frames"]) == [15000]
    assert store.array("audio", 0).shape == (15000 * SAMPLES_PER_FRAME,)
    # 10 min of 16 kHz float32 audio is 38 MB: a few copies of it are fine (~400 MB with the
    # interpreter), the decoded video or Parquet's dictionary of every sample (1.7 GB) are not
    assert peak_mb < 600, f"decode peaked at {peak_mb:.0f} MB"


# --------------------------------------------------------------------------- fail_fast
def test_fail_fast_stops_at_the_first_rejection(zoo, folder_run, tmp_path, capsys, monkeypatch):
    # a manifest of two zoo clips, one that decode rejects (rows of the zoo's manifest, metadata kept)
    table = folder_run["stores"]["manifest"].table
    pq.write_table(table.filter(pc.is_in(table["utt"], pa.array(["good_clean", "bad_truncated"]))),
                   tmp_path / "m.parquet")
    monkeypatch.delenv("LIPSPEECH_FAIL_FAST", raising=False)
    args = ["decode", "--manifest", str(tmp_path / "m.parquet"), "--shard", "0", "--out", str(tmp_path / "a.parquet"),
            "--rejected", str(tmp_path / "ar.parquet"), "--no-progress"]
    assert cli_main([*args, "--fail-fast"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fail_fast: decode rejected bad_truncated: damaged or truncated" in err
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "ar.parquet").exists()
    monkeypatch.setenv("LIPSPEECH_FAIL_FAST", "1")  # how the workflow hands config key fail_fast down
    assert cli_main(args) == 1 and "fail_fast: decode rejected bad_truncated" in capsys.readouterr().err
    monkeypatch.setenv("LIPSPEECH_FAIL_FAST", "0")
    assert cli_main(args) == 0 and (tmp_path / "a.parquet").exists()
    assert read_rejected([tmp_path / "ar.parquet"]).column("utt").to_pylist() == ["bad_truncated"]
    # the manifest stage too, from the config file's key
    corpus = tmp_path / "corpus"
    (corpus / "x").mkdir(parents=True)
    os.link(zoo.folder / "good" / "clean.mpg", corpus / "x" / "clean.mpg")
    (corpus / "x" / "empty.mp4").write_bytes(b"")
    cfg_file = tmp_path / "ff.yaml"
    cfg_file.write_text(json.dumps({"fail_fast": True, "corpus": {"kind": "folder", "root": str(corpus)}}))
    monkeypatch.delenv("LIPSPEECH_FAIL_FAST")
    assert cli_main(["manifest", "--config", str(cfg_file), "--out", str(tmp_path / "m2.parquet"),
                     "--rejected", str(tmp_path / "mr.parquet"), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == \
        "lipspeech manifest: fail_fast: manifest rejected x_empty: empty file (0 bytes)"


# --------------------------------------------------------------------------- corrupt stores
def _corrupt(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = b"\0" * 64  # footer intact, pages garbage ...
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data[: len(data) - 100]))  # ... and the footer cut off: not Parquet at all
    return dst


def test_corrupt_parquet_shard(folder_run, tmp_path, capsys):
    """An unreadable input store costs its shard's utterances (one line each, named by the
    manifest), not the stage; corpus-wide stages skip it with a warning; the summary flags it."""
    out = folder_run["out"]
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(out / "manifest.parquet", results / "manifest.parquet")
    shutil.copy(out / "manifest.rejected.parquet", results / "manifest.rejected.parquet")
    audio = _corrupt(out / "audio/000.parquet", results / "audio/000.parquet")
    shutil.copy(out / "audio/000.rejected.parquet", results / "audio/000.rejected.parquet")
    mel_cfg = folder_run["cfg"]["mel"]
    ok, bad = mel_shard(audio, mel_cfg, results / "mel/000.parquet", results / "mel/000.rejected.parquet",
                        progress=False, manifest=results / "manifest.parquet", fail_fast=False)
    n_shard = len(folder_run["stores"]["manifest"])
    assert (ok, bad) == (0, n_shard)
    rows = read_rejected([results / "mel/000.rejected.parquet"]).to_pylist()
    assert sorted(r["utt"] for r in rows) == sorted(folder_run["stores"]["manifest"].utts)
    assert all("input store audio/000.parquet is unreadable" in r["reason"] and "rebuild" in r["reason"]
               and "\n" not in r["reason"] for r in rows)
    assert len(Store(results / "mel/000.parquet", expect_stage="mel")) == 0
    # a missing input is a wiring mistake, not damage: the stage fails
    with pytest.raises(StoreError, match="no such store file"):
        mel_shard(results / "audio/001.parquet", mel_cfg, tmp_path / "x.parquet", tmp_path / "xr.parquet",
                  progress=False, manifest=results / "manifest.parquet", fail_fast=False)
    # without a manifest the stage cannot say whom it lost: it fails, in one line
    with pytest.raises(StageError, match="is unreadable"):
        mel_shard(audio, mel_cfg, tmp_path / "x.parquet", tmp_path / "xr.parquet", progress=False, fail_fast=False)
    with pytest.raises(StageError, match="^fail_fast: input store"):
        mel_shard(audio, mel_cfg, tmp_path / "x.parquet", tmp_path / "xr.parquet", progress=False,
                  manifest=results / "manifest.parquet", fail_fast=True)
    # roi has the manifest anyway: the shard's utterances, rejected and in the QC table
    from lipspeech.vision.roi import roi_shard

    assert roi_shard(results / "manifest.parquet", audio, folder_run["cfg"]["roi"], results / "roi/000.parquet",
                     results / "roi/000.qc.parquet", results / "roi/000.rejected.parquet", progress=False,
                     fail_fast=False) == (0, n_shard)
    qc = Store(results / "roi/000.qc.parquet").df
    assert len(qc) == n_shard and qc["reason"].str.contains("is unreadable").all()
    # corpus-wide: skipped with a warning
    bad_prosody = _corrupt(out / "audio/000.parquet", results / "prosody/000.parquet")
    lines = []
    stats = prosody_stats([bad_prosody], results / "manifest.parquet", folder_run["cfg"]["prosody"], mel_cfg,
                          tmp_path / "stats.json", log=lines.append, fail_fast=False)
    assert stats["global"]["utterances"] == 0 and len(lines) == 1 and "skipping input store prosody/000" in lines[0]
    summary = corpus_summary(results)
    assert any(u.startswith("audio/000.parquet") for u in summary["unreadable"])
    assert "UNREADABLE audio/000.parquet" in format_summary(summary)
    # an unreadable manifest: the stage says so in one line
    _corrupt(out / "manifest.parquet", tmp_path / "bad" / "manifest.parquet")
    assert cli_main(["decode", "--manifest", str(tmp_path / "bad/manifest.parquet"), "--shard", "0",
                     "--out", str(tmp_path / "a.parquet"), "--rejected", str(tmp_path / "ar.parquet")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a readable Parquet store" in err


def test_training_skips_the_utterances_of_an_unreadable_store(tmp_path):
    from test_stage_train import EXP, MODEL, TRAIN, UTTS, fake_results

    from lipspeech.training.stage import run_train
    from lipspeech.training.stores import CorpusStores, StoreDataset

    results = fake_results(tmp_path / "results" / "fake")
    _corrupt(results / "mel/001.parquet", results / "mel/001.parquet")
    corpus = CorpusStores.from_results(results)
    train = StoreDataset(corpus, "train")
    lost = sum(1 for u, (_, split, shard) in UTTS.items() if split == "train" and shard == 1)
    assert train.skipped["mel store unreadable"] == lost and len(train) > 0
    assert list(corpus.unreadable) == [str(results / "mel/001.parquet")]
    with pytest.raises(StageError, match="^fail_fast: .*mel/001.parquet"):
        run_train(results, EXP, MODEL, TRAIN, results / "models/x", progress=False, fail_fast=True)


# --------------------------------------------------------------------------- config keys
@pytest.mark.parametrize("params,needle", [
    ({"fail_fsat": True}, "config key fail_fsat: unknown key"),
    ({"roi": {"smothing": 9}}, "config key roi.smothing: unknown key"),
    ({"decode": {"reject_damaged": "yes"}}, "config key decode.reject_damaged: expected bool, got 'yes'"),
    ({"manifest": {"transcripts": "sometimes"}}, "config key manifest.transcripts"),
    ({"manifest": {"shards": "four"}}, "config key manifest.shards"),
])
def test_mistyped_config_keys_are_refused_by_name(params, needle, tmp_path, capsys):
    with pytest.raises(ConfigError, match=needle.split(": ", 1)[0]):
        validate_config(dict(params))
    code = cli_main(["mel", "--params", json.dumps(params), "--audio", str(tmp_path / "a.parquet"),
                     "--out", str(tmp_path / "m.parquet"), "--rejected", str(tmp_path / "r.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and err.count("\n") == 0
    assert not (tmp_path / "m.parquet").exists()
