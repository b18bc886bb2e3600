"""Cost per utterance of each evaluation metric family (asr, signal, dnsmos, speaker) and of the
bootstrap intervals, on GRID-length espeak-ng speech.

    python benchmarks/eval_metrics.py [--n 24] [--threads 1]

Each family is timed on the same ``n`` utterances (a noisy copy stands in for a system's audio),
after one warm-up utterance that pays the one-off costs (model loading, librosa's numba
compilation), which are reported apart. CPU seconds of this process are printed beside the wall
clock: on a shared machine the CPU column is the one to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from espeak_speech import espeak_corpus  # noqa: E402


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lipspeech.core.config import validate_config
    from lipspeech.evaluation import bootstrap
    from lipspeech.evaluation.asr import build_asr
    from lipspeech.evaluation.dnsmos import DNSMOS
    from lipspeech.evaluation.families import FIGURES
    from lipspeech.evaluation.metrics import SignalScorer
    from lipspeech.evaluation.speaker import SpeakerScorer

    cfg = validate_config({})
    corpus = espeak_corpus(args.n + 1, seed=3)
    rng = np.random.default_rng(0)
    pairs = [(text, x, (x + 0.01 * rng.standard_normal(len(x))).astype(np.float32)) for text, x in corpus]
    seconds = sum(len(x) for _, x, _ in pairs[1:]) / 16000
    texts = [t for t, _, _ in pairs]

    def make_asr():
        return build_asr(cfg["evaluate"], texts)[0]

    def make_signal():
        return SignalScorer(cfg["mel"], cfg["prosody"], cfg["evaluate"]["mcd_order"], True,
                            cfg["evaluate"]["f0_silence_db"])

    families = {
        "asr (pocketsphinx, GRID grammar)": (make_asr, lambda a, ref, deg: a.transcribe(deg)),
        "signal (STOI, ESTOI, PESQ, MCD, F0, energy)": (
            make_signal, lambda s, ref, deg: s.score(s.features(ref, len(ref) // 640), s.features(deg, len(deg) // 640))),
        "dnsmos (P.808 + P.835)": (lambda: DNSMOS(threads=args.threads), lambda d, ref, deg: d(deg)),
        "speaker (GE2E, both signals)": (SpeakerScorer, lambda s, ref, deg: s.similarity(s.embed(ref), s.embed(deg))),
    }
    print(f"{args.n} utterances, {seconds:.1f} s of speech ({seconds / args.n:.2f} s each), {args.threads} thread(s)\n")
    print("| family | per utterance, wall (ms) | per utterance, CPU (ms) | set-up + first utterance (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (make, run) in families.items():
        t0 = time.perf_counter()
        obj = make()
        run(obj, pairs[0][1], pairs[0][2])
        setup = time.perf_counter() - t0
        wall = cpu = 0.0
        for _, ref, deg in pairs[1:]:
            _, w, c = timed(run, obj, ref, deg)
            wall, cpu = wall + w, cpu + c
        print(f"| {name} | {1000 * wall / args.n:.0f} | {1000 * cpu / args.n:.0f} | {setup:.2f} |")

    # the intervals: every figure of one system, and one paired difference per figure, over the 31 test
    # utterances of the demo and over 1000 (a GRID test set)
    for n in (31, 1000):
        cols = {k: rng.uniform(0, 1, n) for k in (*FIGURES, "word_edits", "char_edits")}
        cols.update(ref_words=np.full(n, 6.0), ref_chars=np.full(n, 25.0))
        _, w1, _ = timed(bootstrap.intervals, cols, FIGURES, 1000, 0)
        t = time.perf_counter()
        for m in FIGURES:
            bootstrap.paired_difference(cols, cols, m, 1000, 0)
        w2 = time.perf_counter() - t
        print(f"\nbootstrap, 1000 resamples, {n} utterances: {len(FIGURES)} intervals {w1:.2f} s; "
              f"{len(FIGURES)} paired differences {w2:.2f} s")


if __name__ == "__main__":
    main()
