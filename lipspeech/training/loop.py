"""The one training loop: resume, validation, best/last checkpoints, logging, interrupts, determinism.

Every model family (the LTBS acoustic model, :mod:`lipspeech.training.trainer`; HiFi-GAN,
:mod:`lipspeech.vocoder.train`) is a :class:`Task`: it builds its networks and optimisers,
says how an epoch is cut into batches, takes one optimiser step on a batch, validates, and
hands over its state. :func:`run_loop` does the rest, the same for all of them.

Run directory layout::

    run_dir/
      config.json        the task's resolved configs, git commit, lipspeech version
      losses.csv         step, split, lr and the task's losses (train and val rows)
      tb/                TensorBoard event files (when tensorboard is importable and enabled)
      ckpt/last.pt       the latest state (networks, optimisers, schedulers, RNGs, data position)
      ckpt/best.pt       the state with the lowest validation ``best_metric``

``run_loop(..., resume=True)`` continues from ``ckpt/last.pt`` when it exists, and the
continued run is step-for-step the run that was never interrupted (same batches, same
random draws, same updates) on the same device and thread count: an epoch's batches and
each batch's augmentation are pure functions of (seed, epoch, batch), and the checkpoint
keeps the global RNG states and the position in the epoch.

Data-parallel (``ddp`` given, under torchrun): rank 0 validates, logs and writes the
checkpoints; ``last.pt`` then also keeps every rank's RNG state (``rng_ranks``).
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from lipspeech import __version__
from lipspeech.core.runtime import cpu_threads, deterministic_algorithms, git_commit, seed_everything
from lipspeech.core.store import write_text_atomic
from lipspeech.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from lipspeech.training.distributed import DistInfo, all_true, barrier, gather_objects

#: the folder of ckpt/ that keeps the learning curve's snapshots (train key snapshot_every)
SNAPSHOTS = "snapshots"


@dataclass
class TrainResult:
    """What a training run returns.

    Attributes:
        step: optimiser steps done (in total, over all resumptions).
        run_dir: the run directory.
        last_checkpoint: path of ckpt/last.pt.
        best_checkpoint: path of ckpt/best.pt, or None when there was no validation.
        best_value, best_step: the best validation ``best_metric`` so far and its step.
        history: the rows this call logged (dicts with the losses.csv columns).
    """

    step: int
    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Optional[Path] = None
    best_value: Optional[float] = None
    best_step: Optional[int] = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs; each family fills it from its own training section
    (:func:`lipspeech.training.trainer.train`, :func:`lipspeech.vocoder.train.train_vocoder`).

    Attributes:
        max_steps: the run's length in optimiser steps.
        seed: seeds the global RNGs before the task builds its networks.
        log_every, val_every, ckpt_every: train row / validation (+ last.pt) / extra last.pt intervals
            in steps (``ckpt_every`` 0: only at validations and at the end).
        max_nonfinite: stop after this many consecutive non-finite losses (0: never).
        patience: stop once this many validations in a row have not improved the best (0: never).
        snapshot_every: keep :meth:`Task.snapshot` as ``ckpt/snapshots/step_N.pt`` every this many steps (0: never).
        deterministic: torch's deterministic algorithms for the run.
        threads: torch CPU threads for the run (0: leave as is).
        tensorboard: also log to TensorBoard.
        progress: a tqdm bar.
        desc: the bar's label.
    """

    max_steps: int
    seed: int
    log_every: int
    val_every: int
    ckpt_every: int
    max_nonfinite: int
    patience: int
    snapshot_every: int
    deterministic: bool
    threads: int = 0
    tensorboard: bool = False
    progress: bool = True
    desc: str = "train"


