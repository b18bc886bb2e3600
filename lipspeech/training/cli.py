"""The acoustic model's commands: train (one process, or data-parallel under torchrun) and synthesize
(see :mod:`lipspeech.core.stagecli`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lipspeech.core import stagecli as sc

if TYPE_CHECKING:
    from lipspeech.core.settings import TrainConfig


def experiment(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """The experiment --exp names: the --experiment JSON entry (what Snakemake passes), else from the config."""
    from lipspeech.core.config import ConfigError, validate_config
    from lipspeech.training.stage import find_experiment

    if args.experiment:
        try:
            entry = json.loads(args.experiment)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--experiment is not valid JSON ({exc})") from exc
        # schema check of the entry (what it says of other experiments was checked with the whole config)
        experiments = validate_config({"experiments": [entry]}, experiment_refs=False)["experiments"]
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


def _relaunch_under_torchrun(args: argparse.Namespace, train: TrainConfig, name: str) -> None:
    """Replace this process by the same command in ``--nproc`` processes under torchrun (DDP)."""
    import torch

    from lipspeech.core.config import ConfigError
    from lipspeech.training.distributed import torchrun_command

    device = train.device
    if (device == "auto" and torch.cuda.is_available()) or device.startswith("cuda"):
        if args.nproc > torch.cuda.device_count():
            raise ConfigError(f"--nproc {args.nproc}: only {torch.cuda.device_count()} GPUs visible")
    # exec, so that a signal from SLURM or Snakemake reaches torchrun, which passes it on to its workers
    cmd = torchrun_command(args.nproc, _without_option(args.argv, "--nproc"))
    print(f"train {name}: {args.nproc} processes (DDP): {' '.join(cmd[:9])} ...", flush=True)
    os.execv(cmd[0], cmd)


def cmd_train(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import ExperimentConfig, TrainConfig
    from lipspeech.training.distributed import launched_world_size
    from lipspeech.training.stage import run_train
    from lipspeech.training.stores import CorpusStores

    cfg = sc.stage_config(args)
    exp = experiment(args, cfg)
    name, train = ExperimentConfig.from_section(exp).name, TrainConfig.from_section(cfg["train"])
    run_dir = Path(args.run_dir)
    if args.nproc > 1 and launched_world_size() == 1:
        _relaunch_under_torchrun(args, train, name)
    threads = args.threads
    if launched_world_size() > 1:  # the job's CPUs are shared by this node's processes
        threads = max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", launched_world_size())))
    sc.torch_threads(threads)
    corpus = CorpusStores(args.manifest, {store: getattr(args, store) for store in ("roi", "mel", "units", "prosody")},
                          args.stats, cache_mb=train.reader_cache_mb)
    summary = run_train(corpus, exp, cfg["model"], cfg["train"], run_dir, threads=threads, progress=sc.progress(args),
                        fail_fast=sc.fail_fast(args, cfg),
                        data_sections={section: cfg[section] for section in ("mel", "roi", "corpus")})
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"train {name}: {summary['steps']} steps in {summary['seconds']:.0f} s, best {summary['best_metric']} "
          f"{summary['best_value']:.4f} at step {summary['best_step']}"
          + (" (stopped early: train.patience validations without improvement)" if summary["stopped_early"] else "")
          + f" -> {run_dir / 'ckpt' / 'best.pt'}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from lipspeech.core.settings import ExperimentConfig
    from lipspeech.training.stage import run_synthesize
    from lipspeech.training.stores import CorpusStores

    cfg = sc.stage_config(args)
    exp = experiment(args, cfg)
    sc.torch_threads(args.threads)
    corpus = CorpusStores(args.manifest, {"roi": args.roi})
    n = run_synthesize(corpus, exp, Path(args.ckpt), Path(args.out), split=args.split, temperature=args.temperature)
    print(f"synthesize {ExperimentConfig.from_section(exp).name}: {n} {args.split} utterances -> {args.out}")
    return 0


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exp", required=True, help="experiment name (an entry of the config's experiments)")
    p.add_argument("--experiment", help="that entry as JSON (what Snakemake passes); default: from the config")


def register(sub: Any) -> None:
    p = sc.stage_parser(sub, "train", "train one experiment (LTBS model) on the train split, validating on val",
                        cmd_train, many=("roi", "mel", "units", "prosody"),
                        manifest="manifest (splits, speakers, shards)", roi="roi stores", mel="mel stores",
                        units="units stores", prosody="prosody stores", stats="prosody stats.json (prosody-stats)",
                        run_dir="run directory (models/{exp}); resumes from its ckpt/last.pt")
    _add_experiment_args(p)
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this node, under torchrun (one per GPU; gloo on CPU); "
                        "1 (default): a single process")
    p = sc.stage_parser(sub, "synthesize", "coarse and post-net mels of a split's videos with a trained experiment",
                        cmd_synthesize, many=("roi",), manifest="manifest (splits, shards)", roi="roi stores (the videos)",
                        ckpt="model checkpoint (models/{exp}/ckpt/best.pt)",
                        out="mels store to write (eval/{exp}/mels.parquet)")
    _add_experiment_args(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--temperature", type=float, help="std of the post-net prior (default: the model's)")
