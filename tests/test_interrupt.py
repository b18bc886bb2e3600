"""Interruptions: kill -9 in the middle of decode, roi and train, rerun, and get the same bytes as an
uninterrupted run; nothing outside results/ is written; the writers that make this possible."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_stage_train import EXP, MODEL, TRAIN, TRAIN_STORE_ARGS, fake_results, store_args

from lipspeech.core.store import StoreMeta, atomic_path, remove_stale_temporaries, write_store

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
psutil = pytest.importorskip("psutil")


# --------------------------------------------------------------------------- process helpers
def _env(home: Path, tmpdir: Path) -> dict[str, str]:
    """A clean environment whose home, caches and temp dir are ours to watch."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "HF_", "TORCH_", "MPL", "TRANSFORMERS_", "LIPSPEECH_"))}
    home.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir(parents=True, exist_ok=True)
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(home), TMPDIR=str(tmpdir),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so one killpg reaches every job and ffmpeg under it)."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # SIGKILL reaches the whole group at once; wait until none of it is left
    deadline = time.time() + 30
    while time.time() < deadline and any(p.pid != proc.pid for p in psutil.process_iter(["pid"])
                                         if _pgid(p.pid) == proc.pid):
        time.sleep(0.05)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _stage_at_work(proc: subprocess.Popen, stage: str):
    """The ``lipspeech {stage}`` job process of this run once it decodes media (an ffmpeg child
    runs): past its imports and model loading, before it writes anything. None before that."""
    try:
        for p in psutil.Process(proc.pid).children(recursive=True):
            cmd = p.cmdline()
            if "lipspeech" in " ".join(cmd[:2]) and stage in cmd and any(
                    "ffmpeg" in (c.name() or "") for c in p.children(recursive=True)):
                return p
    except psutil.Error:
        pass
    return None


def _kill_tree(job) -> None:
    """SIGKILL one job and everything it started (as the OOM killer or a preempting scheduler would)."""
    victims = [job, *job.children(recursive=True)]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"finished before {what} (exit {proc.returncode})")
        if time.time() > deadline:
            _kill_group(proc)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (but the top-level names in ``skip``): path -> (size, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames + [d + "/" for d in dirnames]:
            p = Path(dirpath) / name.rstrip("/")
            if p.is_symlink() or name.endswith("/"):
                out[str(rel / name)] = (0, 0)
            else:
                st = p.stat()
                out[str(rel / name)] = (st.st_size, st.st_mtime_ns)
    return out


def _diff(before: dict, after: dict) -> list[str]:
    return sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)})


# --------------------------------------------------------------------------- the workflow, killed twice
# a few zoo files (tests/zoo.py): two that go through, and one rejected by each of manifest, decode, roi
WORKFLOW_FILES = {"good": ["clean.mpg", "clean.txt", "fps30.mp4"], "bad": ["empty.mp4", "truncated.mpg", "noface.mpg"]}


def _outside_results(changed: dict[str, list[str]]) -> dict[str, list[str]]:
    """The changes no stage may make. Not a stage's: Snakemake's runtime copy of the workflow source
    (~/.cache/snakemake) and its scratch folder in TMPDIR, both left behind by a killed Snakemake;
    and in TMPDIR, the temp dir the stages may use, torch's compile cache folder (torchinductor_$USER,
    made when torch._dynamo is imported, which the optimiser does). Anything else in TMPDIR, e.g. a
    temporary of ours left behind, counts."""
    allowed = {"home": (".cache/snakemake",), "tmpdir": ("snakemake", "torchinductor_")}
    return {name: [c for c in paths if not any(c.startswith(a) or a.startswith(c + "/") or a.rstrip("_") == c
                                               for a in allowed.get(name, ()))]
            for name, paths in changed.items()}


