"""The LTBS video-to-mel model: batches, modules, presets and :func:`build_model`."""

from lipspeech.models.batch import Batch, Utterance, collate, lengths_to_mask
from lipspeech.models.ltbs import LTBSModel, ModelOutput, build_model, count_parameters
from lipspeech.models.presets import PRESETS, check_model_config, model_config

__all__ = [
    "Batch",
    "Utterance",
    "collate",
    "lengths_to_mask",
    "LTBSModel",
    "ModelOutput",
    "build_model",
    "count_parameters",
    "PRESETS",
    "check_model_config",
    "model_config",
]
