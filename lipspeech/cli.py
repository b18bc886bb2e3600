"""The ``lipspeech`` command: one subcommand per pipeline stage.

Every stage subcommand takes its configuration as ``--config FILE`` (a whole
config.yaml) and/or ``--params JSON`` (a partial config, e.g. the sections a
Snakemake rule carries in ``params``; it overrides the file). The result is
validated against the same schema as the workflow's, defaults filled in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from lipspeech import __version__

# Package modules are imported inside the commands, so that `lipspeech doctor` still runs
# (and says what to install) when a dependency is missing.


def _stage_config(args: argparse.Namespace) -> dict[str, Any]:
    from lipspeech.config import ConfigError, load_config, validate_config

    cfg = load_config(args.config) if args.config else {}
    if args.params:
        try:
            override = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--params is not valid JSON ({exc})") from exc
        if not isinstance(override, dict):
            raise ConfigError("--params must be a JSON object of config sections")
        cfg.update(override)
    return validate_config(cfg)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def _fail_fast(args: argparse.Namespace, cfg: dict[str, Any]) -> bool:
    """--fail-fast, else LIPSPEECH_FAIL_FAST (how the workflow hands down config key fail_fast), else the config."""
    env = os.environ.get("LIPSPEECH_FAIL_FAST", "").strip().lower()
    if args.fail_fast:
        return True
    if env:
        return env in ("1", "true", "yes", "on")
    return bool(cfg["fail_fast"])


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_synth_corpus(args: argparse.Namespace) -> int:
    from lipspeech.data.synth.corpus import generate_corpus

    cfg = _stage_config(args)
    summary = generate_corpus(cfg["synth"], Path(args.out), threads=args.threads, progress=_progress(args))
    print(json.dumps(summary, indent=1))
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from lipspeech.data.manifest import build_manifest

    cfg = _stage_config(args)
    root = Path(args.root or cfg["corpus"]["root"] or "")
    df, rejected = build_manifest(
        cfg["corpus"], cfg["manifest"], root, Path(args.out), Path(args.rejected),
        threads=args.threads, progress=_progress(args), fail_fast=_fail_fast(args, cfg),
    )
    print(f"manifest: {len(df)} utterances ({df['duration'].sum() / 3600:.3f} h), {len(rejected)} rejected -> {args.out}")
    for utt, reason in list(rejected.items())[:20]:
        print(f"  rejected {utt}: {reason}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from lipspeech.data.decode import decode_shard

    cfg = _stage_config(args)
    ok, bad = decode_shard(
        Path(args.manifest), args.shard, cfg["decode"], Path(args.out), Path(args.rejected),
        threads=args.threads, progress=_progress(args), fail_fast=_fail_fast(args, cfg),
    )
    print(f"decode shard {args.shard}: {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_roi(args: argparse.Namespace) -> int:
    from lipspeech.features.common import StageError
    from lipspeech.vision.backends import BackendError
    from lipspeech.vision.roi import roi_shard

    cfg = _stage_config(args)
    try:
        ok, bad = roi_shard(
            Path(args.manifest), Path(args.audio), cfg["roi"], Path(args.out), Path(args.qc), Path(args.rejected),
            threads=args.threads, progress=_progress(args), fail_fast=_fail_fast(args, cfg),
        )
    except BackendError as exc:
        raise StageError(str(exc)) from None
    print(f"roi {Path(args.audio).stem} ({cfg['roi']['backend']}): {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def cmd_mel(args: argparse.Namespace) -> int:
    from lipspeech.features.mel import mel_shard

    cfg = _stage_config(args)
    _torch_threads(args.threads)
    ok, bad = mel_shard(Path(args.audio), cfg["mel"], Path(args.out), Path(args.rejected), progress=_progress(args),
                        manifest=_opt_path(args.manifest), fail_fast=_fail_fast(args, cfg))
    print(f"mel {Path(args.audio).stem}: {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_ssl_features(args: argparse.Namespace) -> int:
    from lipspeech.features.ssl import ssl_shard

    cfg = _stage_config(args)
    _torch_threads(args.threads)
    ok, bad = ssl_shard(Path(args.audio), cfg["ssl"], Path(args.out), Path(args.rejected), progress=_progress(args),
                        manifest=_opt_path(args.manifest), fail_fast=_fail_fast(args, cfg))
    print(f"ssl-features {Path(args.audio).stem} ({cfg['ssl']['source']}): {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_kmeans_fit(args: argparse.Namespace) -> int:
    import faiss

    from lipspeech.features.units import kmeans_fit

    cfg = _stage_config(args)
    faiss.omp_set_num_threads(max(1, args.threads))
    info = kmeans_fit(
        [Path(p) for p in args.ssl], Path(args.manifest), cfg["ssl"], cfg["kmeans"], Path(args.out),
        Path(args.json), progress=_progress(args), fail_fast=_fail_fast(args, cfg),
    )
    print(f"kmeans-fit: k = {info['k']} on {info['frames_sampled']} frames of dimension {info['dim']}, "
          f"mean squared distance {info['mean_sq_distance']:.4g} -> {args.out}")
    return 0


def cmd_units_analysis(args: argparse.Namespace) -> int:
    import faiss

    from lipspeech.features.units_analysis import units_analysis

    cfg = _stage_config(args)
    faiss.omp_set_num_threads(max(1, args.threads))
    _torch_threads(args.threads)
    models = {}
    for spec in args.model or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model wants NAME=PATH (an experiment and its best.pt), got {spec!r}")
        models[name] = Path(path)
    table = units_analysis(
        Path(args.manifest), [Path(p) for p in args.audio], cfg["ssl"], cfg["kmeans"], cfg["units_analysis"],
        Path(args.out), Path(args.rejected), raw_dir=_opt_path(args.raw), units_paths=[Path(p) for p in args.units or []],
        models=models, progress=_progress(args),
    )
    best = max((r for r in table.to_pylist() if r["kind"] == "grid"), key=lambda r: r["pnmi"])
    where = "MFCC" if best["layer"] < 0 else f"layer {best['layer']}"
    print(f"units-analysis ({cfg['ssl']['source']}): {table.num_rows} rows; highest PNMI {best['pnmi']:.3f} "
          f"({where}, k = {best['k']}) -> {args.out}")
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    import faiss

    from lipspeech.features.units import units_shard

    cfg = _stage_config(args)
    faiss.omp_set_num_threads(max(1, args.threads))
    ok, bad = units_shard(
        Path(args.ssl), Path(args.centroids), cfg["ssl"], cfg["kmeans"], Path(args.out), Path(args.rejected),
        progress=_progress(args), manifest=_opt_path(args.manifest), fail_fast=_fail_fast(args, cfg),
    )
    print(f"units {Path(args.ssl).stem}: {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_prosody(args: argparse.Namespace) -> int:
    from lipspeech.features.prosody import prosody_shard

    cfg = _stage_config(args)
    _torch_threads(1)  # parallelism comes from one pyworld thread per utterance
    ok, bad = prosody_shard(
        Path(args.audio), cfg["prosody"], cfg["mel"], Path(args.out), Path(args.rejected),
        threads=args.threads, progress=_progress(args), manifest=_opt_path(args.manifest),
        fail_fast=_fail_fast(args, cfg),
    )
    print(f"prosody {Path(args.audio).stem}: {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_prosody_stats(args: argparse.Namespace) -> int:
    from lipspeech.features.prosody import prosody_stats

    cfg = _stage_config(args)
    stats = prosody_stats([Path(p) for p in args.prosody], Path(args.manifest), cfg["prosody"], cfg["mel"], Path(args.out),
                          fail_fast=_fail_fast(args, cfg))
    print(f"prosody-stats: {len(stats['speakers'])} speakers, {stats['global']['utterances']} train utterances"
          f" -> {args.out}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from lipspeech.summary import corpus_summary, format_summary, summarize

    if args.manifest:
        summary = summarize(Path(args.manifest), [Path(p) for p in args.stores or []],
                            [Path(p) for p in args.rejected_tables or []], args.corpus or Path(args.manifest).parent.name)
    elif args.results:
        summary = corpus_summary(Path(args.results))
    else:
        raise SystemExit("summary: give a results folder, or --manifest with --stores and --rejected-tables")
    text = format_summary(summary)
    if args.out:
        from lipspeech.store import write_text_atomic

        write_text_atomic(args.out, text)
        write_text_atomic(Path(args.out).with_suffix(".json"), json.dumps(summary, indent=1, sort_keys=True))
    print(text, end="")
    return 0


def cmd_store_info(args: argparse.Namespace) -> int:
    from lipspeech.store import Store

    store = Store(args.path)
    print(json.dumps(store.meta_dict, indent=1, sort_keys=True))
    print(f"{len(store)} rows; columns: {', '.join(store.table.column_names)}")
    print(store.df.head(args.rows).to_string())
    return 0


def _experiment(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """The experiment --exp names: the --experiment JSON entry (what Snakemake passes), else from the config."""
    from lipspeech.config import ConfigError, validate_config
    from lipspeech.training.stage import find_experiment

    if args.experiment:
        try:
            entry = json.loads(args.experiment)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--experiment is not valid JSON ({exc})") from exc
        experiments = validate_config({"experiments": [entry]})["experiments"]  # schema check of the entry
    else:
        experiments = cfg["experiments"]
    return find_experiment(experiments, args.exp)


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from lipspeech.config import ConfigError
    from lipspeech.training.distributed import launched_world_size, torchrun_command
    from lipspeech.training.stage import run_train
    from lipspeech.training.stores import CorpusStores

    cfg = _stage_config(args)
    exp = _experiment(args, cfg)
    run_dir = Path(args.run_dir)
    if args.nproc > 1 and launched_world_size() == 1:
        import torch

        device = str(cfg["train"].get("device", "auto"))
        if (device == "auto" and torch.cuda.is_available()) or device.startswith("cuda"):
            if args.nproc > torch.cuda.device_count():
                raise ConfigError(f"--nproc {args.nproc}: only {torch.cuda.device_count()} GPUs visible")
        # this same command in nproc processes under torchrun (DDP); exec, so that a signal from
        # SLURM or Snakemake reaches torchrun, which passes it on to its workers
        cmd = torchrun_command(args.nproc, _without_option(args.argv, "--nproc"))
        print(f"train {exp['name']}: {args.nproc} processes (DDP): {' '.join(cmd[:9])} ...", flush=True)
        os.execv(cmd[0], cmd)
    threads = args.threads
    if launched_world_size() > 1:  # the job's CPUs are shared by this node's processes
        threads = max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", launched_world_size())))
    _torch_threads(threads)
    corpus = CorpusStores(args.manifest, {name: getattr(args, name) for name in ("roi", "mel", "units", "prosody")},
                          args.stats)
    summary = run_train(corpus, exp, cfg["model"], cfg["train"], run_dir, threads=threads, progress=_progress(args),
                        fail_fast=_fail_fast(args, cfg),
                        data_sections={name: cfg[name] for name in ("mel", "roi", "corpus")})
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"train {exp['name']}: {summary['steps']} steps in {summary['seconds']:.0f} s, best {summary['best_metric']} "
          f"{summary['best_value']:.4f} at step {summary['best_step']} -> {run_dir / 'ckpt' / 'best.pt'}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from lipspeech.training.stage import run_synthesize
    from lipspeech.training.stores import CorpusStores

    cfg = _stage_config(args)
    exp = _experiment(args, cfg)
    out = Path(args.out)
    _torch_threads(args.threads)
    corpus = CorpusStores(args.manifest, {"roi": args.roi})
    n = run_synthesize(corpus, exp, Path(args.ckpt), out, split=args.split, temperature=args.temperature)
    print(f"synthesize {exp['name']}: {n} {args.split} utterances -> {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lipspeech.evaluation.report import ReportInputs, build_report

    cfg = _stage_config(args)
    inputs = ReportInputs.from_args(args.manifest, {"audio": args.audio, "mel": args.mel, "prosody": args.prosody},
                                    args.system, args.model or [], args.units_analysis)
    _torch_threads(args.threads)
    data = build_report(inputs, cfg, Path(args.html), Path(args.md), systems=[s[0] for s in args.system],
                        progress=_progress(args), json_out=Path(args.json))
    print(f"report {data.corpus}: {len(data.systems)} systems, {len(data.examples)} examples, {len(data.notes)} notes "
          f"-> {args.html} ({Path(args.html).stat().st_size / 1e6:.2f} MB), {args.md}")
    for note in data.notes:
        print(f"  note: {note}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lipspeech.evaluation.stage import run_evaluate

    cfg = _stage_config(args)
    _torch_threads(args.threads)
    s = run_evaluate(
        args.system, Path(args.manifest), [Path(p) for p in args.reference], Path(args.audio) if args.audio else None,
        cfg["evaluate"], cfg["prosody"], cfg["mel"], Path(args.out), Path(args.summary), Path(args.rejected),
        progress=_progress(args), threads=args.threads,
    )

    def fmt(key: str) -> str:
        return "n/a" if s[key] is None else f"{s[key]:.3f}"

    print(f"evaluate {args.system}: {s['n']} utterances ({s['n_rejected']} rejected); WER {fmt('wer')} CER {fmt('cer')} "
          f"STOI {fmt('stoi')} ESTOI {fmt('estoi')} PESQ-NB {fmt('pesq_nb')} MCD {fmt('mcd')} dB "
          f"V/UV {fmt('vuv_error')} DNSMOS P.808 {fmt('dnsmos_p808')} OVRL {fmt('dnsmos_ovrl')} "
          f"speaker sim {fmt('speaker_sim')} -> {args.summary}")
    print(f"  ASR: {s['asr']}")
    return 0


def cmd_train_vocoder(args: argparse.Namespace) -> int:
    from lipspeech.training.stores import CorpusStores
    from lipspeech.vocoder.stage import run_train_vocoder

    cfg = _stage_config(args)
    run_dir = Path(args.run_dir)
    _torch_threads(args.threads)
    corpus = CorpusStores(args.manifest, {"audio": args.audio, "mel": args.mel})
    s = run_train_vocoder(corpus, cfg["vocoder"], cfg["mel"], run_dir, threads=args.threads, progress=_progress(args))
    print(f"train-vocoder ({s['preset']}): {s['steps']} steps in {s['seconds']:.0f} s, best val mel L1 "
          f"{s['best_mel_l1']:.4f} at step {s['best_step']} -> {run_dir / 'ckpt' / 'best.pt'}")
    return 0


def cmd_vocode(args: argparse.Namespace) -> int:
    from lipspeech.features.audio import AudioConfig
    from lipspeech.training.stores import CorpusStores
    from lipspeech.vocoder import load_vocoder
    from lipspeech.vocoder.stage import GT_VOCODED, run_vocode

    cfg = _stage_config(args)
    _torch_threads(args.threads)
    corpus = None
    if args.system == GT_VOCODED:
        if not args.manifest or not args.mel:
            raise SystemExit(f"vocode {GT_VOCODED}: give --manifest and --mel (the mel stores)")
        corpus = CorpusStores(args.manifest, {"mel": args.mel})
    elif not args.mels:
        raise SystemExit(f"vocode {args.system}: give --mels (the experiment's synthesize store)")
    vocoder = load_vocoder(cfg["vocoder"], AudioConfig.from_section(cfg["mel"]), args.device or cfg["vocoder"]["device"],
                           checkpoint=args.checkpoint)
    ok, bad = run_vocode(args.system, vocoder, cfg["vocoder"], cfg["mel"], Path(args.out), Path(args.rejected),
                         mels=_opt_path(args.mels), corpus=corpus, split=args.split, progress=_progress(args))
    print(f"vocode {args.system} ({vocoder.kind}): {ok} utterances, {bad} rejected -> {args.out}")
    return 0


def cmd_speak(args: argparse.Namespace) -> int:
    from lipspeech.config import load_config
    from lipspeech.speak import format_report, speak

    cfg = load_config(args.config) if args.config else None
    _torch_threads(args.threads)
    res = speak(args.video, args.out, args.model, vocoder=args.vocoder, config=cfg, device=args.device,
                temperature=args.temperature, speaker=args.speaker)
    print(format_report(args.video, args.out, res))
    return 0


def _add_stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config.yaml to read (defaults are used for missing keys)")
    p.add_argument("--params", help="JSON object of config sections overriding --config (what Snakemake passes)")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="worker threads/processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fail-fast", action="store_true",
                   help="fail at the first rejected utterance (config key fail_fast; env LIPSPEECH_FAIL_FAST=1)")


def _store_args(p: argparse.ArgumentParser, **options: str) -> None:
    """Required path options: one file each, or (names ending in s: roi, mel, units, ...) one per shard."""
    for option, text in options.items():
        many = option in ("roi", "mel", "units", "prosody", "audio")
        p.add_argument(f"--{option}", required=True, nargs="+" if many else None, help=text)


def _stage_parser(sub: Any, name: str, help: str, func: Callable[[argparse.Namespace], int],
                  **required: str) -> argparse.ArgumentParser:
    """A stage subcommand: the common stage options plus required path options (option name -> help)."""
    p = sub.add_parser(name, help=help)
    _add_stage_args(p)
    for option, text in required.items():
        p.add_argument(f"--{option}", required=True, help=text)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipspeech", description="Silent talking-face video to speech: pipeline stages.")
    parser.add_argument("--version", action="version", version=f"lipspeech {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    REJ = "rejected table to write"
    _stage_parser(sub, "synth-corpus", "generate the SynthGRID demo corpus (GRID layout) offline", cmd_synth_corpus,
                  out="output folder (GRID layout); corpus.json is written last")
    p = _stage_parser(sub, "manifest", "list a corpus's utterances with split and shard", cmd_manifest,
                      out="manifest.parquet to write", rejected=REJ)
    p.add_argument("--root", help="corpus root (default: corpus.root of the config)")
    p = _stage_parser(sub, "decode", "decode one shard's audio (16 kHz mono) and count frames (25 fps)", cmd_decode,
                      manifest="manifest to read", out="audio store to write", rejected=REJ)
    p.add_argument("--shard", type=int, required=True, help="shard number")
    _stage_parser(sub, "roi", "96x96 grayscale mouth crops (landmarks, tracking, alignment) of one shard, + QC", cmd_roi,
                  manifest="manifest (video paths)", audio="audio store (decode stage): utterances and their n_frames",
                  out="roi store to write", qc="QC table to write", rejected=REJ)
    MAN = "manifest: names the shard's utterances (rejected) should the input store be unreadable"
    p = _stage_parser(sub, "mel", "log-mel spectrogram of one audio shard (4 frames per video frame)", cmd_mel,
                      audio="audio store (decode stage) to read", out="mel store to write", rejected=REJ)
    p.add_argument("--manifest", help=MAN)
    p = _stage_parser(sub, "ssl-features", "50 Hz HuBERT-layer (or MFCC) features of one audio shard", cmd_ssl_features,
                      audio="audio store (decode stage) to read", out="ssl store to write", rejected=REJ)
    p.add_argument("--manifest", help=MAN)
    p = _stage_parser(sub, "kmeans-fit", "faiss k-means of the units on a sample of train frames of all ssl shards",
                      cmd_kmeans_fit, manifest="manifest (for the train split)", out="centroids .npy to write",
                      json="kmeans .json to write (config hash, k, objective)")
    p.add_argument("--ssl", required=True, nargs="+", help="ssl stores")
    p = _stage_parser(sub, "units", "nearest-centroid units (2 per video frame) of one ssl shard", cmd_units,
                      ssl="ssl store to read", centroids="centroids .npy (kmeans-fit)", out="units store to write",
                      rejected=REJ)
    p.add_argument("--manifest", help=MAN)
    p = _stage_parser(sub, "units-analysis", "how phonetic the units are: phone purity, cluster purity and PNMI for "
                      "a grid of SSL layers and cluster counts", cmd_units_analysis,
                      manifest="manifest (splits, speakers, file names)", out="quality.parquet to write", rejected=REJ)
    p.add_argument("--audio", required=True, nargs="+", help="audio stores (decode stage)")
    p.add_argument("--raw", help="SynthGRID's raw folder (its phoneme timings; else units_analysis.alignments)")
    p.add_argument("--units", nargs="*", help="units stores: also score the pipeline's own units")
    p.add_argument("--model", nargs="*", metavar="NAME=PATH", help="experiments' best.pt: their val unit accuracy")
    p = _stage_parser(sub, "prosody", "WORLD log-F0, voiced mask and energy (per video frame) of one audio shard",
                      cmd_prosody, audio="audio store (decode stage) to read", out="prosody store to write",
                      rejected=REJ)
    p.add_argument("--manifest", help=MAN)
    p = _stage_parser(sub, "prosody-stats", "per-speaker log-F0 and energy mean/std over the train split",
                      cmd_prosody_stats, manifest="manifest (speakers, train split)", out="stats .json to write")
    p.add_argument("--prosody", required=True, nargs="+", help="prosody stores")

    p = sub.add_parser("train", help="train one experiment (LTBS model) on the train split, validating on val")
    _add_stage_args(p)
    p.add_argument("--exp", required=True, help="experiment name (an entry of the config's experiments)")
    p.add_argument("--experiment", help="that entry as JSON (what Snakemake passes); default: from the config")
    _store_args(p, manifest="manifest (splits, speakers, shards)", roi="roi stores", mel="mel stores",
                units="units stores", prosody="prosody stores", stats="prosody stats.json (prosody-stats)")
    p.add_argument("--run-dir", required=True, help="run directory (models/{exp}); resumes from its ckpt/last.pt")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this node, under torchrun (one per GPU; gloo on CPU); "
                        "1 (default): a single process")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("synthesize", help="coarse and post-net mels of a split's videos with a trained experiment")
    _add_stage_args(p)
    p.add_argument("--exp", required=True, help="experiment name")
    p.add_argument("--experiment", help="the experiment's config entry as JSON (default: from the config)")
    _store_args(p, manifest="manifest (splits, shards)", roi="roi stores (the videos)",
                ckpt="model checkpoint (models/{exp}/ckpt/best.pt)", out="mels store to write (eval/{exp}/mels.parquet)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--temperature", type=float, help="std of the post-net prior (default: the model's)")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("report", help="report.html (metrics, audio players, plots; self-contained) + report.md")
    _add_stage_args(p)
    _store_args(p, manifest="manifest (test split, speakers, shards)", audio="ground-truth audio stores (examples)",
                mel="mel stores (examples)", prosody="prosody stores (examples' F0)", html="page to write",
                md="Markdown summary to write", json="the tables as numbers, with intervals and differences")
    p.add_argument("--system", required=True, nargs="+", action="append", metavar="NAME SUMMARY METRICS [AUDIO]",
                   help="one row, in order: its evaluate summary.json and metrics.parquet and (all but ground_truth) "
                        "its vocoded audio.parquet; repeat per system")
    p.add_argument("--model", nargs="*", metavar="NAME=CKPT", help="experiments' checkpoints (the commit they were "
                   "trained at)")
    p.add_argument("--units-analysis", help="units-analysis table (quality.parquet): adds the unit-analysis section")
    p.set_defaults(func=cmd_report)

    p = _stage_parser(sub, "evaluate", "score one system's test audio against the ground truth (ASR, STOI, PESQ, "
                      "MCD, F0, energy)", cmd_evaluate, system="ground_truth, gt_vocoded or an experiment name",
                      manifest="manifest (text, speaker, split)", out="metrics.parquet to write",
                      summary="summary.json to write", rejected=REJ)
    p.add_argument("--reference", required=True, nargs="+", help="ground-truth audio stores (decode stage, all shards)")
    p.add_argument("--audio", help="the system's audio store (stage vocode); not for ground_truth")

    p = sub.add_parser("train-vocoder", help="train a HiFi-GAN on the train split's audio and mels (vocoder.preset)")
    _add_stage_args(p)
    _store_args(p, manifest="manifest (splits, shards)", audio="audio stores (decode)", mel="mel stores")
    p.add_argument("--run-dir", required=True, help="run directory (vocoder/); resumes from its ckpt/last.pt")
    p.set_defaults(func=cmd_train_vocoder)

    p = _stage_parser(sub, "vocode", "one system's test-split mels -> 16 kHz audio store (the configured vocoder)",
                      cmd_vocode, out="audio store to write (eval/{system}/audio.parquet)", rejected=REJ)
    p.add_argument("--system", required=True, help="an experiment name (its eval/{exp}/mels.parquet) or gt_vocoded")
    p.add_argument("--mels", help="an experiment's synthesize store (eval/{exp}/mels.parquet)")
    p.add_argument("--manifest", help="gt_vocoded: the manifest (splits, shards)")
    p.add_argument("--mel", nargs="+", help="gt_vocoded: the mel stores")
    p.add_argument("--checkpoint", help="HiFi-GAN checkpoint when vocoder.checkpoint is null (train-vocoder's best.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of gt_vocoded")
    p.add_argument("--device", help="cpu, cuda, auto (default: vocoder.device)")

    p = sub.add_parser("speak", help="speech from any talking-face video with a trained model: VIDEO -> WAV")
    p.add_argument("video", help="video file (any format ffmpeg reads)")
    p.add_argument("-o", "--out", required=True, help="WAV file to write (16 kHz mono)")
    p.add_argument("--model", required=True, help="model checkpoint (results/{corpus}/models/{exp}/ckpt/best.pt); it "
                   "carries the model, mel and ROI settings and speaker names it was trained with")
    p.add_argument("--vocoder", help="HiFi-GAN checkpoint or griffin-lim (default: the --config's vocoder, else "
                   "Griffin-Lim)")
    p.add_argument("--config", help="config.yaml whose vocoder section to use (nothing else is read from it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--temperature", type=float, help="std of the post-net prior (default: the model's)")
    p.add_argument("--speaker", help="speaker name or index, for models with a speaker embedding")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="torch CPU threads")
    p.set_defaults(func=cmd_speak)

    p = sub.add_parser("summary", help="one-screen summary of a corpus's results folder (or of the files given)")
    p.add_argument("results", nargs="?", help="results/{corpus} folder (its stores and rejected tables)")
    p.add_argument("--manifest", help="instead of a folder: the manifest ...")
    p.add_argument("--stores", nargs="*", help="... the per-shard stores (any stage; each says its own) ...")
    p.add_argument("--rejected-tables", nargs="*", help="... and the rejected tables")
    p.add_argument("--corpus", help="corpus name shown (default: the manifest's folder)")
    p.add_argument("--out", help="also write the text here (and .json beside it)")
    p.set_defaults(func=cmd_summary)

    from lipspeech.doctor import add_parser as add_doctor

    add_doctor(sub)

    p = sub.add_parser("store-info", help="show a feature store's metadata and first rows")
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=5)
    p.set_defaults(func=cmd_store_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run the same command again (torchrun)
    func: Callable[[argparse.Namespace], int] = args.func
    if os.environ.get("LIPSPEECH_AUDIT_DIR"):  # the declared-inputs test (lipspeech/audit.py)
        from lipspeech.audit import install

        install(os.environ["LIPSPEECH_AUDIT_DIR"])
    if args.command == "doctor":  # needs nothing beyond the standard library to start
        return func(args)
    from lipspeech.config import ConfigError
    from lipspeech.data.media import MediaError
    from lipspeech.features.common import StageError
    from lipspeech.runtime import DeviceError
    from lipspeech.store import StoreError, one_line

    try:
        return func(args)
    except ConfigError as exc:
        print(f"lipspeech {args.command}: {exc}", file=sys.stderr)
        return 2
    except (StageError, StoreError, MediaError, DeviceError) as exc:  # a stage that cannot run at all says why in one line
        print(f"lipspeech {args.command}: {one_line(exc, limit=1000)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a stage failing as a whole: one readable line, traceback only on request
        if os.environ.get("LIPSPEECH_DEBUG"):
            raise
        print(f"lipspeech {args.command}: error: {type(exc).__name__}: {one_line(exc, limit=1000)} "
              "(LIPSPEECH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
