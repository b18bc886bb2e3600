"""Tiny trained models for the tests of the live paths (tests/test_live.py, tests/test_serve.py)."""

from __future__ import annotations

import numpy as np


def tiny_live_models(tmp):
    """A SynthGRID clip, a tiny streaming LTBS checkpoint (2 steps), an offline one, a tiny HiFi-GAN (1 step)."""
    import torch

    from lipspeech.data.synth.corpus import generate_corpus
    from lipspeech.features.audio import AudioConfig, MelSpectrogram
    from lipspeech.models.presets import model_config
    from lipspeech.training import synthetic_utterances, train, train_config
    from lipspeech.vocoder import hifigan_config
    from lipspeech.vocoder.train import VocoderItem, train_vocoder, vocoder_train_config

    generate_corpus({"seed": 3, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    tmp / "raw", threads=1, progress=False)
    video = next((tmp / "raw" / "s1").glob("*.mpg"))
    tcfg = train_config({"max_steps": 2, "batch_size": 2, "warmup_steps": 1, "device": "cpu", "tensorboard": False,
                         "progress": False, "val_every": 2})
    models = {}
    for name, streaming in (("stream", True), ("offline", False)):
        cfg = model_config("tiny", {"enc_layers": 1, "dec_layers": 1, "streaming": streaming})
        models[name] = train(cfg, tcfg, synthetic_utterances(2, 8), None, tmp / name).last_checkpoint
    ac = AudioConfig()
    t = np.arange(160 * 40) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    items = [VocoderItem("x", audio, MelSpectrogram(ac)(torch.from_numpy(audio)).numpy())]
    vcfg = vocoder_train_config({"device": "cpu", "max_steps": 1, "val_every": 1, "batch_size": 1, "segment_frames": 8,
                                 "tensorboard": False})
    vocoder = train_vocoder(hifigan_config("tiny"), ac, vcfg, items, None, tmp / "vocoder", preset="tiny",
                            progress=False).last_checkpoint
    return {"tmp": tmp, "video": video, "vocoder": str(vocoder), **models}
