# The report: one self-contained HTML page (+ Markdown) comparing every system on the test split.
# Systems: the ground-truth audio, ground-truth mels through the vocoder, then each experiment.

REPORT_SYSTEMS = EVAL_SYSTEMS  # ground_truth, gt_vocoded, then each experiment (evaluate.smk)


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
