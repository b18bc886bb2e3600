"""The vocoder's commands: train-vocoder and vocode (see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc


def cmd_train_vocoder(args: argparse.Namespace) -> int:
    from lipspeech.training.stores import CorpusStores
    from lipspeech.vocoder.stage import run_train_vocoder

    cfg = sc.stage_config(args)
    run_dir = Path(args.run_dir)
    sc.torch_threads(args.threads)
    corpus = CorpusStores(args.manifest, {"audio": args.audio, "mel": args.mel})
    s = run_train_vocoder(corpus, cfg["vocoder"], cfg["mel"], run_dir, threads=args.threads, progress=sc.progress(args))
    print(f"train-vocoder ({s['preset']}): {s['steps']} steps in {s['seconds']:.0f} s, best val mel L1 "
          f"{s['best_mel_l1']:.4f} at step {s['best_step']} -> {run_dir / 'ckpt' / 'best.pt'}")
    return 0


def cmd_vocode(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import VocoderConfig
    from lipspeech.features.audio import AudioConfig
    from lipspeech.training.stores import CorpusStores
    from lipspeech.vocoder import load_vocoder
    from lipspeech.vocoder.stage import GT_VOCODED, run_vocode

    cfg = sc.stage_config(args)
    sc.torch_threads(args.threads)
    corpus = None
    if args.system == GT_VOCODED:
        if not args.manifest or not args.mel:
            raise SystemExit(f"vocode {GT_VOCODED}: give --manifest and --mel (the mel stores)")
        corpus = CorpusStores(args.manifest, {"mel": args.mel})
    elif not args.mels:
        raise SystemExit(f"vocode {args.system}: give --mels (the experiment's synthesize store)")
    section = VocoderConfig.from_section(cfg["vocoder"])
    vocoder = load_vocoder(section, AudioConfig.from_section(cfg["mel"]), args.device or section.device,
                           checkpoint=args.checkpoint)
    ok, bad = run_vocode(args.system, vocoder, cfg["vocoder"], cfg["mel"], Path(args.out), Path(args.rejected),
                         mels=sc.opt_path(args.mels), corpus=corpus, split=args.split, progress=sc.progress(args))
    return sc.report_shard("vocode", f"{args.system} ({vocoder.kind})", ok, bad, args.out)


def register(sub: Any) -> None:
    sc.stage_parser(sub, "train-vocoder", "train a HiFi-GAN on the train split's audio and mels (vocoder.preset)",
                    cmd_train_vocoder, many=("audio", "mel"), manifest="manifest (splits, shards)",
                    audio="audio stores (decode)", mel="mel stores",
                    run_dir="run directory (vocoder/); resumes from its ckpt/last.pt")
    p = sc.stage_parser(sub, "vocode", "one system's test-split mels -> 16 kHz audio store (the configured vocoder)",
                        cmd_vocode, out="audio store to write (eval/{system}/audio.parquet)", rejected=sc.REJ)
    p.add_argument("--system", required=True, help="an experiment name (its eval/{exp}/mels.parquet) or gt_vocoded")
    p.add_argument("--mels", help="an experiment's synthesize store (eval/{exp}/mels.parquet)")
    p.add_argument("--manifest", help="gt_vocoded: the manifest (splits, shards)")
    p.add_argument("--mel", nargs="+", help="gt_vocoded: the mel stores")
    p.add_argument("--checkpoint", help="HiFi-GAN checkpoint when vocoder.checkpoint is null (train-vocoder's best.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of gt_vocoded")
    p.add_argument("--device", help="cpu, cuda, auto (default: vocoder.device)")
