# The vocoder: log-mel -> 16 kHz audio for every system the evaluation compares.
# vocoder.kind griffin_lim needs no training; hifigan uses vocoder.checkpoint, or, when that
# is null, a HiFi-GAN the train_vocoder rule trains on this corpus's ground-truth audio.
import re
import shlex

VOCODER = config["vocoder"]
#: the systems vocoded for the evaluation: every experiment, and the ground-truth mels
#: through the same vocoder ("ground_truth", the decoded audio itself, needs no vocoding)
SYSTEMS = EXPERIMENTS + ["gt_vocoded"]
TRAIN_VOCODER = VOCODER["kind"] == "hifigan" and not VOCODER["checkpoint"]
if VOCODER["kind"] != "hifigan":
    VOCODER_CKPT = None
elif TRAIN_VOCODER:
    VOCODER_CKPT = f"{RESULTS}/vocoder/ckpt/best.pt"
else:
    VOCODER_CKPT = VOCODER["checkpoint"]


if TRAIN_VOCODER:

    rule train_vocoder:
        """HiFi-GAN (vocoder.preset) on random segments of the train split's audio and mels, validated
        on val. Only best.pt is declared, and protected; last.pt and best.kept.pt beside it let a
        killed job resume exactly. To retrain, delete results/{corpus}/vocoder/."""
        input:
            manifest=f"{RESULTS}/manifest.parquet",
            audio=shard_outputs("audio"),
            mel=shard_outputs("mel"),
        output:
            protected(f"{RESULTS}/vocoder/ckpt/best.pt"),
        params:
            # only what changes the trained weights: not kind, checkpoint, device or griffin_lim
            cfg=json.dumps({"vocoder": {"preset": VOCODER["preset"], "train": VOCODER["train"]}, "mel": config["mel"]},
                           sort_keys=True),
            run_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        log:
            f"{RESULTS}/logs/train_vocoder.log",
        benchmark:
            f"{RESULTS}/benchmarks/train_vocoder.tsv"
        threads: 2
        resources:
            mem_mb=8000,
            runtime=1440,
        conda:
            CONDA_ENV
        shell:
            "lipspeech train-vocoder --params {params.cfg:q} --manifest {input.manifest:q} --audio {input.audio:q}"
            " --mel {input.mel:q} --run-dir {params.run_dir:q} --threads {threads} --no-progress 2>&1 | tee {log:q}"


rule vocode:
    """One system's test-split mels through the vocoder -> eval/{system}/audio.parquet (16 kHz,
    n_frames * 640 samples each) + the utterances it could not vocode."""
    input:
        unpack(vocode_inputs),
    wildcard_constraints:
        # a rule-level constraint: other rules' {system} also takes "ground_truth", which is never vocoded
        system="|".join(re.escape(s) for s in SYSTEMS),
    output:
        audio=f"{RESULTS}/eval/{{system}}/audio.parquet",
        rejected=f"{RESULTS}/eval/{{system}}/audio.rejected.parquet",
    params:
        # the vocoder without its training keys (those reach this rule through the checkpoint)
        cfg=json.dumps({"vocoder": {k: v for k, v in VOCODER.items() if k != "train"}, "mel": config["mel"]},
                       sort_keys=True),
        inputs=lambda wildcards, input: " ".join(
            f"--{name} " + " ".join(shlex.quote(str(p)) for p in ([input[name]] if isinstance(input[name], str) else input[name]))
            for name in ("manifest", "mel", "mels") if name in input.keys()
        ),
        checkpoint=lambda wildcards, input: f"--checkpoint {shlex.quote(input.vocoder)}" if "vocoder" in input.keys() else "",
    log:
        f"{RESULTS}/logs/vocode/{{system}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/vocode/{{system}}.tsv"
    # one thread: after training, the experiment's and gt_vocoded's jobs then run side by side with the
    # evaluate jobs instead of each waiting for both cores (Griffin-Lim of the demo's 31 test utterances: ~10 s)
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "lipspeech vocode --params {params.cfg:q} --system {wildcards.system:q} {params.inputs}"
        " {params.checkpoint} --out {output.audio:q} --rejected {output.rejected:q} --threads {threads}"
        " --no-progress 2>&1 | tee {log:q}"
