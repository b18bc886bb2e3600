"""The acoustic feature stages' commands: mel, ssl-features, kmeans-fit, units, prosody, prosody-stats
(see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc


def _shard_options(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """What every per-shard feature function takes besides its inputs and outputs."""
    return {"progress": sc.progress(args), "manifest": sc.opt_path(args.manifest), "fail_fast": sc.fail_fast(args, cfg)}


def cmd_mel(args: argparse.Namespace) -> int:
    from lipspeech.features.mel import mel_shard

    cfg = sc.stage_config(args)
    sc.torch_threads(args.threads)
    ok, bad = mel_shard(Path(args.audio), cfg["mel"], Path(args.out), Path(args.rejected), **_shard_options(args, cfg))
    return sc.report_shard("mel", Path(args.audio).stem, ok, bad, args.out)


def cmd_ssl_features(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import SslConfig
    from lipspeech.features.ssl import ssl_shard

    cfg = sc.stage_config(args)
    sc.torch_threads(args.threads)
    ok, bad = ssl_shard(Path(args.audio), cfg["ssl"], Path(args.out), Path(args.rejected), **_shard_options(args, cfg))
    source = SslConfig.from_section(cfg["ssl"]).source
    return sc.report_shard("ssl-features", f"{Path(args.audio).stem} ({source})", ok, bad, args.out)


def cmd_units(args: argparse.Namespace) -> int:
    from lipspeech.features.units import units_shard

    cfg = sc.stage_config(args)
    sc.faiss_threads(args.threads)
    ok, bad = units_shard(Path(args.ssl), Path(args.centroids), cfg["ssl"], cfg["kmeans"], Path(args.out),
                          Path(args.rejected), **_shard_options(args, cfg))
    return sc.report_shard("units", Path(args.ssl).stem, ok, bad, args.out)


def cmd_prosody(args: argparse.Namespace) -> int:
    from lipspeech.features.prosody import prosody_shard

    cfg = sc.stage_config(args)
    sc.torch_threads(1)  # parallelism comes from one pyworld thread per utterance
    ok, bad = prosody_shard(Path(args.audio), cfg["prosody"], cfg["mel"], Path(args.out), Path(args.rejected),
                            threads=args.threads, **_shard_options(args, cfg))
    return sc.report_shard("prosody", Path(args.audio).stem, ok, bad, args.out)


def cmd_kmeans_fit(args: argparse.Namespace) -> int:
    from lipspeech.features.units import kmeans_fit

    cfg = sc.stage_config(args)  # no faiss_threads: the fit runs on one thread whatever it is given
    info = kmeans_fit(sc.paths(args.ssl), Path(args.manifest), cfg["ssl"], cfg["kmeans"], Path(args.out),
                      Path(args.json), progress=sc.progress(args), fail_fast=sc.fail_fast(args, cfg))
    print(f"kmeans-fit: k = {info['k']} on {info['frames_sampled']} frames of dimension {info['dim']}, "
          f"mean squared distance {info['mean_sq_distance']:.4g} -> {args.out}")
    return 0


def cmd_prosody_stats(args: argparse.Namespace) -> int:
    from lipspeech.features.prosody import prosody_stats

    cfg = sc.stage_config(args)
    stats = prosody_stats(sc.paths(args.prosody), Path(args.manifest), cfg["prosody"], cfg["mel"], Path(args.out),
                          fail_fast=sc.fail_fast(args, cfg))
    print(f"prosody-stats: {len(stats['speakers'])} speakers, {stats['global']['utterances']} train utterances"
          f" -> {args.out}")
    return 0


def register(sub: Any) -> None:
    audio = "audio store (decode stage) to read"
    for name, help, func, inputs, out in (
        ("mel", "log-mel spectrogram of one audio shard (4 frames per video frame)", cmd_mel, {"audio": audio},
         "mel store to write"),
        ("ssl-features", "50 Hz HuBERT-layer (or MFCC) features of one audio shard", cmd_ssl_features,
         {"audio": audio}, "ssl store to write"),
        ("units", "nearest-centroid units (2 per video frame) of one ssl shard", cmd_units,
         {"ssl": "ssl store to read", "centroids": "centroids .npy (kmeans-fit)"}, "units store to write"),
        ("prosody", "WORLD log-F0, voiced mask and energy (per video frame) of one audio shard", cmd_prosody,
         {"audio": audio}, "prosody store to write"),
    ):
        p = sc.stage_parser(sub, name, help, func, **inputs, out=out, rejected=sc.REJ)
        p.add_argument("--manifest", help=sc.MAN)
    sc.stage_parser(sub, "kmeans-fit", "faiss k-means of the units on a sample of train frames of all ssl shards",
                    cmd_kmeans_fit, many=("ssl",), manifest="manifest (for the train split)", ssl="ssl stores",
                    out="centroids .npy to write", json="kmeans .json to write (config hash, k, objective)")
    sc.stage_parser(sub, "prosody-stats", "per-speaker log-F0 and energy mean/std over the train split",
                    cmd_prosody_stats, many=("prosody",), manifest="manifest (speakers, train split)",
                    prosody="prosody stores", out="stats .json to write")
