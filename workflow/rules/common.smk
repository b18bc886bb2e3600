# Shared helpers: config validation, result paths, shards.
import json
import os
import shlex
import sys
from pathlib import Path

from lipspeech.config import ConfigError, validate_config
from lipspeech.data.manifest import shard_name
from lipspeech.evaluation.families import check_families

try:
    validate_config(config)
    # a metric family whose package is missing is said now, not by a failing job at the end
    check_families(config["evaluate"])
except (ConfigError, RuntimeError) as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# fail_fast reaches the jobs through the environment (every job's `lipspeech` reads it), not
# through params: flipping it changes no output, so it must not rerun anything.
os.environ["LIPSPEECH_FAIL_FAST"] = "1" if config["fail_fast"] else "0"

# Jobs run the `lipspeech` of the interpreter that runs Snakemake (e.g. .venv/bin/snakemake run
# without activating the venv), ahead of whatever PATH holds; without one there (a conda
# deployment, `--sdm conda`) PATH decides. A prefix replaces Snakemake's own, so it restates
# bash strict mode: without pipefail a failing `lipspeech ... | tee log` would pass.
_BIN = Path(sys.executable).parent
if (_BIN / "lipspeech").exists():
    shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(str(_BIN))}:\"$PATH\"; ")

CORPUS = config["corpus"]["name"]
RESULTS = f"results/{CORPUS}"
SHARDS = [shard_name(i) for i in range(config["manifest"]["shards"])]


wildcard_constraints:
    shard=r"\d+",


def params_json(*sections):
    """The config sections a rule depends on, as one JSON string (its `params`)."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def shard_outputs(folder, suffix=".parquet"):
    """Every shard's file of one stage."""
    return expand(f"{RESULTS}/{folder}/{{shard}}{suffix}", shard=SHARDS)
