"""The Snakemake workflow: DAG, an end-to-end run in a temp dir, reruns after config edits."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from audit import undeclared_reads

from lipspeech.core.store import Store

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(cfg),
         "--cores", "2", *args],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, config, "-n")
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture
def grid_config(fixtures_dir):
    root = fixtures_dir / "grid"
    return {
        "corpus": {"name": "gridfix", "kind": "grid", "root": str(root), "audio_root": str(root / "audio_25k")},
        "manifest": {"shards": 3},
        # the fixture clips have no detectable face, so there is nothing to train on: no experiments
        "experiments": [],
    }


# per-shard jobs from decode on, and the corpus-wide jobs of the acoustic targets
FEATURE_JOBS = {"roi": 1, "mel": 1, "ssl_features": 1, "units": 1, "prosody": 1}


def after_decode(shards: int, experiments: int = 0) -> dict[str, int]:
    """Jobs that rerun when every decode store changes: the per-shard stages, then vocode (gt_vocoded + each
    experiment), evaluate (ground_truth, gt_vocoded + each experiment) and the report."""
    return {"decode": shards, **{k: v * shards for k, v in FEATURE_JOBS.items()}, "kmeans_fit": 1, "prosody_stats": 1,
            "vocode": 1 + experiments, "evaluate": 2 + experiments, "report": 1, "summary": 1, "all": 1}


def test_default_config_dag(tmp_path):
    """The demo config plans the generator, the manifest, one job per shard of each per-shard
    stage, k-means, the prosody statistics, the summary, training and synthesis of the one experiment."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert planned_jobs(tmp_path, config) == {"synth_corpus": 1, "manifest": 1, **after_decode(4, 1), "train": 1,
                                              "synthesize": 1}


def test_units_analysis_dag(tmp_path):
    """The unit analysis is opt-in: off the default target unless enabled, then also an input of the
    report (which is handed its table); on demand it is one job after every experiment's training."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    base = {"synth_corpus": 1, "manifest": 1, **after_decode(4, 1), "train": 1, "synthesize": 1}
    assert "units_analysis" not in planned_jobs(tmp_path, config)
    enabled = {**config, "units_analysis": {**config.get("units_analysis", {}), "enabled": True}}
    assert planned_jobs(tmp_path, enabled) == {**base, "units_analysis": 1}
    out = snakemake(tmp_path, enabled, "-n", "-p")
    report = out.stdout.split("rule report:", 1)[1].split("rule ", 1)[0]
    assert "--units-analysis results/synthgrid/units_analysis/quality.parquet" in report
    analysis = out.stdout.split("rule units_analysis:", 1)[1].split("rule ", 1)[0]
    assert "--raw results/synthgrid/raw" in analysis
    assert "--model ltbs=results/synthgrid/models/ltbs/ckpt/best.pt" in analysis
    on_demand = snakemake(tmp_path, config, "-n", "units_analysis")
    assert re.search(r"^units_analysis\s+1\s*$", on_demand.stdout, re.M)
    assert not re.search(r"^report\s+\d", on_demand.stdout, re.M)


def test_lrs3_config_dag(tmp_path, grid_config):
    """An LRS3 config plans like any real corpus (the manifest reads the tree when it runs); the manifest
    job is handed the corpus.lrs3 options, which the other kinds' params leave out (results made before
    those options existed are not rerun for them)."""
    from lrs3tree import build_lrs3

    root = build_lrs3(tmp_path / "LRS3")
    config = {"corpus": {"name": "lrs3fix", "kind": "lrs3", "root": str(root), "lrs3": {"subset": "433h"}},
              "manifest": {"shards": 2}, "experiments": []}
    assert planned_jobs(tmp_path, config) == {"manifest": 1, **after_decode(2)}
    manifest_job = snakemake(tmp_path, config, "-n", "-p").stdout.split("rule manifest:", 1)[1].split("rule ", 1)[0]
    assert '"lrs3": {"subset": "433h", "val_list": null, "val_speakers": 100}' in manifest_job
    assert f"--root {root}" in manifest_job
    grid_job = snakemake(tmp_path, grid_config, "-n", "-p").stdout.split("rule manifest:", 1)[1].split("rule ", 1)[0]
    assert "--params" in grid_job and "lrs3" not in grid_job


def test_a_train_option_that_is_off_is_not_in_the_params(tmp_path):
    """train.lead_in_max_frames came after trained models: at 0 (off) the train job's params leave it out, so
    those models are not rerun for it; set, the job carries it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    jobs = {}
    for value in (0, 5):
        cfg = {**config, "train": {**config.get("train", {}), "lead_in_max_frames": value}}
        (tmp_path / str(value)).mkdir()
        out = snakemake(tmp_path / str(value), cfg, "-n", "-p").stdout
        jobs[value] = out.split("rule train:", 1)[1].split("rule ", 1)[0]
    assert '"train": {' in jobs[0] and "lead_in_max_frames" not in jobs[0]
    assert '"lead_in_max_frames": 5' in jobs[5]


