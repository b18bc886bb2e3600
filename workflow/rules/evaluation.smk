# Evaluation (lipspeech/evaluation/): scoring every system, the learning curve, the units
# analysis and the report.
#
# Evaluation: one job per system, scoring its test-split audio against the ground truth.
# Systems: ground_truth (the decoded audio itself: the ceiling), gt_vocoded and every
# experiment (their eval/{system}/audio.parquet, written by the vocode stage).
import re
import shlex

from lipspeech.core.config import RESERVED_SYSTEM_NAMES

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
    # scoring processes of one thread each (lipspeech/evaluation/pool.py: the same table for any number);
    # two halve the demo's last job after training, which left a core idle
    threads: 2
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


# The paper's own analysis: how linguistic the units are (opt-in, units_analysis.enabled).

import shlex

UNITS_ANALYSIS = SETTINGS.units_analysis.enabled
UNITS_ANALYSIS_OUT = f"{RESULTS}/units_analysis/quality.parquet"


rule units_analysis:
    """Phone purity, cluster purity and PNMI of k-means units for a grid of SSL layers x cluster
    counts, plus the pipeline's own units and each experiment's val unit accuracy (read from its
    best.pt, so the experiments are trained first). Run on demand with
    `snakemake --cores N units_analysis`; with units_analysis.enabled it is part of the default
    target and of the report. Phones: SynthGRID's generator timings, or units_analysis.alignments
    (TextGrid files, read where they lie)."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        audio=shard_outputs("audio"),
        units=shard_outputs("units"),
        raw=[f"{RESULTS}/raw"] if config["corpus"]["kind"] == "synthgrid" else [],
        models=[model_ckpt(e) for e in EXPERIMENTS],
    output:
        table=UNITS_ANALYSIS_OUT,
        rejected=f"{RESULTS}/units_analysis/rejected.parquet",
    params:
        cfg=params_json("ssl", "kmeans", "units_analysis"),
        raw=lambda wildcards, input: f"--raw {shlex.quote(input.raw[0])}" if input.raw else "",
        models=lambda wildcards, input: " ".join(
            shlex.quote(f"{exp}={path}") for exp, path in zip(EXPERIMENTS, input.models)
        ),
    log:
        f"{RESULTS}/logs/units_analysis.log",
    benchmark:
        f"{RESULTS}/benchmarks/units_analysis.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "lipspeech units-analysis --params {params.cfg:q} --manifest {input.manifest:q} --audio {input.audio:q}"
        " --units {input.units:q} {params.raw} --model {params.models} --out {output.table:q}"
        " --rejected {output.rejected:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"


# The report: one self-contained HTML page (+ Markdown) comparing every system on the test split.
# Systems: the ground-truth audio, ground-truth mels through the vocoder, then each experiment.

REPORT_SYSTEMS = EVAL_SYSTEMS  # ground_truth, gt_vocoded, then each experiment (the evaluate rule above)


rule report:
    """results/{corpus}/report.html (metrics tables with 95 % intervals, differences to the full
    model, WER per speaker, audio players, mel and F0 plots of report.n_examples test utterances;
    audio and images embedded), report.md, and report.json (the tables as numbers).
    The ground truth has no audio.parquet: its audio, mels and F0 come from the shards."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        audio=shard_outputs("audio"),
        mel=shard_outputs("mel"),
        prosody=shard_outputs("prosody"),
        summaries=expand(f"{RESULTS}/eval/{{system}}/summary.json", system=REPORT_SYSTEMS),
        metrics=expand(f"{RESULTS}/eval/{{system}}/metrics.parquet", system=REPORT_SYSTEMS),
        vocoded=expand(f"{RESULTS}/eval/{{system}}/audio.parquet", system=REPORT_SYSTEMS[1:]),
        units_analysis=[UNITS_ANALYSIS_OUT] if UNITS_ANALYSIS else [],
        models=[model_ckpt(e) for e in EXPERIMENTS],
        curves=expand(f"{RESULTS}/eval/{{exp}}/curve.json", exp=CURVE_EXPERIMENTS),
    output:
        html=f"{RESULTS}/report.html",
        md=f"{RESULTS}/report.md",
        json=f"{RESULTS}/report.json",
    params:
        # mel, prosody and evaluate's f0_silence_db: the examples' mels and F0 are computed as the
        # targets and the metrics compute them
        cfg=params_json("report", "corpus", "mel", "prosody", "evaluate", "model", "experiments"),
        inputs=report_args,
    log:
        f"{RESULTS}/logs/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "lipspeech report --params {params.cfg:q} --manifest {input.manifest:q} --audio {input.audio:q}"
        " --mel {input.mel:q} --prosody {input.prosody:q} {params.inputs} --html {output.html:q}"
        " --md {output.md:q} --json {output.json:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"