class Task:
    """One model family's part of training. Subclasses set ``columns`` and implement the methods.

    :func:`run_loop` calls, in this order: :meth:`build` (after seeding), then either
    :meth:`check_resume` + :meth:`load_state` or nothing, then :meth:`start`; per epoch
    :meth:`epoch_batches` and :meth:`batches`, per batch :meth:`lr` and :meth:`step`,
    every ``val_every`` steps :meth:`validate`, after each epoch :meth:`end_epoch`.
    """

    #: losses.csv header: ``step, split, lr`` and the task's losses and metrics
    columns: Sequence[str] = ("step", "split", "lr")
    #: the validation metric that picks best.pt (lower is better)
    best_metric: str = "total"
    #: postfix of the progress bar: its label -> the train loss it shows
    shown: Mapping[str, str] = {}

    def build(self) -> None:
        """Create the networks, optimisers and schedulers (the global RNGs are freshly seeded)."""
        raise NotImplementedError

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Raise ConfigError when ``ckpt`` (read from ``path``) was made with another config."""

    def load_state(self, ckpt: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        raise NotImplementedError

    def start(self, resumed: bool) -> None:
        """Called once the state is in place, before the first step."""

    def state(self) -> dict[str, Any]:
        """The networks', optimisers' and schedulers' states (for the checkpoints)."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """What every checkpoint also carries (the configs the model was made with)."""
        return {}

    def run_config(self) -> dict[str, Any]:
        """config.json's content (the loop adds the git commit, the version and the resume step)."""
        return {}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches as item indices (a pure function of the seed and ``epoch``)."""
        raise NotImplementedError

    def batches(self, batches: list[list[int]], epoch: int, start: int) -> Iterator[Any]:
        """The batches ``batches[start:]`` of ``epoch``, ready for :meth:`step`."""
        raise NotImplementedError

    def lr(self) -> float:
        """The learning rate the next step uses (logged)."""
        raise NotImplementedError

    def step(self, batch: Any) -> Optional[dict[str, float]]:
        """One optimiser step: its losses (and grad norms), or None when a loss was not finite (nothing updated)."""
        raise NotImplementedError

    def describe(self, batch: Any) -> str:
        """What the non-finite warning says of a batch ("" for nothing)."""
        return ""

    def reduce(self, losses: dict[str, float]) -> dict[str, float]:
        """Train losses as logged (data-parallel tasks: the mean over ranks; every rank calls it)."""
        return losses

    @property
    def has_validation(self) -> bool:
        return False

    def validate(self) -> dict[str, float]:
        """Validation metrics (on rank 0 only); must contain ``best_metric``."""
        raise NotImplementedError

    def snapshot(self) -> Optional[dict[str, Any]]:
        """What a learning-curve snapshot keeps (the weights inference would use), or None for nothing."""
        return None

    def after_validation(self, logger: "LossLogger", step: int) -> None:
        """Extra logging after a validation (rank 0)."""

    def end_epoch(self) -> None:
        """Called after every full epoch."""


class LossLogger:
    """losses.csv (always) and TensorBoard (when importable and enabled)."""

    def __init__(self, run_dir: Path, resume_step: Optional[int], tensorboard: bool, columns: Sequence[str]):
        self.path = run_dir / "losses.csv"
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            # rows past the checkpoint belong to a run that died after it; they are replayed
            with open(self.path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=list(columns), extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is optional
                warnings.warn(f"TensorBoard logging off: {exc}", stacklevel=3)
            else:
                purge = None if resume_step is None else resume_step + 1
                self.tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def log(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "split") and value is not None:
                    self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class _NoLogger:
    """What ranks other than 0 log to: nothing."""

    tb = None

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _Run:
    """The loop's position (step, epoch, batch in epoch), best validation and checkpoint writing."""

    def __init__(self, task: Task, settings: LoopSettings, run_dir: Path, ddp: Optional[DistInfo]):
        self.task, self.settings, self.ddp = task, settings, ddp
        self.main = ddp is None or ddp.is_main
        self.last_path, self.best_path = run_dir / "ckpt" / "last.pt", run_dir / "ckpt" / "best.pt"
        self.step = self.epoch = self.position = 0
        self.best: dict[str, Any] = {"value": None, "step": None}
        self.resumed = False
        self.saved_at = -1
        self.commit = git_commit()

    def out_of_patience(self) -> bool:
        """Early stopping: ``patience`` validations since the best one (a function of the saved state,
        so a resumed run that had stopped stops again at once)."""
        patience, best = self.settings.patience, self.best["step"]
        return bool(patience) and best is not None and self.step - best >= patience * self.settings.val_every

    def resume(self, device: Any) -> None:
        """Continue from last.pt (what :meth:`save` wrote)."""
        ckpt = load_checkpoint(self.last_path, map_location=device)
        self.task.check_resume(ckpt, self.last_path)
        self.task.load_state(ckpt)
        self.step, self.epoch, self.position = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.best = dict(ckpt["best"])
        ranks_rng = ckpt.get("rng_ranks")
        if self.ddp is not None and ranks_rng is not None and len(ranks_rng) == self.ddp.world_size:
            restore_rng(ranks_rng[self.ddp.rank])
        else:
            restore_rng(ckpt["rng"])
        self.resumed, self.saved_at = True, self.step

    def ranks_rng(self) -> Optional[list[dict[str, Any]]]:
        """Every rank's RNG state (a collective: every rank calls it at the same steps); None in one process."""
        return None if self.ddp is None else gather_objects(capture_rng())

    def state(self, ranks_rng: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
        state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.position, "best": self.best,
                 **self.task.state(), "rng": capture_rng() if ranks_rng is None else ranks_rng[0],
                 **self.task.record(), "git_commit": self.commit, "lipspeech_version": __version__}
        if ranks_rng is not None:
            state["rng_ranks"] = ranks_rng
        return state

    def save(self, best: bool, last: bool) -> None:
        """Write best.pt and/or last.pt (rank 0); every rank calls it when ``last`` (the RNG gather)."""
        ranks_rng = self.ranks_rng() if last else None
        if best and self.main:
            save_checkpoint(self.best_path, self.state(ranks_rng))
        if last:
            if self.main:
                save_checkpoint(self.last_path, self.state(ranks_rng))
            self.saved_at = self.step


    def save_snapshot(self) -> None:
        """The task's snapshot of this step in ``ckpt/snapshots/`` (the learning curve reads them)."""
        snap = self.task.snapshot()
        if snap is not None:
            path = self.last_path.parent / SNAPSHOTS / f"step_{self.step:07d}.pt"
            path.parent.mkdir(exist_ok=True)
            save_checkpoint(path, {**snap, **self.task.record(), "step": self.step, "git_commit": self.commit,
                                   "lipspeech_version": __version__})


