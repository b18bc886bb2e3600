# The corpus and its audio (lipspeech/data/): SynthGRID generation (demo only), the manifest,
# and decoding: audio to 16 kHz mono float32, video frame count at 25 fps.


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


rule decode:
    """One shard: decode each utterance's audio (resampled, downmixed) and count its
    video frames at 25 fps; the audio is fitted to exactly 640 samples per frame."""
    input:
        f"{RESULTS}/manifest.parquet",
    output:
        store=f"{RESULTS}/audio/{{shard}}.parquet",
        rejected=f"{RESULTS}/audio/{{shard}}.rejected.parquet",
    params:
        cfg=params_json("decode"),
    log:
        f"{RESULTS}/logs/decode/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decode/{{shard}}.tsv"
    # one thread a job (its ffmpeg processes), so the short per-shard jobs fill both cores of a small machine
    # side by side; priorities put the jobs on the way to training first (decode 3, roi 2, the rest of the
    # path 1; vocode, evaluate and summary 0), so ground-truth scoring fills the cores after training
    # instead of delaying it (the demo on 2 cores: benchmarks/README.md, "Demo training")
    threads: 1
    priority: 3
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "lipspeech decode --params {params.cfg:q} --manifest {input:q} --shard {wildcards.shard}"
        " --out {output.store:q} --rejected {output.rejected:q} --threads {threads} 2>&1 | tee {log:q}"
