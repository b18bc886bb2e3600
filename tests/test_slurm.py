"""The workflow on a real SLURM cluster, against a local run of the same config (`make test-slurm`).

`make test-slurm` brings a single-node SLURM up on this machine (scripts/slurm/up.sh),
sets LIPSPEECH_TEST_SLURM=1, runs this file and tears the cluster down. It runs the
tiny SynthGRID config tests/slurm/config.yaml twice, side by side:

* on SLURM: ``snakemake --profile workflow/profiles/slurm --profile tests/slurm/profile``
  (the cluster profile, with the test node's resources layered on top; training
  runs data-parallel on 2 CPU processes under srun and torchrun);
* locally: ``snakemake --cores 2`` with the same threads per rule and processes for training;

then checks that every feature store, the k-means centroids, the trained model and
the synthesised mels are the same files (or the same arrays), and that SLURM's
accounting (sacct) shows one COMPLETED job per shard of every per-shard rule.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from audit import undeclared_reads

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / "tests" / "slurm" / "config.yaml"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
SLURM_DIR = Path(os.environ.get("LIPSPEECH_SLURM_DIR", "/tmp/lipspeech-slurm"))
CORPUS = "tiny"
SHARDS = ("000", "001")
# rules that run once per shard (decode, mel and prosody share one job per shard: the profile's group)
PER_SHARD = ("decode", "mel", "prosody", "roi", "ssl_features", "units")

pytestmark = pytest.mark.skipif(
    os.environ.get("LIPSPEECH_TEST_SLURM") != "1",
    reason="needs a SLURM cluster: `make test-slurm` brings one up, runs this, tears it down",
)


def _env() -> dict[str, str]:
    conf = SLURM_DIR / "etc" / "slurm.conf"
    if not conf.exists():
        pytest.fail(f"{conf} missing: start the cluster with scripts/slurm/up.sh (or run `make test-slurm`)")
    path = os.pathsep.join([str(SLURM_DIR / "bin"), str(BIN), os.environ.get("PATH", "")])
    return dict(os.environ, SLURM_CONF=str(conf), PATH=path)


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(CONFIG),
            *args]


def _local_args() -> list[str]:
    """The test profile's threads per rule and training processes, for the local run."""
    profile = yaml.safe_load((TEST_PROFILE / "config.yaml").read_text())
    threads = [f"{rule}={n}" for rule, n in profile["set-threads"].items()]
    return ["--cores", "2", "--set-threads", *threads, "--set-resources", "train:nproc=2"]


def _finished(workdir: Path) -> float:
    """When a finished Snakemake run wrote its last log line (its own end, whatever waited for it)."""
    return max(p.stat().st_mtime for p in (workdir / ".snakemake" / "log").glob("*.snakemake.log"))


def _check(proc: subprocess.CompletedProcess | subprocess.Popen, out: str, what: str) -> None:
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{out[-6000:]}")


def _same_parquet(a: Path, b: Path) -> str | None:
    """None when two stores hold the same columns, arrays and metadata (else what differs)."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema.metadata != tb.schema.metadata:
        return "schema metadata"
    if not ta.equals(tb):
        return "contents"
    return None


#: what may differ between two runs of the same DAG: the clock (evaluate's timings, the report's date)
_CLOCK_KEYS = ("seconds_total", "seconds_per_utt")
_REPORT_DATE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC")


def _without_clock(name: str, data: bytes) -> bytes:
    """A file's bytes less what only says when or how fast it was made."""
    if re.fullmatch(r"eval/[^/]+/summary\.json", name):
        summary = json.loads(data)
        for key in _CLOCK_KEYS:
            summary.pop(key)
        return json.dumps(summary, sort_keys=True).encode()
    if name in ("report.html", "report.md"):
        return _REPORT_DATE.sub(b"(date)", data)
    return data


def _compare_trees(slurm: Path, local: Path) -> tuple[list[str], list[str]]:
    """(files compared, differences) between two results/{corpus} folders.

    Every file but logs, benchmarks and the training run's bookkeeping (run.json holds
    the seconds it took) must be the same bytes, checkpoints included, less the clock
    in evaluate's summaries and the report (:func:`_without_clock`); a Parquet store
    that is not may still hold the same arrays and metadata (reported as a
    difference otherwise).
    """
    skip = re.compile(r"^(logs|benchmarks)/|^models/[^/]+/run\.json$")
    compared, problems = [], []
    names = sorted(str(p.relative_to(slurm)) for p in slurm.rglob("*") if p.is_file())
    local_names = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    for name in sorted(set(names) ^ set(local_names)):
        if not skip.search(name):
            problems.append(f"{name}: only in the {'SLURM' if name in names else 'local'} run")
    for name in names:
        if skip.search(name) or name not in local_names:
            continue
        a, b = slurm / name, local / name
        compared.append(name)
        if _without_clock(name, a.read_bytes()) == _without_clock(name, b.read_bytes()):
            continue
        why = _same_parquet(a, b) if name.endswith(".parquet") else "bytes"
        if why:
            problems.append(f"{name}: {why} differ")
    # a checkpoint that is not the same bytes: say whether at least the parameters are the same
    for name in [p.split(":")[0] for p in problems if p.endswith(".pt: bytes differ")]:
        ca, cb = (torch.load(root / name, weights_only=True) for root in (slurm, local))
        same = ca["step"] == cb["step"] and all(torch.equal(v, cb["model"][k]) for k, v in ca["model"].items())
        problems.append(f"{name}: the parameters are {'the same' if same else 'different too'}")
    return compared, problems


