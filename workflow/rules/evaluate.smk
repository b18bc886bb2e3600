# Evaluation: one job per system, scoring its test-split audio against the ground truth.
# Systems: ground_truth (the decoded audio itself: the ceiling), gt_vocoded and every
# experiment (their eval/{system}/audio.parquet, written by the vocode stage).
import re
import shlex

from lipspeech.config import RESERVED_SYSTEM_NAMES

EVAL_SYSTEMS = [*RESERVED_SYSTEM_NAMES, *(e["name"] for e in config["experiments"])]


wildcard_constraints:
    system="|".join(re.escape(s) for s in EVAL_SYSTEMS),


rule evaluate:
    """ASR WER/CER (pocketsphinx with the corpus's slot grammar by default), STOI, ESTOI,
    narrow-band PESQ, MCD, F0 moments, V/UV error, energy MAE, DNSMOS and GE2E speaker
    similarity of one system's test utterances, with bootstrap 95 % intervals; utterances
    that cannot be scored go to the rejected table."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        reference=shard_outputs("audio"),
        audio=system_audio,
    output:
        metrics=f"{RESULTS}/eval/{{system}}/metrics.parquet",
        summary=f"{RESULTS}/eval/{{system}}/summary.json",
        rejected=f"{RESULTS}/eval/{{system}}/metrics.rejected.parquet",
    params:
        cfg=params_json("evaluate", "prosody", "mel"),
        audio=lambda wildcards, input: f"--audio {shlex.quote(input.audio[0])}" if input.audio else "",
    log:
        f"{RESULTS}/logs/evaluate/{{system}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{system}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "lipspeech evaluate --params {params.cfg:q} --system {wildcards.system:q} --manifest {input.manifest:q}"
        " --reference {input.reference:q} {params.audio} --out {output.metrics:q} --summary {output.summary:q}"
        " --rejected {output.rejected:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"


# The learning curve of every experiment that trains its own model with snapshots (train.snapshot_every).
CURVE_EXPERIMENTS = [
    e["name"] for e in config["experiments"]
    if not e.get("model_from") and {**config["train"], **(e.get("train") or {})}["snapshot_every"]
]


rule curve:
    """Val WER/CER (and DNSMOS P.808) of each snapshot a run kept (models/{exp}/ckpt/snapshots/step_N.pt,
    beside last.pt and, like it, undeclared: the folder is given on the command line), through the
    vocoder and the evaluation's recogniser: eval/{exp}/curve.json, drawn by the report."""
    input:
        best=f"{RESULTS}/models/{{exp}}/ckpt/best.pt",
        manifest=f"{RESULTS}/manifest.parquet",
        roi=shard_outputs("roi"),
        vocoder=[VOCODER_CKPT] if VOCODER_CKPT else [],
    output:
        f"{RESULTS}/eval/{{exp}}/curve.json",
    params:
        cfg=params_json("curve", "evaluate", "vocoder", "mel"),
        snapshots=lambda wildcards, input: os.path.join(os.path.dirname(input.best), "snapshots"),
        vocoder=lambda wildcards, input: f"--vocoder {shlex.quote(input.vocoder[0])}" if input.vocoder else "",
    log:
        f"{RESULTS}/logs/curve/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/curve/{{exp}}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "lipspeech curve --params {params.cfg:q} --snapshots {params.snapshots:q} --best {input.best:q}"
        " --manifest {input.manifest:q}"
        " --roi {input.roi:q} {params.vocoder} --out {output:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"
