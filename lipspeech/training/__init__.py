"""Training core: config, data order, checkpoints, the training loop and synthesis."""

from lipspeech.training.bundle import ModelBundle, load_model
from lipspeech.training.checkpoint import load_checkpoint, save_checkpoint
from lipspeech.training.config import TRAIN_DEFAULTS, check_train_config, train_config
from lipspeech.training.data import InMemoryDataset, epoch_batches, synthetic_utterances
from lipspeech.training.synthesis import Synthesis, synthesize
from lipspeech.training.trainer import TrainResult, evaluate, train

__all__ = [
    "TRAIN_DEFAULTS",
    "train_config",
    "check_train_config",
    "InMemoryDataset",
    "epoch_batches",
    "synthetic_utterances",
    "load_checkpoint",
    "save_checkpoint",
    "TrainResult",
    "evaluate",
    "train",
    "Synthesis",
    "load_model",
    "ModelBundle",
    "synthesize",
]