@pytest.mark.slow
def test_killed_workflow_reruns_to_the_same_stores_and_writes_only_results(zoo, tmp_path, monkeypatch):
    """A zoo corpus through the workflow: a decode job SIGKILLed mid-run, then the whole rerun
    (Snakemake too) SIGKILLed in the middle of roi; after `--unlock` the next run completes (exit 0,
    the bad inputs in the rejected tables); decode and roi stores equal an uninterrupted run of each
    stage byte for byte; no file outside results/ (and .snakemake/) changes, in the repository, the
    corpus, HOME or TMPDIR; flipping fail_fast reruns nothing, and a fresh run with it stops."""
    from lipspeech.core.config import validate_config
    from lipspeech.data.decode import decode_shard
    from lipspeech.vision.roi import roi_shard

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # this process must not touch the tree either
    corpus = tmp_path / "corpus ü"
    for speaker, names in WORKFLOW_FILES.items():
        (corpus / speaker).mkdir(parents=True)
        for name in names:
            os.link(zoo.folder / speaker / name, corpus / speaker / name)
    work, home, tmpdir = tmp_path / "work", tmp_path / "home", tmp_path / "tmp"
    work.mkdir()
    env = _env(home, tmpdir)
    config = {"corpus": {"name": "zoo", "kind": "folder", "root": str(corpus)}, "manifest": {"shards": 1},
              "experiments": []}
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
           str(work / "config.yaml"), "--cores", "2"]
    watched = {"repo": (REPO, (".git",)), "corpus": (corpus, ()), "home": (home, ()), "tmpdir": (tmpdir, ()),
               "workdir": (work, ("results", ".snakemake"))}
    before = {name: _snapshot(root, skip) for name, (root, skip) in watched.items()}
    res = work / "results" / "zoo"
    log = tmp_path / "snakemake.log"

    # 1. the decode job is killed (OOM killer, preemption): the run fails, Snakemake is left clean
    proc = _start(cmd, env, work, log)
    _wait_for(lambda: _stage_at_work(proc, "decode"), proc, "the decode job at work")
    _kill_tree(_stage_at_work(proc, "decode"))
    assert proc.wait(timeout=120) != 0
    assert not list((res / "audio").glob("*.parquet")), "killed after decode had finished: not mid-run"

    # 2. the rerun is killed whole, Snakemake and its jobs (kill -9 of the process group, power loss)
    proc = _start(cmd, env, work, log)
    _wait_for(lambda: _stage_at_work(proc, "roi"), proc, "the roi job at work")
    _kill_group(proc)
    assert not list((res / "roi").glob("*.parquet")), "killed after roi had finished: not mid-run"
    # Snakemake's lock outlives a killed Snakemake: it says to unlock, which is all it takes
    locked = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    subprocess.run([*cmd, "--unlock"], env=env, cwd=work, check=True, capture_output=True)

    # 3. the rerun completes (rerun-incomplete, from the default profile, redoes killed jobs' leftovers)
    proc = _start(cmd, env, work, log)
    assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]

    # the run's outcome: every bad input in one stage's rejected table, the rest through to the end
    summary = json.loads((res / "summary.json").read_text())
    assert {s: r["count"] for s, r in summary["rejected"].items() if r["count"]} == {
        "manifest": 1, "decode": 1, "roi": 1}, summary["rejected"]
    assert summary["stages"]["roi"]["utterances"] == 2 and summary["stages"]["mel"]["utterances"] == 3
    assert not [p for p in res.rglob("*") if p.name.endswith(".tmp")], "temporaries left behind"

    after = {name: _snapshot(root, skip) for name, (root, skip) in watched.items()}
    changed = _outside_results({name: _diff(before[name], after[name]) for name in watched})
    assert not any(changed.values()), f"written outside results/: {changed}"

    # byte for byte what an uninterrupted run of each stage writes from the same inputs
    cfg = validate_config({})
    ref = tmp_path / "ref"
    decode_shard(res / "manifest.parquet", 0, cfg["decode"], ref / "audio/000.parquet",
                 ref / "audio/000.rejected.parquet", threads=2, progress=False, fail_fast=False)
    roi_shard(res / "manifest.parquet", res / "audio/000.parquet", cfg["roi"], ref / "roi/000.parquet",
              ref / "roi/000.qc.parquet", ref / "roi/000.rejected.parquet", threads=2, progress=False, fail_fast=False)
    for name in ("audio/000.parquet", "audio/000.rejected.parquet", "roi/000.parquet", "roi/000.qc.parquet",
                 "roi/000.rejected.parquet"):
        assert (res / name).read_bytes() == (ref / name).read_bytes(), name

    # fail_fast changes no output, so flipping it reruns nothing ...
    config["fail_fast"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    dry = subprocess.run([*cmd, "-n"], env=env, cwd=work, capture_output=True, text=True)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    # ... and a fresh run with it stops at the first stage that rejects something, saying why in one line
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    stop = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(fresh), "--configfile",
                           str(fresh / "config.yaml"), "--cores", "2", "results/zoo/manifest.parquet"],
                          env=env, cwd=fresh, capture_output=True, text=True)
    assert stop.returncode != 0
    manifest_log = (fresh / "results/zoo/logs/manifest.log").read_text().strip().splitlines()
    assert manifest_log[-1] == "lipspeech manifest: fail_fast: manifest rejected bad_empty: empty file (0 bytes)"
    assert not (fresh / "results/zoo/manifest.parquet").exists()


