# Mouth ROI: landmarks (detected on key frames, tracked in between), alignment, crops, QC.


rule roi:
    """One shard: a 96x96 grayscale mouth crop per 25 fps frame, aligned on the stable face
    points, as many frames as the decode stage counted; a QC table per utterance. With
    roi.contact_sheet > 0 a debugging sheet roi/{shard}.sheet.png is written too (not declared)."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        audio=f"{RESULTS}/audio/{{shard}}.parquet",
    output:
        store=f"{RESULTS}/roi/{{shard}}.parquet",
        qc=f"{RESULTS}/roi/{{shard}}.qc.parquet",
        rejected=f"{RESULTS}/roi/{{shard}}.rejected.parquet",
    params:
        cfg=params_json("roi"),
    log:
        f"{RESULTS}/logs/roi/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/roi/{{shard}}.tsv"
    # one thread: the tracker is mostly Python (one core per job), so shards side by side use the cores
    # better than one shard on two threads (the demo's 4 shards on 2 cores: 230 s against 285;
    # benchmarks/README.md, "Grid-scale run"); --set-threads roi=N for a corpus of one shard
    threads: 1
    priority: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "lipspeech roi --params {params.cfg:q} --manifest {input.manifest:q} --audio {input.audio:q}"
        " --out {output.store:q} --qc {output.qc:q} --rejected {output.rejected:q} --threads {threads}"
        " --no-progress 2>&1 | tee {log:q}"
