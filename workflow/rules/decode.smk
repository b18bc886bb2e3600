# Decoding: audio to 16 kHz mono float32, video frame count at 25 fps.


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