def test_the_read_audit_catches_an_undeclared_read(tmp_path):
    """A stage that reads a results file its command line does not name is caught; its own outputs
    and what lies under a folder it was given are not."""
    import json as _json

    (tmp_path / "audit").mkdir()
    record = {"argv": ["lipspeech", "x", "--in", "results/c/a/000.parquet", "--run-dir", "results/c/models/m"],
              "cwd": str(tmp_path), "written": ["results/c/b/.000.parquet.tmp"], "listed": ["results/c/a"],
              "read": ["results/c/a/000.parquet", "results/c/models/m/ckpt/last.pt", "results/c/b/.000.parquet.tmp",
                       "results/c/a/001.parquet", "/usr/lib/python3/x.py"]}
    (tmp_path / "audit" / "1.json").write_text(_json.dumps(record))
    assert undeclared_reads(tmp_path / "audit") == ["x --in: read results/c/a/001.parquet (not on its command line)"]


def test_jobs_find_the_package_of_the_interpreter_that_runs_snakemake(tmp_path, grid_config):
    """.venv/bin/snakemake without the venv on PATH: the jobs still run this environment's lipspeech."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(grid_config))
    bare = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [str(BIN / "snakemake"), "results/gridfix/manifest.parquet", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"],
        capture_output=True, text=True, env=bare, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(Store(tmp_path / "results" / "gridfix" / "manifest.parquet")) > 0


def test_jobs_run_the_checkout_in_an_environment_without_the_package(tmp_path, grid_config):
    """As under `--sdm conda` (envs/lipspeech.yaml has the dependencies, not lipspeech): an interpreter
    with no `lipspeech` script beside it and none on PATH; the jobs run the workflow checkout's code
    through `python -m lipspeech.cli`."""
    env_dir = tmp_path / "env"
    (env_dir / "bin").mkdir(parents=True)
    # a venv-like environment sharing this one's site-packages, with no console scripts
    (env_dir / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (env_dir / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (env_dir / "lib").symlink_to(Path(sys.prefix) / "lib")
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(grid_config))
    bare = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"}
    proc = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "snakemake", "results/gridfix/manifest.parquet", "-s",
         str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1"],
        capture_output=True, text=True, env=bare, cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(Store(work / "results" / "gridfix" / "manifest.parquet")) > 0
    assert "manifest:" in (work / "results" / "gridfix" / "logs" / "manifest.log").read_text()


def test_experiments_dag(tmp_path, grid_config):
    """One train, one synthesize and one vocode job per experiment (+ vocode of gt_vocoded); train_vocoder
    only for a HiFi-GAN without a checkpoint."""
    experiments = [{"name": "ltbs"}, {"name": "no_pitch", "overrides": {"use_pitch": False}}]
    config = {**grid_config, "experiments": experiments, "train": {"max_steps": 2, "val_every": 1}}
    expected = {"manifest": 1, **after_decode(3, 2), "train": 2, "synthesize": 2}
    assert planned_jobs(tmp_path, config) == expected
    assert planned_jobs(tmp_path, {**config, "vocoder": {"kind": "hifigan"}}) == {**expected, "train_vocoder": 1}
    ckpt = tmp_path / "given.pt"
    ckpt.write_bytes(b"")
    assert planned_jobs(tmp_path, {**config, "vocoder": {"kind": "hifigan", "checkpoint": str(ckpt)}}) == expected


def test_model_from_dag(tmp_path, grid_config):
    """An experiment with model_from trains nothing: it synthesizes (here chunk by chunk) with the
    other experiment's checkpoint, which the DAG shows as its input."""
    experiments = [{"name": "st", "streaming": {"chunk_frames": 4}},
                   {"name": "st_c4", "model_from": "st", "decode_chunk_frames": 4}]
    config = {**grid_config, "experiments": experiments, "train": {"max_steps": 2, "val_every": 1}}
    assert planned_jobs(tmp_path, config) == {"manifest": 1, **after_decode(3, 2), "train": 1, "synthesize": 2}
    out = snakemake(tmp_path, config, "-n", "-p", "results/gridfix/eval/st_c4/mels.parquet")
    assert "--ckpt results/gridfix/models/st/ckpt/best.pt" in out.stdout
    assert "models/st_c4" not in out.stdout


