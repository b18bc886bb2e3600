"""The roi stage's command (see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc


def cmd_roi(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import RoiConfig
    from lipspeech.core.shards import StageError
    from lipspeech.vision.backends import BackendError
    from lipspeech.vision.roi import roi_shard

    cfg = sc.stage_config(args)
    roi = cfg["roi"]  # the mapping: roi_shard hashes it
    try:
        ok, bad = roi_shard(
            Path(args.manifest), Path(args.audio), roi, Path(args.out), Path(args.qc), Path(args.rejected),
            threads=args.threads, progress=sc.progress(args), fail_fast=sc.fail_fast(args, cfg),
        )
    except BackendError as exc:
        raise StageError(str(exc)) from None
    return sc.report_shard("roi", f"{Path(args.audio).stem} ({RoiConfig.from_section(roi).backend})", ok, bad, args.out)


def register(sub: Any) -> None:
    sc.stage_parser(sub, "roi", "96x96 grayscale mouth crops (landmarks, tracking, alignment) of one shard, + QC",
                    cmd_roi, manifest="manifest (video paths)",
                    audio="audio store (decode stage): utterances and their n_frames",
                    out="roi store to write", qc="QC table to write", rejected=sc.REJ)
