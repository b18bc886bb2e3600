"""Training config: the ``train`` section of config.yaml (defaults from the schema) and its checks."""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

from lipspeech.core.config import ConfigError, default_section
from lipspeech.models.presets import check_flat_config

# The defaults are the schema's (config section ``train``, where every key is described), plus two
# that belong to the process rather than the experiment: torch's intra-op threads (0 = torch's own
# default; the stage gives the rule's threads) and the progress bar.
RUNTIME_DEFAULTS: dict[str, Any] = {"threads": 0, "progress": True}
TRAIN_DEFAULTS: dict[str, Any] = {**default_section("train"), **RUNTIME_DEFAULTS}

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
    for key in ("threads", "warmup_steps", "ckpt_every", "val_max_batches", "num_workers", "max_nonfinite", "grad_clip",
                "lr"):
        if cfg[key] < 0:
            raise ConfigError(f"train config key {key}: must be >= 0, got {cfg[key]}")
    if len(cfg["betas"]) != 2:
        raise ConfigError(f"train config key betas: needs 2 values, got {cfg['betas']}")
    if cfg["best_metric"] not in LOSS_NAMES:
        raise ConfigError(f"train config key best_metric: {cfg['best_metric']!r} is not one of {', '.join(LOSS_NAMES)}")
    if cfg["best_metric"] == "mel_l1_free" and not cfg["val_free_running"]:
        raise ConfigError("train config key best_metric: mel_l1_free needs val_free_running: true")
    return cfg
