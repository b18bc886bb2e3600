"""Real-time factor of ``lipspeech speak``, split into decode / ROI / model / vocoder.

    python benchmarks/speak_rtf.py [--repeat 3] [--threads 2] [--video clip.mpg]

Input: one SynthGRID clip (360x288 MPEG-1, 25 fps, generated here with seed 11,
about 2-3 s) unless ``--video`` is given. Each row runs
:func:`lipspeech.speak.speak` end to end (the same code as the command): ffmpeg
decode, the ROI stage's per-utterance landmarks/alignment (dlib), the LTBS model
(post-net sampled), the vocoder. Models are *untrained* (random weights, built
from the presets): the work per second of audio does not depend on the weights,
so the timings are those of trained models. RTF = seconds of processing per
second of audio (lower is faster); loading the models is excluded (reported apart).
Each row: one warm-up call, then the median of ``--repeat`` calls per part.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from lipspeech.features.audio import AudioConfig
from lipspeech.models.ltbs import build_model
from lipspeech.models.presets import model_config
from lipspeech.speak import speak
from lipspeech.training.checkpoint import save_checkpoint
from lipspeech.vocoder import Generator, hifigan_config

PARTS = ("decode", "roi", "model", "vocoder")


def make_clip(out: Path) -> Path:
    from lipspeech.data.synth.corpus import generate_corpus

    generate_corpus({"seed": 11, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    out, threads=1, progress=False)
    return next((out / "s1").glob("*.mpg"))


def model_ckpt(preset: str, path: Path) -> Path:
    torch.manual_seed(0)
    cfg = model_config(preset)
    save_checkpoint(path, {"step": 0, "model": build_model(cfg).state_dict(), "model_cfg": cfg})
    return path


def vocoder_ckpt(preset: str, path: Path) -> Path:
    torch.manual_seed(0)
    cfg = hifigan_config(preset)
    save_checkpoint(path, {"step": 0, "generator": Generator(cfg).state_dict(), "generator_cfg": cfg,
                           "audio_cfg": AudioConfig().as_dict(), "preset": preset})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--video", help="a talking-face clip (default: a generated SynthGRID clip)")
    ap.add_argument("--models", nargs="+", default=["tiny", "paper"])
    ap.add_argument("--vocoders", nargs="+", default=["griffin-lim", "tiny", "v1"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="speak_rtf_"))
    video = Path(args.video) if args.video else make_clip(tmp / "raw")
    print(f"clip {video} | torch {torch.__version__}, {args.threads} threads, CPU")
    print("| model | vocoder | decode | ROI | model | vocoder | **total RTF** | loading (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in args.models:
        ckpt = model_ckpt(m, tmp / f"model_{m}.pt")
        for v in args.vocoders:
            voc = "griffin-lim" if v == "griffin-lim" else str(vocoder_ckpt(v, tmp / f"vocoder_{v}.pt"))
            runs = [speak(video, None, ckpt, vocoder=voc, device="cpu") for _ in range(args.repeat + 1)][1:]
            dur = runs[0].duration
            med = {p: statistics.median(r.seconds[p] for r in runs) / dur for p in PARTS}
            load = statistics.median(r.seconds["load"] for r in runs)
            name = "griffin_lim (64 it.)" if v == "griffin-lim" else f"hifigan {v}"
            print(f"| {m} | {name} | " + " | ".join(f"{med[p]:.3f}" for p in PARTS)
                  + f" | **{sum(med.values()):.3f}** | {load:.1f} |", flush=True)
    print(f"audio duration {dur:.2f} s")


if __name__ == "__main__":
    main()
