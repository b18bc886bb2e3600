"""WORLD F0 (what the prosody stage runs: DIO + StoneMask, Harvest + StoneMask)
vs librosa.pyin, on the same audio and the same 10 ms frames.

1. Synthetic voiced tones whose F0 is known (glides and vibrato between 90 and
   320 Hz, 8 harmonics, clean and with white noise at 20 dB SNR): mean absolute
   error and gross errors (more than 20 % off) on frames every method calls
   voiced, and how many truly voiced frames each calls voiced.
2. Real speech (espeak-ng GRID sentences, several voices): time per second of
   audio, voiced-frame agreement between methods, and their F0 differences on
   frames both call voiced (median absolute difference in cents, gross errors).

All methods are aligned to the prosody stage's frames (frame k centred on
sample 160 k + 80; see lipspeech.features.prosody).

    python benchmarks/f0_world_vs_pyin.py [--sentences 60]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

SR = 16000
FLOOR, CEIL = 60.0, 600.0


def pyin_f0(x: np.ndarray) -> np.ndarray:
    """librosa.pyin on the prosody stage's frames (0 = unvoiced)."""
    import librosa

    f0, voiced, _ = librosa.pyin(x[80:], fmin=FLOOR, fmax=CEIL, sr=SR, frame_length=1024, hop_length=160, center=True)
    return np.where(voiced, np.nan_to_num(f0), 0.0)


def methods() -> dict:
    from lipspeech.features.prosody import world_f0

    return {
        "dio + stonemask": lambda x: world_f0(x, "dio", FLOOR, CEIL),
        "harvest + stonemask": lambda x: world_f0(x, "harvest", FLOOR, CEIL),
        "librosa.pyin": pyin_f0,
    }


def tone(f0_track: np.ndarray, rng: np.random.Generator, snr_db: float | None) -> np.ndarray:
    """A harmonic tone following a per-sample F0 track, faded in and out, optionally with noise."""
    phase = 2 * np.pi * np.cumsum(f0_track) / SR
    x = sum(np.sin(h * phase) / h for h in range(1, 9))
    n = len(x)
    x = x * np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.05 * SR), 0, 1)
    x = 0.3 * x / np.abs(x).max()
    if snr_db is not None:
        x = x + rng.normal(scale=np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10)), size=n)
    return x.astype(np.float32)


def synthetic_set(rng: np.random.Generator, n: int = 12, frames: int = 50) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(audio (frames * 640,), true F0 per 10 ms frame (frames * 4,))]: glides and vibrato."""
    out = []
    t = np.arange(frames * 640) / SR
    for i in range(n):
        lo, hi = sorted(rng.uniform(90, 320, size=2))
        track = lo + (hi - lo) * t / t[-1] if i % 2 else (lo + hi) / 2 * (1 + 0.06 * np.sin(2 * np.pi * 5 * t))
        centres = np.arange(frames * 4) * 160 + 80
        out.append((track, track[centres]))
    return out


def synthetic_table(snr_db: float | None, fns: dict) -> list[str]:
    rng = np.random.default_rng(0)
    stats = {name: [[], [], 0, 0] for name in fns}  # abs errors, gross, voiced called, frames
    for track, truth in synthetic_set(rng):
        x = tone(track, rng, snr_db)
        inner = slice(8, -8)  # the 50 ms fades: the voice is still starting or stopping there
        for name, fn in fns.items():
            f0 = fn(x)[: len(truth)][inner]
            tr = truth[inner]
            v = f0 > 0
            stats[name][0].extend(np.abs(f0[v] - tr[v]))
            stats[name][1].extend(np.abs(f0[v] - tr[v]) > 0.2 * tr[v])
            stats[name][2] += int(v.sum())
            stats[name][3] += len(tr)
    label = "clean" if snr_db is None else f"{snr_db:g} dB SNR"
    return [f"| {name} | {label} | {100 * s[2] / s[3]:.1f} % | {np.mean(s[0]):.2f} | {100 * np.mean(s[1]):.2f} % |"
            for name, s in stats.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=60)
    args = ap.parse_args()
    from espeak_speech import espeak_corpus  # beside this script

    fns = methods()
    print("Synthetic tones with known F0 (12 x 2 s; 50 ms fades excluded)\n")
    print("| method | audio | truly voiced frames called voiced | mean abs. error (Hz) | gross errors (> 20 %) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for snr in (None, 20.0):
        print("\n".join(synthetic_table(snr, fns)))

    corpus = espeak_corpus(args.sentences, seed=1)
    seconds = sum(len(a) for _, a in corpus) / SR
    f0s, times = {}, {}
    for name, fn in fns.items():
        fn(corpus[0][1])  # warm-up (numba compiles pyin's Viterbi on first use)
        t = time.perf_counter()
        f0s[name] = np.concatenate([fn(a)[: len(a) // 160] for _, a in corpus])
        times[name] = time.perf_counter() - t
    print(f"\nespeak-ng speech: {len(corpus)} sentences, {seconds:.0f} s, {len(next(iter(f0s.values())))} frames "
          "(single thread)\n")
    print("| method | time (s) | x real time | voiced frames |")
    print("| --- | ---: | ---: | ---: |")
    for name in fns:
        print(f"| {name} | {times[name]:.2f} | {seconds / times[name]:.1f}x | {100 * np.mean(f0s[name] > 0):.1f} % |")
    print("\n| pair | voicing agreement | both voiced | median abs. diff (cents) | gross diff (> 20 %) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for a, b in itertools.combinations(fns, 2):
        va, vb = f0s[a] > 0, f0s[b] > 0
        both = va & vb
        cents = 1200 * np.abs(np.log2(f0s[a][both] / f0s[b][both]))
        gross = np.abs(f0s[a][both] - f0s[b][both]) > 0.2 * f0s[b][both]
        print(f"| {a} vs {b} | {100 * np.mean(va == vb):.1f} % | {100 * np.mean(both):.1f} % | "
              f"{np.median(cents):.1f} | {100 * np.mean(gross):.2f} % |")


if __name__ == "__main__":
    main()
