"""Latency and speed of the streaming vocoders (lipspeech.vocoder.streaming).

    python benchmarks/streaming_vocoder.py [--seconds 3] [--chunk 4] [--threads 2]

A 3 s log-mel (a harmonic tone; speed does not depend on the content, nor on a
HiFi-GAN's trained weights, so its generators are freshly initialised) is pushed
``--chunk`` frames at a time (4 frames = 40 ms, what the model makes of one video
frame), as a live source would. For each vocoder it prints the look-ahead it needs
(algorithmic latency, ms), the compute time of a push (p50 / p95, ms: what adds to
the latency on this machine) and the real-time factor (compute / audio duration).
The offline vocoder's RTF on the whole clip is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lipspeech.core.config import default_section
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.vocoder.api import GriffinLimVocoder, HifiGanVocoder
from lipspeech.vocoder.hifigan import Generator, hifigan_config
from lipspeech.vocoder.streaming import GriffinLimStream, HifiGanStream


def tone_mel(cfg: AudioConfig, seconds: float) -> np.ndarray:
    """The log-mel of a harmonic tone with vibrato."""
    t = np.arange(int(seconds * cfg.sample_rate)) / cfg.sample_rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 3 * t)) / cfg.sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    return MelSpectrogram(cfg)(torch.from_numpy((0.3 * x / np.abs(x).max()).astype(np.float32))[None])[0].numpy()


def run_stream(make, mel: np.ndarray, chunk: int) -> tuple[float, list[float], float]:
    """(latency ms, per-push compute ms, total compute s) of one pass."""
    stream = make()
    pushes, total = [], 0.0
    for at in range(0, len(mel), chunk):
        started = time.perf_counter()
        stream.push(mel[at:at + chunk])
        pushes.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    stream.flush()
    total = sum(pushes) / 1000 + time.perf_counter() - started
    return stream.latency_ms, pushes, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--chunk", type=int, default=4, help="mel frames per push")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = AudioConfig.default()
    mel = tone_mel(cfg, args.seconds)
    cpu = torch.device("cpu")
    rows = []
    for preset in ("tiny", "v2"):
        torch.manual_seed(0)
        vocoder = HifiGanVocoder(Generator(hifigan_config(preset), cfg.n_mels).remove_weight_norm(), cfg, cpu)
        started = time.perf_counter()
        vocoder(mel)
        rows.append((f"HiFi-GAN {preset}, offline", 0.0, [], time.perf_counter() - started))
        rows.append((f"HiFi-GAN {preset}, streamed", *run_stream(lambda v=vocoder: HifiGanStream(v), mel, args.chunk)))
    gl = GriffinLimVocoder(cfg, cpu, **default_section("vocoder")["griffin_lim"])
    started = time.perf_counter()
    gl(mel)
    rows.append(("Griffin-Lim 64 it, offline", 0.0, [], time.perf_counter() - started))
    for lookahead, n_iter, step in ((3, 8, 4), (3, 8, 2), (4, 16, 4)):
        rows.append((f"Griffin-Lim stream (look-ahead {lookahead}, {n_iter} it, step {step})",
                     *run_stream(lambda a=lookahead, n=n_iter, s=step: GriffinLimStream(gl, a, n, s), mel, args.chunk)))
    print(f"{args.seconds:g} s of log-mel pushed {args.chunk} frames at a time; {args.threads} threads\n")
    print("| vocoder | look-ahead latency (ms) | push p50 (ms) | push p95 (ms) | RTF |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, latency, pushes, seconds in rows:
        p50, p95 = (f"{np.percentile(pushes, q):.1f}" for q in (50, 95)) if pushes else ("—", "—")
        shown = f"{latency:.0f}" if pushes else "whole clip"
        print(f"| {name} | {shown} | {p50} | {p95} | {seconds / args.seconds:.3f} |")


if __name__ == "__main__":
    main()
