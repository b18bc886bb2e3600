"""lipspeech speak: a SynthGRID clip -> WAV of the right length, equal to the pipeline's synthesize + vocode of
the same clip; checkpoints from before bundles; one-line errors for bad input."""

import json
import subprocess

import numpy as np
import pytest
import torch
from needs import needs_synthgrid
from tinymodels import tiny_clip, tiny_hifigan, tiny_ltbs

from lipspeech.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
    needs_synthgrid,  # tests/needs.py
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A one-utterance SynthGRID clip, a tiny LTBS checkpoint (2 steps) and a tiny HiFi-GAN (1 step)."""
    tmp = tmp_path_factory.mktemp("speak")
    video = tiny_clip(tmp)
    return {"tmp": tmp, "video": video, "model": tiny_ltbs(tmp / "model", streaming=False),
            "vocoder": tiny_hifigan(tmp / "vocoder")}


def _frames(video) -> int:
    from lipspeech.core.media import read_frames

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


def _old_format(src, dst):
    """The same weights as a checkpoint from before bundles (format 1): no bundle entry, no
    frontend_downsample key in the model config."""
    state = torch.load(src, weights_only=True)
    state.pop("bundle", None)
    state["format"] = 1
    state["model_cfg"] = {k: v for k, v in state["model_cfg"].items() if k != "frontend_downsample"}
    torch.save(state, dst)


def test_speak_equals_the_pipeline_and_reads_old_checkpoints(setup, tmp_path, capsys):
    """speak on a clip = the pipeline's roi -> synthesize -> vocode of the same clip (same seed,
    same vocoder), sample for sample; a checkpoint from before bundles loads in both and gives
    the same audio (the default mel and ROI settings are what the pipeline used here too)."""
    import soundfile as sf

    from lipspeech.core.config import default_section
    from lipspeech.core.store import Store
    from lipspeech.training import load_model
    from lipspeech.training.bundle import make_bundle

    # the fixture's model with a bundle, as the train stage writes it
    state = torch.load(setup["model"], weights_only=True)
    state["bundle"] = make_bundle(default_section("mel"), default_section("roi"), None, "h", "speak")
    bundled, old = tmp_path / "bundled.pt", tmp_path / "old.pt"
    torch.save(state, bundled)
    _old_format(bundled, old)
    assert load_model(bundled).assumed == [] and load_model(old).assumed == ["mel", "roi"]

    res = tmp_path / "results"
    params = json.dumps({"corpus": {"name": "speak", "kind": "synthgrid", "split_ratios": [0.0, 0.0, 1.0]},
                         "manifest": {"shards": 1}, "vocoder": {"kind": "griffin_lim", "griffin_lim": {"n_iter": 8}}})
    stage = ["--params", params, "--threads", "1", "--no-progress"]
    assert main(["manifest", *stage[:2], "--root", str(setup["tmp"] / "raw"), "--out", str(res / "manifest.parquet"),
                 "--rejected", str(res / "manifest.rejected.parquet")]) == 0
    assert main(["decode", *stage, "--manifest", str(res / "manifest.parquet"), "--shard", "0",
                 "--out", str(res / "audio" / "000.parquet"),
                 "--rejected", str(res / "audio" / "000.rejected.parquet")]) == 0
    assert main(["roi", *stage, "--manifest", str(res / "manifest.parquet"), "--audio", str(res / "audio" / "000.parquet"),
                 "--out", str(res / "roi" / "000.parquet"), "--qc", str(res / "roi" / "000.qc.parquet"),
                 "--rejected", str(res / "roi" / "000.rejected.parquet")]) == 0
    config = tmp_path / "config.yaml"
    config.write_text("vocoder: {kind: griffin_lim, griffin_lim: {n_iter: 8}}\n")
    exp = json.dumps({"name": "x", "preset": "tiny", "overrides": {}})
    for ckpt in (bundled, old):
        mels = res / "eval" / ckpt.stem / "mels.parquet"
        assert main(["synthesize", *stage, "--exp", "x", "--experiment", exp, "--manifest", str(res / "manifest.parquet"),
                     "--roi", str(res / "roi" / "000.parquet"), "--ckpt", str(ckpt),
                     "--out", str(mels)]) == 0
        audio_store = res / "eval" / ckpt.stem / "audio.parquet"
        assert main(["vocode", *stage, "--system", "x", "--mels", str(mels),
                     "--out", str(audio_store), "--rejected", str(tmp_path / "r.parquet"), "--device", "cpu"]) == 0
        pipeline = Store(audio_store)
        wav = tmp_path / f"{ckpt.stem}.wav"
        assert main(["speak", str(setup["video"]), "-o", str(wav), "--model", str(ckpt), "--config", str(config),
                     "--device", "cpu", "--threads", "1"]) == 0
        spoken, _ = sf.read(wav, dtype="float32")
        reference = np.asarray(pipeline.array("audio", 0))
        assert pipeline.utts == [f"s1_{setup['video'].stem}"] and len(spoken) == len(reference)
        assert np.abs(reference).max() > 0.01
        # the WAV is 16-bit: equal up to its quantisation
        np.testing.assert_allclose(spoken, np.clip(reference, -1, 1), atol=1.0 / 32768 + 1e-7)
    out = capsys.readouterr().out
    assert out.count("predates bundles; default mel and roi settings were used") == 1