def _write_run_config(run: _Run, run_dir: Path) -> None:
    extra = {} if run.ddp is None else {"world_size": run.ddp.world_size}
    record = {**run.task.run_config(), "git_commit": run.commit, "lipspeech_version": __version__,
              "resumed_from_step": run.step if run.resumed else None, **extra}
    write_text_atomic(run_dir / "config.json", json.dumps(record, indent=2) + "\n")


def _train_steps(run: _Run, stop: int, logger: Any, history: list[dict[str, Any]], bar: Any) -> None:
    """Steps until ``stop``, validating and checkpointing on the way."""
    task, cfg = run.task, run.settings
    nonfinite = 0
    while run.step < stop and not run.out_of_patience():
        batches = task.epoch_batches(run.epoch)
        if not batches:
            raise ValueError("no batches in an epoch (fewer utterances than one batch, with drop_last?)")
        for batch in task.batches(batches, run.epoch, run.position):
            lr = task.lr()
            losses = task.step(batch)
            run.position += 1
            if losses is None:
                nonfinite += 1
                what = task.describe(batch)
                warnings.warn(f"step {run.step + 1}: non-finite loss, batch skipped" + (f" ({what})" if what else ""),
                              stacklevel=2)
                if nonfinite >= cfg.max_nonfinite > 0:
                    raise FloatingPointError(f"{nonfinite} consecutive non-finite losses, stopping at step {run.step}")
                continue
            nonfinite = 0
            run.step += 1
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == stop:
                row = {"step": run.step, "split": "train", "lr": lr, **task.reduce(losses)}
                logger.log(row)
                history.append(row)
                bar.set_postfix({label: f"{row[key]:.3f}" for label, key in task.shown.items()})
            validated = improved = False
            if task.has_validation and run.step % cfg.val_every == 0:
                if run.main:  # the other ranks wait for it at their next collective
                    improved = _validate(run, logger, history)
                validated = True
            run.save(best=improved, last=validated or bool(cfg.ckpt_every and run.step % cfg.ckpt_every == 0))
            if cfg.snapshot_every and run.step % cfg.snapshot_every == 0 and run.main:
                run.save_snapshot()
            if run.step >= stop or (validated and _stop_early(run)):
                break
        else:
            run.epoch, run.position = run.epoch + 1, 0
            task.end_epoch()


