"""The data stages' commands: synth-corpus, manifest, decode (see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc


def cmd_synth_corpus(args: argparse.Namespace) -> int:
    from lipspeech.data.synth.corpus import generate_corpus

    cfg = sc.stage_config(args)
    summary = generate_corpus(cfg["synth"], Path(args.out), threads=args.threads, progress=sc.progress(args))
    print(json.dumps(summary, indent=1))
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import CorpusConfig
    from lipspeech.data.manifest import build_manifest

    cfg = sc.stage_config(args)
    root = Path(args.root or CorpusConfig.from_section(cfg["corpus"]).root or "")
    df, rejected = build_manifest(
        cfg["corpus"], cfg["manifest"], root, Path(args.out), Path(args.rejected),
        threads=args.threads, progress=sc.progress(args), fail_fast=sc.fail_fast(args, cfg),
    )
    print(f"manifest: {len(df)} utterances ({df['duration'].sum() / 3600:.3f} h), {len(rejected)} rejected -> {args.out}")
    for utt, reason in list(rejected.items())[:20]:
        print(f"  rejected {utt}: {reason}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from lipspeech.data.decode import decode_shard

    cfg = sc.stage_config(args)
    ok, bad = decode_shard(
        Path(args.manifest), args.shard, cfg["decode"], Path(args.out), Path(args.rejected),
        threads=args.threads, progress=sc.progress(args), fail_fast=sc.fail_fast(args, cfg),
    )
    return sc.report_shard("decode", f"shard {args.shard}", ok, bad, args.out)


def register(sub: Any) -> None:
    sc.stage_parser(sub, "synth-corpus", "generate the SynthGRID demo corpus (GRID layout) offline", cmd_synth_corpus,
                    out="output folder (GRID layout); corpus.json is written last")
    p = sc.stage_parser(sub, "manifest", "list a corpus's utterances with split and shard", cmd_manifest,
                        out="manifest.parquet to write", rejected=sc.REJ)
    p.add_argument("--root", help="corpus root (default: corpus.root of the config)")
    p = sc.stage_parser(sub, "decode", "decode one shard's audio (16 kHz mono) and count frames (25 fps)", cmd_decode,
                        manifest="manifest to read", out="audio store to write", rejected=sc.REJ)
    p.add_argument("--shard", type=int, required=True, help="shard number")
