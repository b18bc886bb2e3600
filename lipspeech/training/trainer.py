"""The training loop: AdamW + warmup/decay, clipping, validation, checkpoints, logs, exact resume.

Run directory layout::

    run_dir/
      config.json        resolved model + train config, git commit, lipspeech version
      losses.csv         step, split, lr, grad_norm and every loss (train and val rows)
      tb/                TensorBoard event files (when tensorboard is importable)
      ckpt/last.pt       the latest state (model, optimiser, scheduler, RNGs, data position)
      ckpt/best.pt       the state with the lowest validation ``best_metric``

``train(..., resume=True)`` continues from ``ckpt/last.pt`` when it exists, and
the continued run is step-for-step the run that was never interrupted (same
batches, augmentation, dropout masks and updates) on the same device and thread
count.

Under torchrun (``lipspeech train --nproc N``) the same loop runs data-parallel:
see :mod:`lipspeech.training.distributed`. Rank 0 validates, logs and writes the
checkpoints; ``last.pt`` then also keeps every rank's RNG state (``rng_ranks``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from lipspeech import __version__
from lipspeech.config import ConfigError
from lipspeech.models.batch import Batch, Utterance, collate
from lipspeech.models.ltbs import LTBSModel, build_model
from lipspeech.models.presets import check_model_config
from lipspeech.runtime import cpu_threads, deterministic_algorithms, git_commit, resolve_device, seed_everything
from lipspeech.store import write_text_atomic
from lipspeech.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from lipspeech.training.config import LOSS_NAMES, check_train_config
from lipspeech.training.data import as_sequence, augment, epoch_batches, item_lengths
from lipspeech.training.distributed import (
    all_true,
    barrier,
    dist_info,
    gather_objects,
    mean_over_ranks,
    shard_batches,
    sync_batchnorm,
)

# validation metrics that are not losses (higher is better): top-1 accuracy of the unit logits
METRIC_NAMES = ("unit_acc",)
CSV_COLUMNS = ("step", "split", "lr", "grad_norm") + LOSS_NAMES + METRIC_NAMES


@dataclass
class TrainResult:
    """What :func:`train` returns.

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


def lr_lambda(cfg: Mapping[str, Any]):
    """Learning-rate factor per completed optimiser step: linear warmup, then decay."""
    warmup, total = cfg["warmup_steps"], cfg["max_steps"]
    decay, floor = cfg["decay"], cfg["min_lr_ratio"]
    rate, every = cfg["exp_decay_rate"], cfg["exp_decay_steps"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        after = step - warmup
        if decay == "exp":
            return max(floor, rate ** (after / every))
        progress = min(1.0, after / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: torch.nn.Module, cfg: Mapping[str, Any]) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norm gains and other 1-D parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (when asked for and supported); nothing elsewhere."""
    if bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Augmented(torch.utils.data.Dataset):
    """Dataset view indexed by (item, epoch, batch) that applies the seeded augmentation."""

    def __init__(self, data: Sequence[Utterance], cfg: Mapping[str, Any]):
        self.data, self.cfg = data, cfg

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int, int]) -> Utterance:
        index, epoch, batch = key
        return augment(self.data[index], self.cfg["seed"], epoch, batch, index, self.cfg["random_crop"], self.cfg["hflip"])


def _train_batches(data: _Augmented, batches: list[list[int]], epoch: int, start: int, workers: int) -> Iterator[Batch]:
    keyed = [[(i, epoch, b) for i in batches[b]] for b in range(start, len(batches))]
    if workers == 0:
        for keys in keyed:
            yield collate([data[k] for k in keys])
        return
    # its own generator: a DataLoader otherwise draws its worker seed from the global torch RNG,
    # which would shift the dropout stream and break exact resume
    generator = torch.Generator().manual_seed(int(data.cfg["seed"]) * 1_000_003 + epoch)
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=keyed, collate_fn=collate, num_workers=workers, generator=generator
    )
    yield from loader


@torch.no_grad()
def evaluate(
    model: LTBSModel,
    data: Sequence[Utterance],
    batch_size: int,
    device: torch.device,
    bf16: bool = True,
    free_running: bool = True,
    max_batches: int = 0,
) -> dict[str, float]:
    """Mean validation losses (teacher-forced), weighted by utterances.

    With ``free_running``, also ``mel_l1_free``: coarse-mel L1 when units, pitch
    and energy are the model's own predictions, as at inference. With the linguistic
    predictor on, also ``unit_acc``: the share of 50 Hz frames whose most likely unit is
    the target unit (how predictable the units are from the video).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for b, start in enumerate(range(0, len(data), batch_size)):
        if max_batches and b >= max_batches:
            break
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))]).to(device)
        with autocast_for(device, bf16):
            out = model(batch)
            losses = {k: float(v) for k, v in out.losses.items()}
            if out.unit_logits is not None and batch.units is not None:
                umask = batch.unit_mask()
                losses["unit_acc"] = float((out.unit_logits.argmax(-1) == batch.units)[umask].float().mean())
            if free_running:
                losses["mel_l1_free"] = float(model(batch, teacher_forcing=False).losses["mel_l1"])
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v * len(batch)
        count += len(batch)
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in sums.items()}


