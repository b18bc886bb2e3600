# The one-screen corpus summary (lipspeech/commands/summary.py).


rule summary:
    """The one-screen summary: utterances, hours, rejected (per stage, with reasons).
    The ssl stores are temporary: only their rejected tables are inputs."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        stores=[shard_outputs(folder) for folder in ("audio", "roi", "mel", "units", "prosody")],
        rejected=[
            f"{RESULTS}/manifest.rejected.parquet",
            *(shard_outputs(folder, ".rejected.parquet") for folder in ("audio", "roi", "mel", "ssl", "units", "prosody")),
        ],
    output:
        txt=f"{RESULTS}/summary.txt",
        json=f"{RESULTS}/summary.json",
    params:
        corpus=CORPUS,
    log:
        f"{RESULTS}/logs/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "lipspeech summary --manifest {input.manifest:q} --stores {input.stores:q} --rejected-tables {input.rejected:q}"
        " --corpus {params.corpus:q} --out {output.txt:q} 2>&1 | tee {log:q}"
