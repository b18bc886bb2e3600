"""What every stage's command line shares: the common options, reading the config, shard reports.

Each package registers its own subcommands (``lipspeech/<package>/cli.py``, a
``register(sub)`` function) with the helpers here; :mod:`lipspeech.cli` only collects
them. Command modules import only the standard library and this module at import
time: the stage code is imported when its command runs, so building the parser stays
cheap and ``lipspeech doctor`` runs when a dependency is missing.

Every stage subcommand takes its configuration as ``--config FILE`` (a whole
config.yaml) and/or ``--params JSON`` (a partial config, e.g. the sections a
Snakemake rule carries in ``params``; it overrides the file). The result is
validated against the same schema as the workflow's, defaults filled in.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

REJ = "rejected table to write"
MAN = "manifest: names the shard's utterances (rejected) should the input store be unreadable"
DEFAULT_THREADS = max(1, min(4, os.cpu_count() or 1))


def stage_config(args: argparse.Namespace) -> dict[str, Any]:
    """--config and --params, validated (defaults filled in)."""
    from lipspeech.core.config import ConfigError, load_config, validate_config

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


def progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def fail_fast(args: argparse.Namespace, cfg: dict[str, Any]) -> bool:
    """--fail-fast, else LIPSPEECH_FAIL_FAST (how the workflow hands down config key fail_fast: the
    jobs' shell prefix sets it, so that flipping it reruns nothing), else the config."""
    from lipspeech.core.settings import Settings

    if args.fail_fast:
        return True
    env = os.environ.get("LIPSPEECH_FAIL_FAST", "").strip().lower()
    if env:
        return env in ("1", "true", "yes", "on")
    return Settings.from_section(cfg).fail_fast


def opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def paths(values: list[str] | None) -> list[Path]:
    return [Path(v) for v in values or []]


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def faiss_threads(threads: int) -> None:
    import faiss

    faiss.omp_set_num_threads(max(1, threads))


def add_stage_args(p: argparse.ArgumentParser) -> None:
    """The options every stage command has."""
    p.add_argument("--config", help="config.yaml to read (defaults are used for missing keys)")
    p.add_argument("--params", help="JSON object of config sections overriding --config (what Snakemake passes)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="worker threads/processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fail-fast", action="store_true",
                   help="fail at the first rejected utterance (config key fail_fast; env LIPSPEECH_FAIL_FAST=1)")


def stage_parser(sub: Any, name: str, help: str, func: Callable[[argparse.Namespace], int],
                 many: tuple[str, ...] = (), **required: str) -> argparse.ArgumentParser:
    """A stage subcommand: the common options plus required path options (option name -> help);
    those named in ``many`` take several paths (one store per shard)."""
    p = sub.add_parser(name, help=help)
    add_stage_args(p)
    for option, text in required.items():
        p.add_argument(f"--{option.replace('_', '-')}", required=True, nargs="+" if option in many else None, help=text)
    p.set_defaults(func=func)
    return p


def report_shard(stage: str, label: str, ok: int, bad: int, out: str) -> int:
    """The line a per-shard stage prints when done; returns 0 (the exit code)."""
    print(f"{stage} {label}: {ok} utterances, {bad} rejected -> {out}")
    return 0