class LossLogger:
    """losses.csv (always) and TensorBoard (when importable and enabled).

    ``columns``: the CSV header (the acoustic model's losses by default; the
    vocoder trainer passes its own).
    """

    def __init__(self, run_dir: Path, resume_step: Optional[int], tensorboard: bool,
                 columns: Sequence[str] = CSV_COLUMNS):
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

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def train(
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    train_data: Any,
    val_data: Any,
    run_dir: str | os.PathLike,
    resume: bool = True,
    stop_at_step: Optional[int] = None,
    bundle: Optional[Mapping[str, Any]] = None,
) -> TrainResult:
    """Train an LTBS model.

    Args:
        model_cfg: complete flat model config (:func:`lipspeech.models.model_config`).
        train_cfg: complete training config (:func:`lipspeech.training.train_config`).
        train_data: sequence (or iterable) of :class:`~lipspeech.models.batch.Utterance`.
        val_data: the same for validation, or None (no validation, no best.pt).
        run_dir: run directory (created).
        resume: continue from ``run_dir/ckpt/last.pt`` when it exists.
        stop_at_step: stop (saving last.pt) once this many steps are done, as a
            time-limited job would; the LR schedule still follows ``max_steps``.
        bundle: what using the model needs, stored in every checkpoint
            (:func:`lipspeech.training.bundle.make_bundle`; the train stage gives it).

    Returns:
        :class:`TrainResult`.
    """
    model_cfg = check_model_config(model_cfg)
    cfg = check_train_config(train_cfg)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "ckpt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    device = resolve_device(cfg["device"])
    ddp = dist_info()  # None: the single-process run
    main = ddp is None or ddp.is_main
    if ddp is not None and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ddp.local_rank)
    data = as_sequence(train_data)
    if len(data) == 0:
        raise ValueError("train_data is empty")
    val = as_sequence(val_data) if val_data is not None else None
    lengths = item_lengths(data) if cfg["bucket"] else None
    stop = cfg["max_steps"] if stop_at_step is None else min(stop_at_step, cfg["max_steps"])

    with deterministic_algorithms(cfg["deterministic"]), cpu_threads(cfg["threads"]):
        seed_everything(cfg["seed"])
        model = build_model(model_cfg).to(device)
        if ddp is not None:
            model = sync_batchnorm(model, device.type == "cuda")
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        step, epoch, position = 0, 0, 0
        best = {"value": None, "step": None}
        resumed = resume and last_path.exists()
        if resumed:
            ckpt = load_checkpoint(last_path, map_location=device)
            if check_model_config(ckpt["model_cfg"]) != model_cfg:
                changed = sorted(k for k in model_cfg if ckpt["model_cfg"].get(k) != model_cfg[k])
                raise ConfigError(
                    f"model config key {changed[0]}: differs from the checkpoint in {last_path} "
                    "(use a new run directory or resume=False)"
                )
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            step, epoch, position = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
            best = dict(ckpt["best"])
            ranks_rng = ckpt.get("rng_ranks")
            if ddp is not None and ranks_rng is not None and len(ranks_rng) == ddp.world_size:
                restore_rng(ranks_rng[ddp.rank])
            else:
                restore_rng(ckpt["rng"])
        else:
            if main:
                best_path.unlink(missing_ok=True)  # a stale best.pt from an earlier run would outrank this one
            if ddp is not None and ddp.rank > 0:
                torch.manual_seed(cfg["seed"] + 1_000_003 * ddp.rank)  # its own dropout masks, same initial model
        net: torch.nn.Module = model
        if ddp is not None:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        commit = git_commit()
        if main:
            write_text_atomic(
                run_dir / "config.json",
                json.dumps(
                    {"model": model_cfg, "train": cfg, "git_commit": commit, "lipspeech_version": __version__,
                     "resumed_from_step": step if resumed else None,
                     **({} if ddp is None else {"world_size": ddp.world_size})},
                    indent=2,
                )
                + "\n",
            )
        logger = LossLogger(run_dir, step if resumed else None, cfg["tensorboard"]) if main else _NoLogger()
        history: list[dict[str, Any]] = []

        def checkpoint_state(ranks_rng: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
            state = {
                "step": step, "epoch": epoch, "batch_in_epoch": position, "best": best,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": capture_rng() if ranks_rng is None else ranks_rng[0], "model_cfg": model_cfg, "train_cfg": cfg,
                "git_commit": commit, "lipspeech_version": __version__, "bundle": dict(bundle or {}),
            }
            if ranks_rng is not None:
                state["rng_ranks"] = ranks_rng
            return state

        def ranks_rng_if_ddp() -> Optional[list[dict[str, Any]]]:
            # a collective: every rank calls it at the same steps
            return None if ddp is None else gather_objects(capture_rng())

        augmented = _Augmented(data, cfg)
        saved_at = step if resumed else -1
        nonfinite = 0
        bar = tqdm(total=cfg["max_steps"], initial=step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not cfg["progress"] or not main)
        model.train()
        try:
            while step < stop:
                batches = epoch_batches(len(data), cfg["batch_size"], cfg["seed"], epoch, lengths,
                                        cfg["bucket_window"], cfg["drop_last"])
                if ddp is not None:
                    batches = shard_batches(batches, ddp)
                if not batches:
                    raise ValueError(f"no batches: {len(data)} utterances, batch_size {cfg['batch_size']}, drop_last"
                                     + ("" if ddp is None else f", {ddp.world_size} processes"))
                for batch in _train_batches(augmented, batches, epoch, position, cfg["num_workers"]):
                    batch = batch.to(device, non_blocking=True)
                    with autocast_for(device, cfg["bf16"]):
                        out = net(batch)
                    loss = out.losses["total"]
                    optimizer.zero_grad(set_to_none=True)
                    finite = bool(torch.isfinite(loss))
                    if ddp is not None:
                        finite = all_true(finite)  # all ranks skip together, or DDP would wait forever
                    if not finite:
                        nonfinite += 1
                        position += 1
                        utts = ", ".join(batch.utts)
                        warnings.warn(f"step {step + 1}: non-finite loss, batch skipped ({utts})", stacklevel=2)
                        if nonfinite >= cfg["max_nonfinite"] > 0:
                            raise FloatingPointError(f"{nonfinite} consecutive non-finite losses, stopping at step {step}")
                        continue
                    nonfinite = 0
                    loss.backward()
                    max_norm = cfg["grad_clip"] if cfg["grad_clip"] > 0 else float("inf")
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    position += 1
                    bar.update(1)
                    if step % cfg["log_every"] == 0 or step == stop:
                        losses = {k: float(v.detach()) for k, v in out.losses.items()}
                        if ddp is not None:
                            losses = mean_over_ranks(losses, LOSS_NAMES)  # the global batch's losses
                        row = {"step": step, "split": "train", "lr": lr, "grad_norm": grad_norm, **losses}
                        logger.log(row)
                        history.append(row)
                        bar.set_postfix(loss=f"{row['total']:.3f}", mel=f"{row['mel_l1']:.3f}")
                    validated = improved = False
                    if val is not None and step % cfg["val_every"] == 0:
                        if main:  # the other ranks wait for it at their next collective
                            metrics = evaluate(model, val, cfg["val_batch_size"], device, cfg["bf16"],
                                               cfg["val_free_running"], cfg["val_max_batches"])
                            row = {"step": step, "split": "val", **metrics}
                            logger.log(row)
                            history.append(row)
                            value = metrics[cfg["best_metric"]]
                            if best["value"] is None or value < best["value"]:
                                best = {"value": value, "step": step, "val": metrics}
                                improved = True
                        validated = True
                    save_last = validated or (cfg["ckpt_every"] and step % cfg["ckpt_every"] == 0)
                    ranks_rng = ranks_rng_if_ddp() if save_last else None
                    if improved:
                        save_checkpoint(best_path, checkpoint_state(ranks_rng))
                    if save_last:
                        if main:
                            save_checkpoint(last_path, checkpoint_state(ranks_rng))
                        saved_at = step
                    if step >= stop:
                        break
                else:
                    epoch, position = epoch + 1, 0
        except KeyboardInterrupt:
            # keep the work done so far; resuming replays from here exactly (other ranks' RNGs are lost)
            if step != saved_at and main:
                save_checkpoint(last_path, checkpoint_state())
            raise
        finally:
            bar.close()
            logger.close()
        if step != saved_at:
            ranks_rng = ranks_rng_if_ddp()
            if main:
                save_checkpoint(last_path, checkpoint_state(ranks_rng))
        barrier()  # nobody reads last.pt / best.pt before rank 0 has written them
    return TrainResult(
        step=step,
        run_dir=run_dir,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.exists() else None,
        best_value=best["value"],
        best_step=best["step"],
        history=history,
    )