@pytest.mark.slow
def test_synth_corpus_writes_only_its_output(tmp_path, monkeypatch):
    """The demo corpus generator (espeak-ng, both builtin faces) writes nothing outside its folder:
    no matplotlib config dir, no PulseAudio runtime files from espeak-ng's initialisation."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    env = _env(home, tmpdir)
    before = {"repo": _snapshot(REPO, (".git",)), "home": _snapshot(home), "tmpdir": _snapshot(tmpdir)}
    params = {"synth": {"speakers": ["s1", "s2"], "utterances_per_speaker": 1, "frame_size": [180, 144]}}
    proc = subprocess.run([str(BIN / "lipspeech"), "synth-corpus", "--params", json.dumps(params), "--out",
                           str(tmp_path / "results/raw"), "--threads", "2", "--no-progress"], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "results/raw").glob("s?/*.mpg"))) == 2
    after = {"repo": _snapshot(REPO, (".git",)), "home": _snapshot(home), "tmpdir": _snapshot(tmpdir)}
    changed = _outside_results({k: _diff(before[k], after[k]) for k in before})
    assert not any(changed.values()), f"written outside results/: {changed}"


# --------------------------------------------------------------------------- train, killed after a checkpoint
TRAIN_PARAMS = {"model": MODEL, "train": {**TRAIN, "max_steps": 12, "val_every": 3}}


def _train_cmd(results: Path) -> list[str]:
    return [str(BIN / "lipspeech"), "train", "--params", json.dumps(TRAIN_PARAMS), "--exp", EXP["name"],
            "--experiment", json.dumps(EXP), *store_args(results, *TRAIN_STORE_ARGS, stats=True),
            "--run-dir", str(results / "models/ltbs"),
            "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_checkpoints(tmp_path, monkeypatch):
    """SIGKILL once the first checkpoint exists; the rerun resumes from last.pt and ends with the
    same best.pt, last.pt and losses.csv bytes as a run that was never interrupted. Training and
    synthesis write nothing outside results/ (the repository, HOME, TMPDIR)."""
    from lipspeech.core.config import validate_config
    from lipspeech.training.stage import run_train

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    env = _env(home, tmpdir)
    before = {"repo": _snapshot(REPO, (".git",)), "home": _snapshot(home), "tmpdir": _snapshot(tmpdir)}
    res = fake_results(tmp_path / "killed" / "results" / "fake")
    ckpt = res / "models/ltbs/ckpt"
    proc = _start(_train_cmd(res), env, tmp_path, tmp_path / "train.log")
    _wait_for(lambda: (ckpt / "last.pt").exists(), proc, "the first checkpoint")
    _kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    import torch

    killed_at = torch.load(ckpt / "last.pt", weights_only=True)["step"]
    assert killed_at < 12, "the run had finished: not killed mid-run"
    rerun = subprocess.run(_train_cmd(res), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from step {killed_at}" in rerun.stdout
    synth = subprocess.run([str(BIN / "lipspeech"), "synthesize", "--exp", EXP["name"], "--experiment", json.dumps(EXP),
                            *store_args(res, "roi"), "--ckpt", str(ckpt / "best.pt"),
                            "--out", str(res / "eval/ltbs/mels.parquet"), "--threads", "1", "--no-progress"],
                           env=env, capture_output=True, text=True)
    assert synth.returncode == 0 and (res / "eval/ltbs/mels.parquet").exists(), synth.stderr
    after = {"repo": _snapshot(REPO, (".git",)), "home": _snapshot(home), "tmpdir": _snapshot(tmpdir)}
    changed = _outside_results({k: _diff(before[k], after[k]) for k in before})
    assert not any(changed.values()), f"written outside results/: {changed}"

    # the uninterrupted run, with the configuration the command line resolved
    cfg = validate_config(json.loads(json.dumps(TRAIN_PARAMS)))
    ref = fake_results(tmp_path / "ref" / "results" / "fake")
    run_train(ref, EXP, cfg["model"], cfg["train"], ref / "models/ltbs", threads=1, progress=False, fail_fast=False)
    for name in ("ckpt/best.pt", "ckpt/last.pt", "losses.csv"):
        assert (res / "models/ltbs" / name).read_bytes() == (ref / "models/ltbs" / name).read_bytes(), name
    with open(res / "models/ltbs/losses.csv") as fh:
        assert [r["step"] for r in csv.DictReader(fh) if r["split"] == "train"] == [str(i) for i in range(1, 13)]
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")], "temporaries left behind"


# --------------------------------------------------------------------------- the writers
def test_store_bytes_are_deterministic_and_arrays_not_dictionary_encoded(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"audio": [rng.standard_normal(50_000).astype(np.float32) for _ in range(3)]}
    cols = {"n_frames": pa.array([1, 2, 3], type=pa.int32()), "speaker": ["a", "a", "b"]}
    write_store(tmp_path / "a.parquet", StoreMeta("x", "h"), ["u1", "u2", "u3"], cols, arrays)
    time.sleep(0.01)
    write_store(tmp_path / "b.parquet", StoreMeta("x", "h"), ["u1", "u2", "u3"], cols, arrays)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    md = pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0)
    enc = {md.column(i).path_in_schema: md.column(i).encodings for i in range(md.num_columns)}
    assert not any("DICTIONARY" in e for e in enc["audio.list.element"])  # millions of distinct floats
    assert any("DICTIONARY" in e for e in enc["speaker"])


def test_checkpoint_bytes_do_not_depend_on_the_temporary_name(tmp_path):
    import torch

    from lipspeech.training.checkpoint import save_checkpoint

    state = {"step": 3, "w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(tmp_path / "a" / "last.pt", state)
    save_checkpoint(tmp_path / "b" / "last.pt", state)
    assert (tmp_path / "a/last.pt").read_bytes() == (tmp_path / "b/last.pt").read_bytes()


def test_temporaries_of_killed_writers_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "000.parquet"
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".000.parquet.{host}-{dead.pid}.abcd1234.tmp"
    live = tmp_path / f".000.parquet.{host}-{os.getpid()}.efgh5678.tmp"
    other_host = tmp_path / f".000.parquet.elsewhere.example.org-{dead.pid}.ijkl9012.tmp"
    other_file = tmp_path / f".001.parquet.{host}-{dead.pid}.mnop3456.tmp"
    for p in (stale, live, other_host, other_file):
        p.write_bytes(b"half a file")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".000.parquet.{host}-{os.getpid()}.")
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert not stale.exists() and live.exists() and other_host.exists() and other_file.exists()
    assert remove_stale_temporaries(tmp_path / "001.parquet") == [other_file]


def test_a_killed_writer_leaves_the_old_file_or_the_new_one(tmp_path):
    """SIGKILL in the middle of write_store: the store is still the previous version, and the next
    write clears the temporary the dead writer left."""
    path = tmp_path / "s.parquet"
    write_store(path, StoreMeta("x", "old"), ["u"], {"n": pa.array([1])})
    old = path.read_bytes()
    # the writer is stopped where the temporary is complete and the rename onto the store is next
    code = (f"import numpy as np, os, time\n"
            f"from lipspeech.core.store import write_store, StoreMeta\n"
            f"def slow(src, dst):\n"
            f"    print('written', flush=True); time.sleep(60)\n"
            f"os.replace = slow\n"
            f"write_store({str(path)!r}, StoreMeta('x', 'new'), ['u'], {{}}, {{'a': [np.zeros(10, np.float32)]}})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.stdout.readline().strip() == "written"  # the temporary is complete, not yet renamed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == old
    assert len(list(tmp_path.glob(".s.parquet.*.tmp"))) == 1
    write_store(path, StoreMeta("x", "newer"), ["u"], {"n": pa.array([2])})
    assert not list(tmp_path.glob(".s.parquet.*.tmp"))
