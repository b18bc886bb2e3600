# The LTBS model: one training run and one synthesis per experiment of config["experiments"].
# An experiment = a model preset + overrides (the paper's ablations are the use_* switches).

EXPERIMENTS = [e.name for e in SETTINGS.experiments]


wildcard_constraints:
    exp="|".join(EXPERIMENTS) if EXPERIMENTS else r"[^/]+",


rule train:
    """Train one experiment on the train split (validating on val). Only best.pt is declared,
    and protected: the trainer keeps last.pt (and best.kept.pt) beside it undeclared, so a
    killed job resumes exactly where it stopped; to retrain, delete the run directory."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        roi=shard_outputs("roi"),
        mel=shard_outputs("mel"),
        units=shard_outputs("units"),
        prosody=shard_outputs("prosody"),
        stats=f"{RESULTS}/prosody/stats.json",
        init=init_ckpt,
        teacher=teacher_ckpt,
    output:
        protected(f"{RESULTS}/models/{{exp}}/ckpt/best.pt"),
    params:
        # mel, roi and corpus go into every checkpoint's bundle (what `lipspeech speak` needs)
        cfg=params_json("model", "train", "mel", "roi", "corpus"),
        exp=experiment_json,
        run_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RESULTS}/logs/train/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{exp}}.tsv"
    threads: 2
    priority: 1
    resources:
        mem_mb=8000,
        runtime=720,
        # data-parallel processes (DDP under torchrun, one per GPU); a cluster profile sets it
        # with `gpu`. Not a rerun trigger: a killed run may resume with another count
        nproc=1,
    conda:
        CONDA_ENV
    shell:
        "lipspeech train --params {params.cfg:q} --exp {wildcards.exp:q} --experiment {params.exp:q}"
        " --manifest {input.manifest:q} --roi {input.roi:q} --mel {input.mel:q} --units {input.units:q}"
        " --prosody {input.prosody:q} --stats {input.stats:q}"
        " --run-dir {params.run_dir:q} --threads {threads} --nproc {resources.nproc}"
        " --no-progress 2>&1 | tee {log:q}"


rule synthesize:
    """Coarse and post-net mels of every test utterance (video only) with one experiment's best.pt
    (or that of the experiment its model_from names), whole clips or chunk by chunk (decode_chunk_frames)."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        roi=shard_outputs("roi"),
        ckpt=synthesize_ckpt,
    output:
        f"{RESULTS}/eval/{{exp}}/mels.parquet",
    params:
        exp=experiment_json,
    log:
        f"{RESULTS}/logs/synthesize/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize/{{exp}}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "lipspeech synthesize --exp {wildcards.exp:q} --experiment {params.exp:q} --manifest {input.manifest:q}"
        " --roi {input.roi:q} --ckpt {input.ckpt:q} --out {output:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"
