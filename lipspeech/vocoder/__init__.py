"""Vocoders: log-mel (100 Hz, 80 bins) -> 16 kHz waveform.

:func:`load_vocoder` picks HiFi-GAN (trained by the train-vocoder stage) or the
training-free Griffin-Lim fallback from the config's ``vocoder`` section.
"""

from lipspeech.vocoder.api import GriffinLimVocoder, HifiGanVocoder, Vocoder, load_hifigan, load_vocoder
from lipspeech.vocoder.griffinlim import GriffinLim, spectral_convergence
from lipspeech.vocoder.hifigan import PRESETS, Discriminators, Generator, hifigan_config

__all__ = [
    "Vocoder",
    "GriffinLimVocoder",
    "HifiGanVocoder",
    "load_vocoder",
    "load_hifigan",
    "GriffinLim",
    "spectral_convergence",
    "PRESETS",
    "Generator",
    "Discriminators",
    "hifigan_config",
]
