# Shared helpers: config validation, result paths, shards.
import json
import os
import shlex
import sys
from pathlib import Path

from lipspeech.core.config import ConfigError, validate_config
from lipspeech.core.settings import Settings
from lipspeech.data.manifest import shard_name
from lipspeech.evaluation.families import check_families

try:
    validate_config(config)
    # a metric family whose package is missing is said now, not by a failing job at the end
    check_families(config["evaluate"])
except (ConfigError, RuntimeError) as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
# The validated config as typed objects, for the rules' own decisions; the rules' params carry
# the mappings (what a job hashes and stores).
SETTINGS = Settings.from_section(config)
EXPERIMENT = {e.name: e for e in SETTINGS.experiments}  # by name

# Every job's shell starts with this prefix. A prefix replaces Snakemake's own, so it restates
# bash strict mode (without pipefail a failing `lipspeech ... | tee log` would pass). It hands
# config key fail_fast to every job's `lipspeech` through the environment, not through params:
# flipping it changes no output, so it must not rerun anything. And it says which lipspeech runs:
# - the one beside the interpreter running Snakemake when there is one (a venv, e.g.
#   .venv/bin/snakemake run without activating it), ahead of whatever PATH holds;
# - else (an environment without the package: `--sdm conda` with envs/lipspeech.yaml) this
#   workflow's own checkout, run by the environment's python.
_BIN = Path(sys.executable).parent
if (_BIN / "lipspeech").exists():
    _LIPSPEECH = f"export PATH={shlex.quote(str(_BIN))}:\"$PATH\"; "
else:
    # (Snakemake formats the prefix like a shell command: its braces are doubled)
    _LIPSPEECH = (f"export PYTHONPATH={shlex.quote(str(workflow.basedir))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
                  'lipspeech() {{ python -m lipspeech.cli "$@"; }}; ')
shell.prefix(f"set -euo pipefail; export LIPSPEECH_FAIL_FAST={int(bool(config['fail_fast']))}; {_LIPSPEECH}")

CORPUS = config["corpus"]["name"]
SYNTHGRID = config["corpus"]["kind"] == "synthgrid"
# every rule's conda environment (`--sdm conda`), relative to the rule files; see scripts/conda_env.py
CONDA_ENV = "../../envs/lipspeech.yaml"
RESULTS = f"results/{CORPUS}"
SHARDS = [shard_name(i) for i in range(config["manifest"]["shards"])]


wildcard_constraints:
    shard=r"\d+",


def params_json(*sections):
    """The config sections a rule depends on, as one JSON string (its `params`)."""
    return json.dumps({s: rule_section(s) for s in sections}, sort_keys=True)


#: train options added after results were made, with the value that turns each off: left out of the
#: params while off (the stage fills in the schema's default), so those results stay up to date
TRAIN_OFF = {"lead_in_max_frames": 0}


def rule_section(name):
    """A config section as a rule's params carry it. The options of one corpus kind (corpus.lrs3)
    are left out for the other kinds, and the train options of TRAIN_OFF while off: they change
    nothing there, and a params change reruns the rule, so results made before those options
    existed stay up to date."""
    if name == "corpus" and config["corpus"]["kind"] != "lrs3":
        return {k: v for k, v in config["corpus"].items() if k != "lrs3"}
    if name == "train":
        return {k: v for k, v in config["train"].items() if k not in TRAIN_OFF or v != TRAIN_OFF[k]}
    return config[name]


def shard_outputs(folder, suffix=".parquet"):
    """Every shard's file of one stage."""
    return expand(f"{RESULTS}/{folder}/{{shard}}{suffix}", shard=SHARDS)


# Input and parameter functions of the rules (the lint wants them here, not beside the rules).


def experiment_json(wildcards):
    """The experiment's own config entry, as JSON (editing it reruns only that experiment)."""
    for e in config["experiments"]:
        if e["name"] == wildcards.exp:
            return json.dumps(e, sort_keys=True)
    raise WorkflowError(f"no experiment named {wildcards.exp!r} in config['experiments']")


def model_ckpt(exp):
    """The best.pt an experiment synthesizes with: its own, or that of the experiment its
    model_from names (which then trains nothing of its own)."""
    if exp not in EXPERIMENT:
        raise WorkflowError(f"no experiment named {exp!r} in config['experiments']")
    return f"{RESULTS}/models/{EXPERIMENT[exp].model_from or exp}/ckpt/best.pt"


def synthesize_ckpt(wildcards):
    return model_ckpt(wildcards.exp)


def init_ckpt(wildcards):
    """The best.pt an experiment's training starts from (its init_from), or none. The train stage
    finds it beside its own run directory (models/{init_from}/ckpt/best.pt): an input only, so a
    run without init_from keeps its job's command and params."""
    e = EXPERIMENT.get(wildcards.exp)
    return [f"{RESULTS}/models/{e.init_from}/ckpt/best.pt"] if e is not None and e.init_from else []


def teacher_ckpt(wildcards):
    """The best.pt an experiment's training distils from (its distill_from), or none; found the
    same way as init_ckpt's."""
    e = EXPERIMENT.get(wildcards.exp)
    return [f"{RESULTS}/models/{e.distill_from}/ckpt/best.pt"] if e is not None and e.distill_from else []


def system_audio(wildcards):
    """The system's vocoded audio; ground_truth is scored from the decode stores alone."""
    if wildcards.system == "ground_truth":
        return []
    return [f"{RESULTS}/eval/{wildcards.system}/audio.parquet"]


def vocode_inputs(wildcards):
    """gt_vocoded: the manifest (test split) and the mel stores; an experiment: its synthesized
    mels; either way the HiFi-GAN checkpoint when there is one."""
    if wildcards.system == "gt_vocoded":
        inputs = {"manifest": f"{RESULTS}/manifest.parquet", "mel": shard_outputs("mel")}
    else:
        inputs = {"mels": f"{RESULTS}/eval/{wildcards.system}/mels.parquet"}
    if VOCODER_CKPT:
        inputs["vocoder"] = VOCODER_CKPT
    return inputs


def report_args(wildcards, input):
    """The report's per-system options, in row order (--system NAME SUMMARY METRICS [AUDIO]), the
    experiments' checkpoints and the units-analysis table, all from the rule's inputs."""
    args = []
    for i, name in enumerate(REPORT_SYSTEMS):
        files = [input.summaries[i], input.metrics[i]] + ([input.vocoded[i - 1]] if i > 0 else [])
        args.append("--system " + " ".join(shlex.quote(str(x)) for x in [name, *files]))
    if input.models:
        args.append("--model " + " ".join(shlex.quote(f"{e}={p}") for e, p in zip(EXPERIMENTS, input.models)))
    if input.units_analysis:
        args.append(f"--units-analysis {shlex.quote(input.units_analysis[0])}")
    if input.curves:
        args.append("--curve " + " ".join(shlex.quote(f"{e}={p}") for e, p in zip(CURVE_EXPERIMENTS, input.curves)))
    return " ".join(args)
