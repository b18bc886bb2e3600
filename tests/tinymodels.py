"""Tiny trained models for the tests of speak and the live paths (tests/test_speak.py, tests/test_live.py,
tests/test_serve.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def tiny_clip(tmp: Path) -> Path:
    """A one-utterance SynthGRID clip (speaker s1, the astronaut's face) under ``tmp``/raw."""
    from lipspeech.data.synth.corpus import generate_corpus

    generate_corpus({"seed": 3, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    tmp / "raw", threads=1, progress=False)
    return next((tmp / "raw" / "s1").glob("*.mpg"))


def tiny_ltbs(run_dir: Path, streaming: bool, layers: Optional[int] = 1) -> Path:
    """A tiny LTBS model (``layers`` encoder and decoder layers; None: the preset's) trained 2 steps on
    synthetic utterances: its last checkpoint."""
    from lipspeech.models.presets import model_config
    from lipspeech.training import synthetic_utterances, train, train_config

    tcfg = train_config({"max_steps": 2, "batch_size": 2, "warmup_steps": 1, "device": "cpu", "tensorboard": False,
                         "progress": False, "val_every": 2})
    depth = {} if layers is None else {"enc_layers": layers, "dec_layers": layers}
    cfg = model_config("tiny", {**depth, "streaming": streaming})
    items = synthetic_utterances(2, 8, n_mels=cfg["n_mels"], n_units=cfg["n_units"])
    return train(cfg, tcfg, items, None, run_dir).last_checkpoint


def tiny_hifigan(run_dir: Path) -> Path:
    """A tiny HiFi-GAN trained 1 step on a 150 Hz tone: its last checkpoint."""
    import torch

    from lipspeech.features.audio import AudioConfig, MelSpectrogram
    from lipspeech.vocoder import hifigan_config
    from lipspeech.vocoder.train import VocoderItem, train_vocoder, vocoder_train_config

    ac = AudioConfig.default()
    t = np.arange(160 * 40) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    items = [VocoderItem("x", audio, MelSpectrogram(ac)(torch.from_numpy(audio)).numpy())]
    vcfg = vocoder_train_config({"device": "cpu", "max_steps": 1, "val_every": 1, "batch_size": 1, "segment_frames": 8,
                                 "tensorboard": False})
    return train_vocoder(hifigan_config("tiny"), ac, vcfg, items, None, run_dir, preset="tiny",
                         progress=False).last_checkpoint


def tiny_live_models(tmp: Path) -> dict:
    """A SynthGRID clip, a tiny streaming LTBS checkpoint (2 steps), an offline one, a tiny HiFi-GAN (1 step)."""
    video = tiny_clip(tmp)
    models = {name: tiny_ltbs(tmp / name, streaming) for name, streaming in (("stream", True), ("offline", False))}
    return {"tmp": tmp, "video": video, "vocoder": str(tiny_hifigan(tmp / "vocoder")), **models}
