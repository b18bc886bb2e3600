"""lipspeech speak: a SynthGRID clip -> WAV of the right length; one-line errors for bad input."""

import shutil
import subprocess

import numpy as np
import pytest
import torch

from lipspeech.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("espeak-ng") is None,
                       reason="needs ffmpeg and espeak-ng"),
]



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A one-utterance SynthGRID clip, a tiny LTBS checkpoint (2 steps) and a tiny HiFi-GAN (1 step)."""
    from lipspeech.data.synth.corpus import generate_corpus
    from lipspeech.features.audio import AudioConfig, MelSpectrogram
    from lipspeech.models.presets import model_config
    from lipspeech.training import synthetic_utterances, train, train_config
    from lipspeech.vocoder import hifigan_config
    from lipspeech.vocoder.train import VocoderItem, train_vocoder, vocoder_train_config

    tmp = tmp_path_factory.mktemp("speak")
    generate_corpus({"seed": 3, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    tmp / "raw", threads=1, progress=False)
    video = next((tmp / "raw" / "s1").glob("*.mpg"))
    model_cfg = model_config("tiny", {"enc_layers": 1, "dec_layers": 1})
    tcfg = train_config({"max_steps": 2, "batch_size": 2, "warmup_steps": 1, "device": "cpu", "tensorboard": False,
                         "progress": False, "val_every": 2})
    model = train(model_cfg, tcfg, synthetic_utterances(2, 8), None, tmp / "model").last_checkpoint

    ac = AudioConfig()
    t = np.arange(160 * 40) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    items = [VocoderItem("x", audio, MelSpectrogram(ac)(torch.from_numpy(audio)).numpy())]
    vcfg = vocoder_train_config({"device": "cpu", "max_steps": 1, "val_every": 1, "batch_size": 1, "segment_frames": 8,
                                 "tensorboard": False})
    vocoder = train_vocoder(hifigan_config("tiny"), ac, vcfg, items, None, tmp / "vocoder", preset="tiny",
                            progress=False).last_checkpoint
    return {"tmp": tmp, "video": video, "model": model, "vocoder": vocoder}


def _frames(video) -> int:
    from lipspeech.data.media import read_frames

    return len(read_frames(video, gray=True, size=(8, 8)))


@pytest.mark.parametrize("vocoder", [None, "hifigan"])
def test_speak_writes_16k_wav_of_640_samples_per_frame(setup, vocoder, capsys):
    import soundfile as sf

    out = setup["tmp"] / f"out_{vocoder}.wav"
    args = ["speak", str(setup["video"]), "-o", str(out), "--model", str(setup["model"]), "--device", "cpu",
            "--threads", "1"]
    if vocoder:
        args += ["--vocoder", str(setup["vocoder"])]
    else:  # the config's vocoder (Griffin-Lim), with fewer iterations to keep the test fast
        config = setup["tmp"] / "config.yaml"
        config.write_text("vocoder: {kind: griffin_lim, griffin_lim: {n_iter: 8}}\n")
        args += ["--config", str(config)]
    assert main(args) == 0
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and audio.ndim == 1
    assert len(audio) == _frames(setup["video"]) * 640
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    text = capsys.readouterr().out
    assert "real-time factor" in text and "roi" in text and "vocoder" in text
    assert ("hifigan tiny" if vocoder else "griffin_lim") in text


def test_speak_refuses_audio_only_and_faceless_files(setup, capsys):
    tmp = setup["tmp"]
    wav, gray = tmp / "tone.wav", tmp / "gray.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=0.5", str(wav)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25:d=0.6",
                    "-pix_fmt", "yuv420p", str(gray)], check=True)
    for path, needle in ((wav, "no video stream"), (gray, "no usable face"), (tmp / "missing.mp4", "not found")):
        code = main(["speak", str(path), "-o", str(tmp / "x.wav"), "--model", str(setup["model"]), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code != 0 and needle in err, (path, err)
        assert len(err.strip().splitlines()) == 1
    assert not (tmp / "x.wav").exists()
