"""Training config: flat defaults and validation (the ``train`` section of config.yaml, later)."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

from lipspeech.config import ConfigError
from lipspeech.models.presets import check_flat_config

TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 1234,  # seeds python, numpy and torch; also the data order and augmentation
    "device": "auto",  # "auto" (cuda when available), "cpu", "cuda", "cuda:N"
    "threads": 0,  # torch intra-op CPU threads during training; 0 = torch's default (give the rule's threads)
    "batch_size": 16,  # utterances per optimiser step
    "max_steps": 100_000,  # optimiser steps; the LR schedule spans them
    # AdamW
    "lr": 5e-4,  # peak learning rate
    "betas": [0.9, 0.98],
    "eps": 1e-9,
    "weight_decay": 0.01,  # not applied to biases and norm gains
    # LR schedule: linear warmup from 0, then decay
    "warmup_steps": 4000,
    "decay": "cosine",  # "cosine" (to min_lr_ratio at max_steps), "exp", "constant"
    "min_lr_ratio": 0.01,  # floor of the decay, as a fraction of lr
    "exp_decay_rate": 0.5,  # "exp": lr factor multiplies by this ...
    "exp_decay_steps": 20_000,  # ... every this many steps after warmup
    "grad_clip": 1.0,  # max global gradient norm; 0 disables clipping
    "bf16": True,  # bf16 autocast; only ever used on CUDA
    "deterministic": True,  # torch.use_deterministic_algorithms (warn-only where impossible)
    # data
    "bucket": False,  # group utterances of similar length into batches (less padding)
    "bucket_window": 50,  # bucketing sorts windows of bucket_window * batch_size utterances
    "drop_last": False,  # drop an epoch's last, smaller batch
    "random_crop": True,  # random 88x88 crop of the 96x96 ROI in training (centre crop otherwise)
    "hflip": True,  # random horizontal flip in training
    "num_workers": 0,  # DataLoader worker processes for loading/collation; 0 = in the main process
    # validation, checkpoints, logs
    "val_every": 1000,  # validate (and save last.pt, maybe best.pt) every this many steps
    "val_batch_size": 16,
    "val_max_batches": 0,  # 0 = the whole validation set
    "val_free_running": True,  # also report mel_l1_free: coarse mel L1 with predicted units/pitch/energy
    "best_metric": "mel_l1_free",  # validation loss that decides best.pt (lower is better)
    "ckpt_every": 1000,  # also save last.pt every this many steps; 0 = only at validation and at the end
    "log_every": 50,  # train losses to losses.csv / TensorBoard every this many steps
    "max_nonfinite": 10,  # abort after this many consecutive steps with a non-finite loss (skipped)
    "tensorboard": True,  # TensorBoard event files under run_dir/tb
    "progress": True,  # tqdm progress bar
}

_CHOICES = {"decay": ("cosine", "exp", "constant")}
_POSITIVE = ("batch_size", "max_steps", "val_every", "val_batch_size", "log_every", "bucket_window", "exp_decay_steps")
LOSS_NAMES = ("total", "mel_l1", "ling_ce", "pitch", "energy", "flow_nll", "mel_l1_free")


def train_config(overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Validated training config: :data:`TRAIN_DEFAULTS` updated with ``overrides``.

    Raises:
        ConfigError: one line naming the first unknown or bad key.
    """
    cfg = copy.deepcopy(TRAIN_DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise ConfigError(f"train config key {key}: unknown key (known: {', '.join(sorted(cfg))})")
        cfg[key] = list(value) if isinstance(value, tuple) else value
    return check_train_config(cfg)


def check_train_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete training config; returns a copy (raises :class:`ConfigError`)."""
    cfg = check_flat_config("train", cfg, TRAIN_DEFAULTS, _CHOICES)
    for key in _POSITIVE:
        if cfg[key] <= 0:
            raise ConfigError(f"train config key {key}: must be > 0, got {cfg[key]}")
    for key in ("threads", "warmup_steps", "ckpt_every", "val_max_batches", "num_workers", "max_nonfinite", "grad_clip", "lr"):
        if cfg[key] < 0:
            raise ConfigError(f"train config key {key}: must be >= 0, got {cfg[key]}")
    if len(cfg["betas"]) != 2:
        raise ConfigError(f"train config key betas: needs 2 values, got {cfg['betas']}")
    if cfg["best_metric"] not in LOSS_NAMES:
        raise ConfigError(f"train config key best_metric: {cfg['best_metric']!r} is not one of {', '.join(LOSS_NAMES)}")
    if cfg["best_metric"] == "mel_l1_free" and not cfg["val_free_running"]:
        raise ConfigError("train config key best_metric: mel_l1_free needs val_free_running: true")
    return cfg
