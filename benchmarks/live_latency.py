"""End-to-end latency of `lipspeech live`: per model preset, chunking and vocoder.

    python benchmarks/live_latency.py [--seconds 20] [--threads 1] [--rows all|quick|low]

A SynthGRID clip, looped to ``--seconds``, is played by ffmpeg at its own pace (``--realtime``,
as a camera delivers frames) into :func:`lipspeech.commands.live.run_live`, which tracks the face, runs
a streaming-mode model chunk by chunk and a streaming vocoder and writes a WAV as it goes. For
every frame that reached the model: latency = the time from the frame's arrival to the moment
its last audio sample was written (p50, p95); the algorithmic part is the model's chunk +
look-ahead (worst case, the first frame of a chunk; with decoder look-ahead the chunks the decoder waits
for) and the vocoder's look-ahead; RTF = compute /
video time (the real-time margin; the clock is the baseline). Models and HiFi-GAN are freshly
initialised (one training step, to have checkpoints): compute does not depend on trained weights.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lipspeech.commands.live import LiveOptions, run_live
from lipspeech.data.synth.corpus import generate_corpus
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.models.presets import model_config
from lipspeech.training import synthetic_utterances, train, train_config
from lipspeech.vocoder import hifigan_config
from lipspeech.vocoder.train import VocoderItem, train_vocoder, vocoder_train_config

# (preset, chunk frames, look-ahead frames, decoder look-ahead frames, vocoder)
ROWS = [
    ("tiny", 5, 2, 0, "hifigan"),
    ("small", 5, 2, 0, "hifigan"),
    ("small", 5, 2, 0, "griffin-lim"),
    ("small", 2, 2, 0, "hifigan"),
    ("small", 2, 1, 0, "hifigan"),
    ("small", 1, 2, 0, "hifigan"),
    ("small", 1, 1, 1, "hifigan"),
    ("small", 1, 0, 2, "hifigan"),
    ("small", 1, 0, 0, "hifigan"),
    ("paper", 5, 2, 0, "hifigan"),
]
QUICK = ROWS[1:2] + ROWS[3:4]
# the ways to 190 ms: chunks of 2 + 1 frame of look-ahead, chunks of 1 + 2, and chunks of 1 whose mels
# wait for the decoder states of the next 1 or 2 frames (decoder look-ahead, with 1 or 0 of the encoder's)
LOW = ROWS[4:8]


def checkpoint(preset: str, lookahead: int, chunk: int, dec_lookahead: int, root: Path) -> Path:
    cfg = model_config(preset, {"streaming": True, "stream_lookahead_frames": lookahead, "stream_chunk_frames": chunk,
                                "stream_decoder_lookahead_frames": dec_lookahead})
    tcfg = train_config({"max_steps": 1, "batch_size": 1, "warmup_steps": 1, "device": "cpu", "tensorboard": False,
                         "progress": False, "val_every": 1})
    items = synthetic_utterances(1, 8, n_mels=cfg["n_mels"], n_units=cfg["n_units"])
    return train(cfg, tcfg, items, None, root / f"{preset}_{lookahead}_{chunk}_{dec_lookahead}").last_checkpoint


def hifigan(root: Path) -> Path:
    ac = AudioConfig.default()
    t = np.arange(160 * 40) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    items = [VocoderItem("x", audio, MelSpectrogram(ac)(torch.from_numpy(audio)).numpy())]
    vcfg = vocoder_train_config({"device": "cpu", "max_steps": 1, "val_every": 1, "batch_size": 1,
                                 "segment_frames": 8, "tensorboard": False})
    return train_vocoder(hifigan_config("tiny"), ac, vcfg, items, None, root / "hifigan", preset="tiny",
                         progress=False).last_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (lipspeech live's default: 1)")
    ap.add_argument("--rows", choices=["all", "quick", "low"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="live-latency-"))
    generate_corpus({"seed": 3, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    root / "raw", threads=1, progress=False)
    clip = next((root / "raw" / "s1").glob("*.mpg"))
    looped = root / "looped.mkv"
    loops = int(np.ceil(args.seconds / 2.6))
    subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(loops), "-i", str(clip), "-t", str(args.seconds),
                    "-c:v", "ffv1", "-an", str(looped)], check=True)
    voc = hifigan(root)
    print(f"{args.seconds:g} s of a SynthGRID clip played at its pace (ffmpeg -re); torch threads {args.threads}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| preset | chunk + look-ahead (+ decoder's) (frames) | vocoder | algorithmic (ms) | latency p50 (ms) | p95 (ms) "
          "| RTF | dropped frames |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for preset, chunk, lookahead, dec_lookahead, vocoder in {"all": ROWS, "quick": QUICK, "low": LOW}[args.rows]:
        ckpt = checkpoint(preset, lookahead, chunk, dec_lookahead, root)
        opts = LiveOptions(vocoder=str(voc) if vocoder == "hifigan" else vocoder, realtime=True, threads=args.threads)
        res = run_live(str(looped), ckpt, root / "out.wav", options=opts)
        shape = f"{chunk} + {lookahead}" + (f" (+ {dec_lookahead})" if dec_lookahead else "")
        print(f"| {preset} | {shape} | {'HiFi-GAN tiny' if vocoder == 'hifigan' else 'Griffin-Lim'} "
              f"| {res.algorithmic_ms['total']:.0f} | {res.percentile(50):.0f} | {res.percentile(95):.0f} "
              f"| {res.rtf:.2f} | {res.dropped} |", flush=True)


if __name__ == "__main__":
    main()
