"""Real-time factor of ``lipspeech speak``, split into decode / ROI / model / vocoder.

    python benchmarks/speak_rtf.py [--repeat 3] [--threads 2] [--video clip.mpg]

Input: one SynthGRID clip (360x288 MPEG-1, 25 fps, generated here with seed 11,
about 2-3 s) unless ``--video`` is given. Each row runs
:func:`lipspeech.commands.speak.speak` end to end (the same code as the command): ffmpeg
decode, the ROI stage's per-utterance landmarks/alignment (dlib), the LTBS model
(post-net sampled), the vocoder. Models are *untrained* (random weights, built
from the presets): the work per second of audio does not depend on the weights,
so the timings are those of trained models. RTF = seconds of processing per
second of audio (lower is faster); loading the models is excluded (reported apart).
Each row: one warm-up call, then the median of ``--repeat`` calls per part.
Two tables: wall-clock RTF, and CPU RTF (CPU seconds of this process and its
ffmpeg children, all threads): on a machine shared with other jobs the wall clock
also counts the waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from lipspeech.commands.speak import speak
from lipspeech.features.audio import AudioConfig
from lipspeech.models.ltbs import build_model
from lipspeech.models.presets import model_config
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
    save_checkpoint(path, {"step": 0, "generator": Generator(cfg, 80).state_dict(), "generator_cfg": cfg,
                           "audio_cfg": AudioConfig.default().as_dict(), "preset": preset})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--video", help="a talking-face clip (default: a generated SynthGRID clip)")
    ap.add_argument("--models", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--vocoders", nargs="+", default=["griffin-lim", "tiny", "v1"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="speak_rtf_"))
    video = Path(args.video) if args.video else make_clip(tmp / "raw")
    print(f"clip {video} | torch {torch.__version__}, {args.threads} threads, CPU | load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    rows = []
    for m in args.models:
        ckpt = model_ckpt(m, tmp / f"model_{m}.pt")
        for v in args.vocoders:
            voc = "griffin-lim" if v == "griffin-lim" else str(vocoder_ckpt(v, tmp / f"vocoder_{v}.pt"))
            runs = [speak(video, None, ckpt, vocoder=voc, device="cpu") for _ in range(args.repeat + 1)][1:]
            dur = runs[0].duration
            name = "griffin_lim (64 it.)" if v == "griffin-lim" else f"hifigan {v}"
            wall = {p: statistics.median(r.seconds[p] for r in runs) / dur for p in PARTS}
            cpu = {p: statistics.median(r.cpu_seconds[p] for r in runs) / dur for p in PARTS}
            load = statistics.median(r.seconds["load"] for r in runs)
            rows.append((m, name, wall, cpu, load))
            print(f"  {m} + {name}: wall RTF {sum(wall.values()):.3f}, CPU RTF {sum(cpu.values()):.3f}", flush=True)
    for title, key in (("wall-clock RTF", 2), ("CPU RTF", 3)):
        print(f"\n{title} (audio {dur:.2f} s, load average now "
              + " ".join(f"{x:.1f}" for x in os.getloadavg()) + ")")
        print("| model | vocoder | decode | ROI | model | vocoder | **total** | loading (s) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows:
            t = row[key]
            print(f"| {row[0]} | {row[1]} | " + " | ".join(f"{t[p]:.3f}" for p in PARTS)
                  + f" | **{sum(t.values()):.3f}** | {row[4]:.1f} |")


if __name__ == "__main__":
    main()
