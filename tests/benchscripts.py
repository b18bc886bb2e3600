"""The scripts of ``benchmarks/`` as modules, and the tiny model their tests run on
(``from benchscripts import script, tiny_model``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from lipspeech.models import build_model
from lipspeech.models.presets import model_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` loaded as a module (the folder on ``sys.path``, as the scripts import each other)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(streaming: bool) -> torch.nn.Module:
    """The tiny preset with one encoder and one decoder layer, seeded, in eval mode."""
    torch.manual_seed(0)
    return build_model(model_config("tiny", {"enc_layers": 1, "dec_layers": 1, "streaming": streaming})).eval()