def test_init_from_dag(tmp_path, grid_config):
    """An experiment with init_from trains after the experiment it starts from: that one's best.pt is an
    input of its train job (and only of its)."""
    experiments = [{"name": "off"}, {"name": "st", "streaming": {"chunk_frames": 2}, "init_from": "off"}]
    config = {**grid_config, "experiments": experiments, "train": {"max_steps": 2, "val_every": 1}}
    out = snakemake(tmp_path, config, "-n", "results/gridfix/models/st/ckpt/best.pt").stdout
    assert out.count("rule train:") == 2
    trains = [b for b in out.split("rule ")[1:] if b.startswith("train:")]
    st = next(b for b in trains if "output: results/gridfix/models/st/" in b)
    off = next(b for b in trains if "output: results/gridfix/models/off/" in b)
    assert "results/gridfix/models/off/ckpt/best.pt" in st.split("output:")[0]
    assert "models/st" not in off.split("output:")[0] and "ckpt" not in off.split("output:")[0]
    # distill_from: the teacher's best.pt is an input of the student's train job too
    experiments = [{"name": "off"}, {"name": "di", "streaming": {"chunk_frames": 2}, "distill_from": "off"}]
    out = snakemake(tmp_path, {**config, "experiments": experiments}, "-n", "results/gridfix/models/di/ckpt/best.pt").stdout
    di = next(b for b in out.split("rule ")[1:] if b.startswith("train:") and "output: results/gridfix/models/di/" in b)
    assert out.count("rule train:") == 2 and "results/gridfix/models/off/ckpt/best.pt" in di.split("output:")[0]


def test_learning_curve_dag(tmp_path, grid_config):
    """Snapshots (train.snapshot_every, the section's or an experiment's own) plan one curve job per
    experiment that trains, an input of the report; its command names the run's snapshot folder."""
    experiments = [{"name": "a", "train": {"snapshot_every": 1}}, {"name": "b"},
                   {"name": "a_raw", "model_from": "a", "weights": "raw"}]
    config = {**grid_config, "experiments": experiments, "train": {"max_steps": 2, "val_every": 1}}
    assert planned_jobs(tmp_path, config) == {"manifest": 1, **after_decode(3, 3), "train": 2, "synthesize": 3,
                                              "curve": 1}
    out = snakemake(tmp_path, config, "-n", "-p", "results/gridfix/report.html")
    assert "--snapshots results/gridfix/models/a/ckpt/snapshots" in out.stdout
    assert "--curve a=results/gridfix/eval/a/curve.json" in out.stdout
    # (what the config check says of bad experiment train keys, without a Snakemake run each)
    from lipspeech.core.config import ConfigError, validate_config

    bad = {**config, "experiments": [*experiments, {"name": "c", "model_from": "a", "train": {"max_steps": 3}}]}
    with pytest.raises(ConfigError, match="cannot set preset, overrides, streaming or train"):
        validate_config(json.loads(json.dumps(bad)))
    with pytest.raises(ConfigError, match="a.train.max_step: unknown key"):
        validate_config({**json.loads(json.dumps(config)), "experiments": [{"name": "a", "train": {"max_step": 3}}]})


