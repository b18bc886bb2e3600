"""The Snakemake workflow: DAG, an end-to-end run in a temp dir, reruns after config edits."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lipspeech.store import Store

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
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
    }


def test_default_config_dag(tmp_path):
    """The demo config plans the generator, the manifest, one decode job per shard, the summary."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert planned_jobs(tmp_path, config) == {"synth_corpus": 1, "manifest": 1, "decode": 4, "summary": 1, "all": 1}


def test_end_to_end_and_config_edits_rerun_only_dependants(tmp_path, grid_config):
    assert planned_jobs(tmp_path, grid_config) == {"manifest": 1, "decode": 3, "summary": 1, "all": 1}
    snakemake(tmp_path, grid_config)
    res = tmp_path / "results" / "gridfix"
    manifest = Store(res / "manifest.parquet", expect_stage="manifest").df
    assert len(manifest) == 3
    decoded = sum(len(Store(res / "audio" / f"{s:03d}.parquet", expect_stage="decode")) for s in range(3))
    assert decoded == 3
    assert "rejected" in (res / "summary.txt").read_text()
    assert (res / "logs" / "manifest.log").exists() and (res / "benchmarks" / "decode" / "000.tsv").exists()
    # second run: nothing to do
    assert planned_jobs(tmp_path, grid_config) == {}

    # a section no rule of this corpus reads: still nothing to do
    edited = {**grid_config, "synth": {"seed": 7}}
    assert planned_jobs(tmp_path, edited) == {}
    # the decode section: decode and what depends on it
    edited = {**grid_config, "decode": {"max_av_mismatch": 0.3}}
    assert planned_jobs(tmp_path, edited) == {"decode": 3, "summary": 1, "all": 1}
    # the manifest section: manifest and everything after it
    edited = {**grid_config, "manifest": {**grid_config["manifest"], "min_duration": 0.1}}
    assert planned_jobs(tmp_path, edited) == {"manifest": 1, "decode": 3, "summary": 1, "all": 1}


def test_bad_config_stops_with_the_key_named(tmp_path, grid_config):
    bad = {**grid_config, "manifest": {"shardz": 2}}
    proc = snakemake(tmp_path, bad, "-n", check=False)
    assert proc.returncode != 0
    assert "manifest.shardz: unknown key" in proc.stdout + proc.stderr
