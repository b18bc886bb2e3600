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
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "lipspeech decode --params {params.cfg:q} --manifest {input:q} --shard {wildcards.shard}"
        " --out {output.store:q} --rejected {output.rejected:q} --threads {threads} 2>&1 | tee {log:q}"