def _slurm_jobs(workdir: Path) -> dict[str, list[str]]:
    """SLURM job id -> the Snakemake jobs it ran ("rule:shard=000"), from each job's SLURM log.

    The log's first lines are the command the job ran, with ``--target-jobs``.
    """
    jobs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        command = next((line for line in log.read_text().splitlines() if "--target-jobs" in line), "")
        targets = command.split("--target-jobs", 1)[1].split(" --", 1)[0].split() if command else []
        jobs[log.stem] = [t.strip("'\"") for t in targets]
    return jobs


def _sacct(job_ids: list[str], env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """SLURM job id -> (state, comment) from the accounting database."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,Comment"],
                         env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|", 2) for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def test_pipeline_on_slurm_equals_the_local_run(tmp_path):
    env = _env()
    subprocess.run(["sinfo"], env=env, check=True, capture_output=True)
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()

    # both at once: the SLURM run mostly waits (queue, sacct polls, job start-up)
    t0 = time.time()
    local_log = open(tmp_path / "local.log", "w+")
    # the local run also records what each job reads (lipspeech/core/audit.py): only what its rule declares
    local_proc = subprocess.Popen(_snakemake(local, *_local_args()), cwd=local,
                                  env=dict(env, LIPSPEECH_AUDIT_DIR=str(tmp_path / "audit")), stdout=local_log,
                                  stderr=subprocess.STDOUT)
    slurm_proc = subprocess.run(
        _snakemake(on_slurm, "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "--profile", str(TEST_PROFILE)),
        cwd=on_slurm, env=env, capture_output=True, text=True,
    )
    slurm_s = time.time() - t0
    local_proc.wait()
    local_s = _finished(local) - t0 if local_proc.returncode == 0 else float("nan")
    local_log.seek(0)
    _check(slurm_proc, slurm_proc.stdout + slurm_proc.stderr, "snakemake on SLURM")
    _check(local_proc, local_log.read(), "the local snakemake run")
    print(f"\nSLURM run {slurm_s:.0f} s; the local run, started at the same time, {local_s:.0f} s")

    # 1. the same results
    compared, problems = _compare_trees(on_slurm / "results" / CORPUS, local / "results" / CORPUS)
    stores = [c for c in compared if c.endswith(".parquet")]
    assert len(stores) >= 6 * len(SHARDS) and "kmeans/centroids.npy" in compared, compared
    assert not problems, "SLURM and local results differ:\n" + "\n".join(problems)
    print(f"{len(compared)} files equal ({len(stores)} stores)")

    # 1b. no job of the local run read a results file its rule did not give it
    jobs_audited = len(list((tmp_path / "audit").glob("*.json")))
    assert jobs_audited >= 20, jobs_audited
    assert undeclared_reads(tmp_path / "audit") == []

    # 2. each shard of each per-shard rule ran as a SLURM job of its own, and sacct knows every job
    jobs = _slurm_jobs(on_slurm)
    ran = {target: job for job, targets in jobs.items() for target in targets}
    for rule in PER_SHARD:
        ids = [ran.get(f"{rule}:shard={shard}") for shard in SHARDS]
        assert None not in ids, f"{rule}: no SLURM job for some shard ({ids}; jobs: {jobs})"
        assert len(set(ids)) == len(SHARDS), f"{rule}: shards shared a SLURM job: {ids}"
    for job, targets in jobs.items():
        shards = {t.split("shard=", 1)[1] for t in targets if "shard=" in t}
        assert len(shards) <= 1, f"SLURM job {job} ran several shards: {targets}"
    accounting = _sacct(sorted(jobs), env)
    assert set(accounting) == set(jobs), f"sacct knows {sorted(accounting)}, the logs name {sorted(jobs)}"
    assert all(state == "COMPLETED" for state, _ in accounting.values()), accounting
    for job, targets in jobs.items():
        if len(targets) == 1 and "shard=" in targets[0]:  # a plain (ungrouped) job says what it ran in its comment
            rule, shard = targets[0].split(":shard=")
            assert accounting[job][1] == f"rule_{rule}_wildcards_{shard}", (job, accounting[job])
    assert "data-parallel: 2 processes" in (on_slurm / "results" / CORPUS / "logs" / "train" / "ltbs.log").read_text()
    print(f"{len(jobs)} SLURM jobs, all COMPLETED in sacct; per shard: "
          + ", ".join(f"{r} {[ran[f'{r}:shard={s}'] for s in SHARDS]}" for r in PER_SHARD))
