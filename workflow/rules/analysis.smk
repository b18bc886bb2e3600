# The paper's own analysis: how linguistic the units are (opt-in, units_analysis.enabled).

import shlex

UNITS_ANALYSIS = config["units_analysis"]["enabled"]
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
