"""A training stage's run directory under Snakemake: the run key, kept best.pt, training in chunks.

Both training stages (the acoustic model's, :mod:`lipspeech.training.stage`, and the
vocoder's, :mod:`lipspeech.vocoder.stage`) declare only ``ckpt/best.pt`` (protected).
Snakemake deletes a job's declared outputs before it runs and after it fails, so
``best.pt`` may be gone when a killed training job is restarted, while ``last.pt``
(not declared) survives. Hence:

- :func:`open_run`: ``last.pt`` is resumed only when ``run.json``'s key (the configs
  that change the result and the data fingerprint) matches this run; otherwise every
  checkpoint is removed and the run starts afresh. A resumed run gets its kept
  ``best.kept.pt`` back as ``best.pt``.
- :func:`train_in_chunks`: training runs in chunks of ``val_every`` steps (each chunk
  resumes exactly from ``last.pt``), and after each chunk ``best.pt`` is hard-linked to
  ``best.kept.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Optional

from lipspeech.core.shards import StageError
from lipspeech.training.checkpoint import load_checkpoint
from lipspeech.training.distributed import barrier
from lipspeech.training.loop import SNAPSHOTS, TrainResult

CHECKPOINTS = ("last.pt", "best.pt", "best.kept.pt")


def link(src: Path, dst: Path) -> None:
    """``dst`` becomes another name of ``src`` (a copy where hard links are impossible)."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # renaming a hard link onto its twin would leave the temporary name behind
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def restore_best(ckpt_dir: Path) -> None:
    """Put ``best.kept.pt`` back as ``best.pt`` when Snakemake removed it."""
    best, kept, last = ckpt_dir / "best.pt", ckpt_dir / "best.kept.pt", ckpt_dir / "last.pt"
    if best.exists() or not kept.exists() or not last.exists():
        return
    kept_step = load_checkpoint(kept)["step"]
    best_step = load_checkpoint(last)["best"]["step"]
    if kept_step != best_step:
        warnings.warn(f"{best}: restored from step {kept_step}, but the best validation was at step {best_step} "
                      "(lost when the job was interrupted)", stacklevel=2)
    link(kept, best)


def open_run(run_dir: Path, key: str, label: str, main: bool = True) -> Optional[int]:
    """Make ``run_dir/ckpt`` fit the run ``key``; returns the step a matching ``last.pt`` resumes from.

    Every rank of a data-parallel run calls it (rank 0 alone changes files; ``main``).
    ``label`` starts the line printed when a run resumes.
    """
    ckpt_dir = run_dir / "ckpt"
    run_json = run_dir / "run.json"
    previous = json.loads(run_json.read_text()).get("key") if run_json.exists() else None
    if main:
        if previous != key:
            # another config or other data: the old state must not be resumed, not even after a crash of this run
            for name in CHECKPOINTS:
                (ckpt_dir / name).unlink(missing_ok=True)
            shutil.rmtree(ckpt_dir / SNAPSHOTS, ignore_errors=True)
        elif (ckpt_dir / "last.pt").exists():
            restore_best(ckpt_dir)
    barrier()  # the other ranks look at ckpt/ once rank 0 has cleaned it up
    run_dir.mkdir(parents=True, exist_ok=True)
    if previous != key or not (ckpt_dir / "last.pt").exists():
        return None
    step = int(load_checkpoint(ckpt_dir / "last.pt")["step"])
    if main:
        print(f"{label}: resuming from step {step} ({ckpt_dir / 'last.pt'})", flush=True)
    return step


def train_in_chunks(train_until: Callable[[int], TrainResult], start: int, max_steps: int, every: int,
                    ckpt_dir: Path, main: bool = True) -> TrainResult:
    """Call ``train_until(stop)`` for stop = each multiple of ``every`` after ``start`` up to ``max_steps``,
    keeping ``best.pt`` as ``best.kept.pt`` after each; StageError when no best.pt was written."""
    step, result = start, None
    while result is None or step < max_steps:
        result = train_until(min(max_steps, (step // every + 1) * every))
        if main and (ckpt_dir / "best.pt").exists():
            link(ckpt_dir / "best.pt", ckpt_dir / "best.kept.pt")
        if result.step <= step or result.stopped_early:  # nothing left to do (a finished run resumed, early stop)
            break
        step = result.step
    if not (ckpt_dir / "best.pt").exists():
        raise StageError(f"{ckpt_dir / 'best.pt'}: not written (no validation ran)")
    return result
