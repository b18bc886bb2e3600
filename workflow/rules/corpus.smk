# The corpus: SynthGRID generation (demo only) and the manifest.


rule synth_corpus:
    """Generate the SynthGRID demo corpus in GRID's layout (offline: espeak-ng voices, a
    talking face rendered from a real photo). Only used when corpus.kind is synthgrid."""
    output:
        directory(f"{RESULTS}/raw"),
    params:
        cfg=params_json("synth"),
    log:
        f"{RESULTS}/logs/synth_corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_corpus.tsv"
    # every core of a local run (Snakemake caps threads at --cores); not workflow.cores, which
    # a cluster run (no --cores) cannot evaluate; cluster profiles set their own (set-threads)
    threads: 256
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "lipspeech synth-corpus --params {params.cfg:q} --out {output:q} --threads {threads} 2>&1 | tee {log:q}"


rule manifest:
    """One table of every utterance (speaker, split, shard, paths, transcript, duration,
    fps); unreadable files go to the rejected table with a one-line reason."""
    input:
        # The generated corpus is a workflow output; a real corpus is read where it lies.
        [f"{RESULTS}/raw"] if SYNTHGRID else [],
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        rejected=f"{RESULTS}/manifest.rejected.parquet",
    params:
        cfg=params_json("corpus", "manifest"),
        # a real corpus's root (a string, not a function: params are rerun triggers, and changing
        # how this one is written would rebuild every existing result from the manifest on)
        **({} if SYNTHGRID else {"root": config["corpus"]["root"]}),
    log:
        f"{RESULTS}/logs/manifest.log",
    threads: 4
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "lipspeech manifest --params {params.cfg:q} "
        + ("--root {input:q}" if SYNTHGRID else "--root {params.root:q}")
        + " --out {output.manifest:q} --rejected {output.rejected:q} --threads {threads} 2>&1 | tee {log:q}"


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