def _stop_early(run: _Run) -> bool:
    """Out of patience, as rank 0 (the one that validates and knows the best) decides for all ranks."""
    if run.ddp is None:
        return run.out_of_patience()
    return not all_true(not run.out_of_patience() if run.main else True)


def _validate(run: _Run, logger: Any, history: list[dict[str, Any]]) -> bool:
    """Validate, log; True when this is the best validation so far."""
    metrics = run.task.validate()
    row = {"step": run.step, "split": "val", **metrics}
    logger.log(row)
    history.append(row)
    run.task.after_validation(logger, run.step)
    value = metrics[run.task.best_metric]
    if run.best["value"] is None or value < run.best["value"]:
        run.best = {"value": value, "step": run.step, "val": metrics}
        return True
    return False


def run_loop(
    task: Task,
    settings: LoopSettings,
    run_dir: Path,
    device: Any = None,
    resume: bool = True,
    stop_at_step: Optional[int] = None,
    ddp: Optional[DistInfo] = None,
) -> TrainResult:
    """Train ``task`` in ``run_dir`` (see the module docstring).

    Args:
        task: the model family's :class:`Task`.
        settings: the loop's :class:`LoopSettings`.
        run_dir: run directory (created).
        device: where checkpoints are loaded to.
        resume: continue from ``run_dir/ckpt/last.pt`` when it exists.
        stop_at_step: stop (saving last.pt) once this many steps are done, as a time-limited
            job would; schedules still follow ``max_steps``.
        ddp: this process's place in a data-parallel run (None: a single process).
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    (run_dir / "ckpt").mkdir(parents=True, exist_ok=True)
    stop = settings.max_steps if stop_at_step is None else min(stop_at_step, settings.max_steps)
    with deterministic_algorithms(settings.deterministic), cpu_threads(settings.threads):
        seed_everything(settings.seed)
        task.build()
        run = _Run(task, settings, run_dir, ddp)
        if resume and run.last_path.exists():
            run.resume(device)
        elif run.main:
            run.best_path.unlink(missing_ok=True)  # a stale best.pt from an earlier run would outrank this one
        task.start(run.resumed)
        if run.main:
            _write_run_config(run, run_dir)
        logger = (LossLogger(run_dir, run.step if run.resumed else None, settings.tensorboard, task.columns)
                  if run.main else _NoLogger())
        history: list[dict[str, Any]] = []
        bar = tqdm(total=settings.max_steps, initial=run.step, desc=settings.desc, unit="step", dynamic_ncols=True,
                   disable=not settings.progress or not run.main)
        try:
            _train_steps(run, stop, logger, history, bar)
        except KeyboardInterrupt:
            # keep the work done so far; resuming replays from here exactly (other ranks' RNGs are lost)
            if run.step != run.saved_at and run.main:
                save_checkpoint(run.last_path, run.state())
            raise
        finally:
            bar.close()
            logger.close()
        if run.step != run.saved_at:
            run.save(best=False, last=True)
        barrier()  # nobody reads last.pt / best.pt before rank 0 has written them
    return TrainResult(step=run.step, run_dir=run_dir, last_checkpoint=run.last_path,
                       best_checkpoint=run.best_path if run.best_path.exists() else None,
                       best_value=run.best["value"], best_step=run.best["step"], history=history,
                       stopped_early=run.out_of_patience())