def test_end_to_end_and_config_edits_rerun_only_dependants(tmp_path, grid_config):
    assert planned_jobs(tmp_path, grid_config) == {"manifest": 1, **after_decode(3)}
    audit = tmp_path / "audit"  # every job records what it reads (lipspeech/core/audit.py)
    snakemake(tmp_path, grid_config, env={"LIPSPEECH_AUDIT_DIR": str(audit)})
    assert len(list(audit.glob("*.json"))) >= 20 and undeclared_reads(audit) == []
    res = tmp_path / "results" / "gridfix"
    manifest = Store(res / "manifest.parquet", expect_stage="manifest").df
    assert len(manifest) == 3
    decoded = sum(len(Store(res / "audio" / f"{s:03d}.parquet", expect_stage="decode")) for s in range(3))
    assert decoded == 3
    assert "rejected" in (res / "summary.txt").read_text()
    assert (res / "logs" / "manifest.log").exists() and (res / "benchmarks" / "decode" / "000.tsv").exists()
    # acoustic targets: every stream fitted to the video frame count
    for s in range(3):
        audio = Store(res / "audio" / f"{s:03d}.parquet", expect_stage="decode")
        mel = Store(res / "mel" / f"{s:03d}.parquet", expect_stage="mel")
        units = Store(res / "units" / f"{s:03d}.parquet", expect_stage="units")
        prosody = Store(res / "prosody" / f"{s:03d}.parquet", expect_stage="prosody")
        assert mel.utts == units.utts == prosody.utts == audio.utts
        for i, n in enumerate(audio.df["n_frames"]):
            assert mel.array("mel", i).shape == (4 * n, 80)
            assert units.array("units", i).shape == (2 * n,)
            assert prosody.array("lf0", i).shape == prosody.array("energy", i).shape == (n,)
        roi = Store(res / "roi" / f"{s:03d}.parquet", expect_stage="roi")
        roi_rejected = pq.read_table(res / "roi" / f"{s:03d}.rejected.parquet").column("utt").to_pylist()
        assert sorted(roi.utts + roi_rejected) == audio.utts
        for i, utt in enumerate(roi.utts):
            assert roi.array("roi", i).shape == (audio.df["n_frames"][audio.utts.index(utt)], 96, 96)
        assert not (res / "ssl" / f"{s:03d}.parquet").exists()  # temp(): removed once the units exist
    kmeans = json.loads((res / "kmeans" / "kmeans.json").read_text())
    assert kmeans["clamped"] and kmeans["k"] < 200  # three short clips: fewer frames than clusters
    assert "clamping k" in (res / "logs" / "kmeans_fit.log").read_text()
    assert set(json.loads((res / "prosody" / "stats.json").read_text())["speakers"]) == {"s1", "s2"}
    # the ground truth's own evaluation: every test utterance scored or rejected
    gt = json.loads((res / "eval" / "ground_truth" / "summary.json").read_text())
    n_test = int((manifest["split"] == "test").sum())
    assert gt["system"] == "ground_truth" and gt["n"] + gt["n_rejected"] == n_test
    assert (res / "eval" / "ground_truth" / "metrics.parquet").exists()
    vocoded = Store(res / "eval" / "gt_vocoded" / "audio.parquet", expect_stage="vocode")
    assert vocoded.meta.extra["system"] == "gt_vocoded" and vocoded.meta.extra["vocoder"] == "griffin_lim"
    test_utts = set(manifest.loc[manifest["split"] == "test", "utt"])
    assert set(vocoded.utts) <= test_utts
    # second run: nothing to do
    assert planned_jobs(tmp_path, grid_config) == {}

    # a section no rule of this corpus reads: still nothing to do
    edited = {**grid_config, "synth": {"seed": 7}}
    assert planned_jobs(tmp_path, edited) == {}
    # the decode section: decode and what depends on it
    edited = {**grid_config, "decode": {"max_av_mismatch": 0.3}}
    assert planned_jobs(tmp_path, edited) == after_decode(3)
    # the manifest section: manifest and everything after it
    edited = {**grid_config, "manifest": {**grid_config["manifest"], "min_duration": 0.1}}
    assert planned_jobs(tmp_path, edited) == {"manifest": 1, **after_decode(3)}
    # the evaluate section: only the evaluation
    edited = {**grid_config, "evaluate": {"pesq": False}}
    assert planned_jobs(tmp_path, edited) == {"evaluate": 2, "report": 1, "all": 1}
    # the prosody section: prosody, its statistics, the summary and the evaluation (same F0/energy), nothing else
    edited = {**grid_config, "prosody": {"f0_method": "harvest"}}
    assert planned_jobs(tmp_path, edited) == {"prosody": 3, "prosody_stats": 1, "summary": 1, "evaluate": 2, "report": 1,
                                              "all": 1}
    # the mel section: mel, prosody (its energy uses the mel STFT), the vocoded ground-truth mels and the evaluation
    edited = {**grid_config, "mel": {"n_mels": 40}}
    assert planned_jobs(tmp_path, edited) == {"mel": 3, "prosody": 3, "prosody_stats": 1, "vocode": 1, "summary": 1,
                                              "evaluate": 2, "report": 1, "all": 1}
    # the vocoder: Griffin-Lim settings revocode (and rescore gt_vocoded); HiFi-GAN training keys are not read
    edited = {**grid_config, "vocoder": {"griffin_lim": {"n_iter": 8}}}
    assert planned_jobs(tmp_path, edited) == {"vocode": 1, "evaluate": 1, "report": 1, "all": 1}
    edited = {**grid_config, "vocoder": {"train": {"max_steps": 5, "val_every": 5}}}
    assert planned_jobs(tmp_path, edited) == {}
    # the roi section: the ROI crops and the summary, nothing else
    edited = {**grid_config, "roi": {"smoothing": 9}}
    assert planned_jobs(tmp_path, edited) == {"roi": 3, "summary": 1, "all": 1}
    # the kmeans section: k-means and the units (the temporary ssl stores are rebuilt to refit)
    edited = {**grid_config, "kmeans": {"k": 50}}
    assert planned_jobs(tmp_path, edited) == {"ssl_features": 3, "kmeans_fit": 1, "units": 3, "summary": 1, "all": 1}


def test_bad_config_stops_with_the_key_named(tmp_path, grid_config):
    bad = {**grid_config, "manifest": {"shardz": 2}}
    proc = snakemake(tmp_path, bad, "-n", check=False)
    assert proc.returncode != 0
    assert "manifest.shardz: unknown key" in proc.stdout + proc.stderr
