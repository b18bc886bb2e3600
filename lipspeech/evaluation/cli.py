"""The evaluation's commands: evaluate, units-analysis and report (see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lipspeech.evaluation.stage import run_evaluate

    cfg = sc.stage_config(args)
    sc.torch_threads(1)  # --threads are scoring processes of one thread each (lipspeech.evaluation.pool)
    s = run_evaluate(
        args.system, Path(args.manifest), sc.paths(args.reference), sc.opt_path(args.audio),
        cfg["evaluate"], cfg["prosody"], cfg["mel"], Path(args.out), Path(args.summary), Path(args.rejected),
        progress=sc.progress(args), threads=args.threads,
    )

    def fmt(key: str) -> str:
        return "n/a" if s[key] is None else f"{s[key]:.3f}"

    print(f"evaluate {args.system}: {s['n']} utterances ({s['n_rejected']} rejected); WER {fmt('wer')} CER {fmt('cer')} "
          f"STOI {fmt('stoi')} ESTOI {fmt('estoi')} PESQ-NB {fmt('pesq_nb')} MCD {fmt('mcd')} dB "
          f"V/UV {fmt('vuv_error')} DNSMOS P.808 {fmt('dnsmos_p808')} OVRL {fmt('dnsmos_ovrl')} "
          f"speaker sim {fmt('speaker_sim')} -> {args.summary}")
    print(f"  ASR: {s['asr']}")
    return 0


def _named_paths(specs: list[str] | None, what: str) -> dict[str, Path]:
    """``NAME=PATH`` options -> {name: path}."""
    out = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model wants NAME=PATH ({what}), got {spec!r}")
        out[name] = Path(path)
    return out


def cmd_units_analysis(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import SslConfig
    from lipspeech.evaluation.units_analysis import units_analysis

    cfg = sc.stage_config(args)
    sc.faiss_threads(args.threads)
    sc.torch_threads(args.threads)
    table = units_analysis(
        Path(args.manifest), sc.paths(args.audio), cfg["ssl"], cfg["kmeans"], cfg["units_analysis"],
        Path(args.out), Path(args.rejected), raw_dir=sc.opt_path(args.raw), units_paths=sc.paths(args.units),
        models=_named_paths(args.model, "an experiment and its best.pt"), progress=sc.progress(args),
    )
    best = max((r for r in table.to_pylist() if r["kind"] == "grid"), key=lambda r: r["pnmi"])
    where = "MFCC" if best["layer"] < 0 else f"layer {best['layer']}"
    source = SslConfig.from_section(cfg["ssl"]).source
    print(f"units-analysis ({source}): {table.num_rows} rows; highest PNMI {best['pnmi']:.3f} "
          f"({where}, k = {best['k']}) -> {args.out}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from lipspeech.evaluation.curve import learning_curve

    cfg = sc.stage_config(args)
    sc.torch_threads(args.threads)
    result = learning_curve(Path(args.snapshots), Path(args.manifest), sc.paths(args.roi), cfg["curve"], cfg["evaluate"],
                            cfg["vocoder"], cfg["mel"], Path(args.out), sc.opt_path(args.vocoder), threads=args.threads,
                            progress=sc.progress(args), best=sc.opt_path(args.best))
    best = min(result["rows"], key=lambda r: r["wer"])
    print(f"curve: {len(result['rows'])} snapshots on {result['utterances']} val utterances; lowest WER "
          f"{best['wer']:.3f} at step {best['step']} -> {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lipspeech.evaluation.report import ReportInputs, build_report

    cfg = sc.stage_config(args)
    inputs = ReportInputs.from_args(args.manifest, {"audio": args.audio, "mel": args.mel, "prosody": args.prosody},
                                    args.system, args.model or [], args.units_analysis, args.curve or [])
    sc.torch_threads(args.threads)
    data = build_report(inputs, cfg, Path(args.html), Path(args.md), systems=[s[0] for s in args.system],
                        progress=sc.progress(args), json_out=Path(args.json))
    print(f"report {data.corpus}: {len(data.systems)} systems, {len(data.examples)} examples, {len(data.notes)} notes "
          f"-> {args.html} ({Path(args.html).stat().st_size / 1e6:.2f} MB), {args.md}")
    for note in data.notes:
        print(f"  note: {note}")
    return 0


def register(sub: Any) -> None:
    p = sc.stage_parser(sub, "evaluate", "score one system's test audio against the ground truth (ASR, STOI, PESQ, "
                        "MCD, F0, energy)", cmd_evaluate, many=("reference",),
                        system="ground_truth, gt_vocoded or an experiment name",
                        manifest="manifest (text, speaker, split)",
                        reference="ground-truth audio stores (decode stage, all shards)",
                        out="metrics.parquet to write", summary="summary.json to write", rejected=sc.REJ)
    p.add_argument("--audio", help="the system's audio store (stage vocode); not for ground_truth")
    p = sc.stage_parser(sub, "units-analysis", "how phonetic the units are: phone purity, cluster purity and PNMI "
                        "for a grid of SSL layers and cluster counts", cmd_units_analysis, many=("audio",),
                        manifest="manifest (splits, speakers, file names)", audio="audio stores (decode stage)",
                        out="quality.parquet to write", rejected=sc.REJ)
    p.add_argument("--raw", help="SynthGRID's raw folder (its phoneme timings; else units_analysis.alignments)")
    p.add_argument("--units", nargs="*", help="units stores: also score the pipeline's own units")
    p.add_argument("--model", nargs="*", metavar="NAME=PATH", help="experiments' best.pt: their val unit accuracy")
    p = sc.stage_parser(sub, "report", "report.html (metrics, audio players, plots; self-contained) + report.md",
                        cmd_report, many=("audio", "mel", "prosody"), manifest="manifest (test split, speakers, shards)",
                        audio="ground-truth audio stores (examples)", mel="mel stores (examples)",
                        prosody="prosody stores (examples' F0)", html="page to write", md="Markdown summary to write",
                        json="the tables as numbers, with intervals and differences")
    p.add_argument("--system", required=True, nargs="+", action="append", metavar="NAME SUMMARY METRICS [AUDIO]",
                   help="one row, in order: its evaluate summary.json and metrics.parquet and (all but ground_truth) "
                        "its vocoded audio.parquet; repeat per system")
    p.add_argument("--model", nargs="*", metavar="NAME=CKPT", help="experiments' checkpoints (the commit they were "
                   "trained at)")
    p.add_argument("--units-analysis", help="units-analysis table (quality.parquet): adds the unit-analysis section")
    p.add_argument("--curve", nargs="*", metavar="NAME=CURVE", help="experiments' curve.json (stage curve): adds the "
                   "learning-curve section")
    p = sc.stage_parser(sub, "curve", "the learning curve: WER/CER (and DNSMOS) of each snapshot of a run on a "
                        "val subset", cmd_curve, many=("roi",), manifest="manifest (val split, transcripts)",
                        roi="roi stores (all shards)", snapshots="the run's ckpt/snapshots folder",
                        out="curve.json to write")
    p.add_argument("--vocoder", help="HiFi-GAN checkpoint (vocoder.kind hifigan without vocoder.checkpoint)")
    p.add_argument("--best", help="the run's best.pt, scored at each of curve.temperatures")
