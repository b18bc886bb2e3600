"""Training core: config, data order, checkpoints, the training loop and synthesis.

The names below are imported when first used (PEP 562), so that importing the package for
its command module (:mod:`lipspeech.training.cli`) does not load torch.
"""

import importlib
from typing import Any

_WHERE = {
    "ModelBundle": "bundle", "load_model": "bundle",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "TRAIN_DEFAULTS": "config", "check_train_config": "config", "train_config": "config",
    "InMemoryDataset": "data", "epoch_batches": "data", "synthetic_utterances": "data",
    "Synthesis": "synthesis", "synthesize": "synthesis",
    "TrainResult": "loop",
    "evaluate": "trainer", "train": "trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lipspeech.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lipspeech.training.{_WHERE[name]}"), name)
