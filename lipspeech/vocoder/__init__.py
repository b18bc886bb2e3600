"""Vocoders: log-mel (100 Hz, 80 bins) -> 16 kHz waveform.

:func:`load_vocoder` picks HiFi-GAN (trained by the train-vocoder stage) or the
training-free Griffin-Lim fallback from the config's ``vocoder`` section. The names
below are imported when first used (PEP 562), so that importing the package for its
command module (:mod:`lipspeech.vocoder.cli`) does not load torch.
"""

import importlib
from typing import Any

_WHERE = {
    "Vocoder": "api", "GriffinLimVocoder": "api", "HifiGanVocoder": "api", "load_vocoder": "api", "load_hifigan": "api",
    "GriffinLim": "griffinlim", "spectral_convergence": "griffinlim",
    "PRESETS": "hifigan", "Generator": "hifigan", "Discriminators": "hifigan", "hifigan_config": "hifigan",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lipspeech.vocoder' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lipspeech.vocoder.{_WHERE[name]}"), name)
