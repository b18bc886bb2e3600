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
