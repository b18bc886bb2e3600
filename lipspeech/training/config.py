"""Training config: the ``train`` section of config.yaml (the schema's defaults and checks), plus
two keys that belong to the process rather than the experiment: torch's intra-op threads (0 =
torch's own default; the stage gives the rule's threads) and the progress bar.

:func:`train_config` gives the mapping (what checkpoints store and run keys hash);
:func:`train_settings` reads its ``train`` keys as a :class:`~lipspeech.core.settings.TrainConfig`,
the process's two keys staying beside it."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from lipspeech.core.config import ConfigError, apply_overrides, default_section, section_config
from lipspeech.core.settings import TrainConfig

#: the process's keys (not in the schema: the rule's threads, --no-progress) and their defaults
RUNTIME_DEFAULTS: dict[str, Any] = {"threads": 0, "progress": True}
TRAIN_DEFAULTS: dict[str, Any] = {**default_section("train"), **RUNTIME_DEFAULTS}

#: the model's losses, by name (the schema's train.best_metric names one of them; a test checks they agree)
LOSS_NAMES = ("total", "mel_l1", "ling_ce", "pitch", "energy", "flow_nll", "mel_l1_free")


def train_config(overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Validated training config: :data:`TRAIN_DEFAULTS` updated with ``overrides``.

    Raises:
        ConfigError: one line naming the first unknown or bad key.
    """
    return check_train_config(apply_overrides(TRAIN_DEFAULTS, overrides, "train"))


def check_train_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete training config; returns a copy (raises :class:`ConfigError`)."""
    section = {k: v for k, v in cfg.items() if k not in RUNTIME_DEFAULTS}
    runtime = {k: cfg[k] for k in RUNTIME_DEFAULTS if k in cfg}
    missing = next((k for k in RUNTIME_DEFAULTS if k not in runtime), None)
    if missing is not None:
        raise ConfigError(f"train config key {missing}: missing (build configs with train_config())")
    out = section_config("train", section, complete=True)
    threads = runtime["threads"]
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ConfigError(f"train config key threads: must be an int >= 0, got {threads!r}")
    if not isinstance(runtime["progress"], bool):
        raise ConfigError(f"train config key progress: expected bool, got {runtime['progress']!r}")
    train = TrainConfig.from_section(out)
    if train.best_metric == "mel_l1_free" and not train.val_free_running:
        raise ConfigError("train config key best_metric: mel_l1_free needs val_free_running: true")
    return {**out, **runtime}


def train_settings(cfg: Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """The ``train`` keys of a checked training config (:func:`train_config`; its process keys left
    out) as a :class:`TrainConfig`; a :class:`TrainConfig` as it is."""
    if isinstance(cfg, TrainConfig):
        return cfg
    return TrainConfig.from_section({k: v for k, v in cfg.items() if k not in RUNTIME_DEFAULTS})
