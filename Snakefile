# lipspeech: silent talking-face video -> speech ("Let There Be Sound", AAAI 2024).
#
#   snakemake --cores N                                 everything for the configured corpus
#   snakemake --cores N --configfile my.yaml            another corpus / experiment set
#   snakemake --profile workflow/profiles/slurm         the same DAG on a SLURM cluster
#
# The config is validated against workflow/schemas/config.schema.yaml (defaults
# filled in); every rule carries its own config section in `params`, so editing
# one section reruns that stage and what depends on it, nothing else.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# one rule file per package, named alike (common.smk: the helpers; summary.smk: lipspeech/commands/summary.py)
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/vision.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/vocoder.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/summary.smk"


rule all:
    input:
        f"{RESULTS}/summary.txt",
        shard_outputs("roi"),
        shard_outputs("mel"),
        shard_outputs("units"),
        shard_outputs("prosody"),
        f"{RESULTS}/prosody/stats.json",
        expand(f"{RESULTS}/eval/{{exp}}/mels.parquet", exp=EXPERIMENTS),
        expand(f"{RESULTS}/eval/{{system}}/audio.parquet", system=SYSTEMS),
        expand(f"{RESULTS}/eval/{{system}}/summary.json", system=EVAL_SYSTEMS),
        f"{RESULTS}/report.html",
        [UNITS_ANALYSIS_OUT] if UNITS_ANALYSIS else [],
    default_target: True
