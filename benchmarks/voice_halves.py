"""Where in a clip two systems' voices differ: speaker similarity of each half of the audio.

    python benchmarks/voice_halves.py --results results/synthgrid_grid ltbs_init_more3 ltbs_stream_dla2_more3_c1

For each system's vocoded test audio (``eval/<system>/audio.parquet``), the GE2E speaker similarity (the
eval stage's scorer, resemblyzer's pretrained encoder) of its first half, its second half (split at the
middle sample), each against the embedding of the whole ground-truth utterance (``audio/*.parquet``),
beside the eval stage's own figure for the whole (``speaker_sim`` of ``eval/<system>/metrics.parquet``).
With ``--speech`` the clip is first cut to the ground truth's speech, from its first to its last 30 ms
window that the scorer's silence gate keeps (``speech_windows``), and that span is embedded whole and
split at its middle: the same figures without the silence before and after the sentence. ``--parts K``
splits into K equal runs of samples instead of halves (quarters of the speech: ``--speech --parts 4``).
A system is an ``eval/`` folder's name, or with a slash a folder under the results (``hybrids/<name>``).
Prints each system's means and, for every system after the first, its paired
difference from the first with a bootstrap interval over the common utterances. A streaming model that
attends a window of frames back, against an offline model that sees the whole clip, shows where its
missing memory costs voice.

Reads the stores only (nothing is synthesised); about a minute for 192 GRID utterances on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lipspeech.core.store import Store
from lipspeech.evaluation import bootstrap
from lipspeech.evaluation.speaker import VAD_WINDOW, SpeakerScorer, speech_windows

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mel_gap import ground_truth  # noqa: E402
from stream_goal import difference_text, system_folder  # noqa: E402

PARTS = ("first half", "second half", "whole")


def system_audio(results: Path, system: str) -> dict[str, np.ndarray]:
    store = Store(system_folder(results, system) / "audio.parquet")
    return dict(zip(store.utts, store.arrays("audio")))


def speech_span(gt: np.ndarray) -> slice:
    """The samples from the first to the last speech window of the ground truth ``gt``."""
    idx = np.flatnonzero(speech_windows(np.asarray(gt, np.float32)))
    return slice(int(idx[0]) * VAD_WINDOW, (int(idx[-1]) + 1) * VAD_WINDOW) if idx.size else slice(None)


def part_names(n: int) -> list[str]:
    """The names of ``n`` equal parts of a clip, then ``"whole"``: halves by name, else "part i/n"."""
    return (list(PARTS[:2]) if n == 2 else [f"part {i + 1}/{n}" for i in range(n)]) + ["whole"]


def similarities(scorer: SpeakerScorer, results: Path, system: str, audio: dict[str, np.ndarray],
                 refs: dict[str, np.ndarray], utts: list[str], spans: dict[str, slice] | None = None,
                 n_parts: int = 2) -> dict[str, np.ndarray]:
    """part -> (n,) similarity of that part of each utterance's audio to its ground truth's embedding (the
    audio split into ``n_parts`` equal runs of samples, named by ``part_names``); the whole clip's is the
    eval stage's, not embedded again. With ``spans`` each audio is cut to its utterance's span first, and
    the whole span is embedded."""
    names = part_names(n_parts)
    sims: dict[str, list[float]] = {p: [] for p in names}
    for u in utts:
        x = np.asarray(audio[u], np.float32)[spans[u] if spans else slice(None)]
        cuts = [i * x.size // n_parts for i in range(n_parts + 1)]
        for p, a, b in zip(names, cuts, cuts[1:]):
            sims[p].append(scorer.similarity(scorer.embed(x[a:b]), refs[u]))
        if spans:
            sims["whole"].append(scorer.similarity(scorer.embed(x), refs[u]))
    if not spans:
        table = pd.read_parquet(system_folder(results, system) / "metrics.parquet", columns=["utt", "speaker_sim"])
        sims["whole"] = table.set_index("utt").loc[utts, "speaker_sim"].tolist()
    return {p: np.asarray(v, np.float64) for p, v in sims.items()}


def report(table: dict[str, dict[str, np.ndarray]], parts: Sequence[str], metric: str, resamples: int,
           seed: int) -> None:
    """Print each system's mean of ``metric`` per part (``table``: system -> part -> per-utterance values,
    the same utterances in order) and, for every system after the first, its paired difference from the
    first with a bootstrap interval."""
    for s in table:
        print(f"{s}: " + "; ".join(f"{p} {table[s][p].mean():.4f}" for p in parts))
    base, *others = table
    for s in others:
        out = []
        for p in parts:
            r = bootstrap.paired_difference({metric: table[base][p]}, {metric: table[s][p]}, metric, resamples, seed)
            out.append(f"{p} {difference_text(r)}")
        print(f"{s} - {base}: " + "; ".join(out))


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a paired per-part comparison: ``--results``, ``--resamples``, ``--seed``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="a corpus's results folder (results/<corpus>)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1234)
    return ap


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--speech", action="store_true", help="cut each clip to the ground truth's speech first")
    ap.add_argument("--parts", type=int, default=2, help="equal parts to split each clip (or span) into")
    ap.add_argument("systems", nargs="+", help="eval systems; the first is the baseline of the differences")
    args = ap.parse_args()
    if args.parts < 1:
        ap.error("--parts must be at least 1")
    audio = {s: system_audio(args.results, s) for s in args.systems}
    utts = sorted(set.intersection(*(set(a) for a in audio.values())))
    gt = ground_truth(args.results, set(utts), "audio")
    utts = [u for u in utts if u in gt]
    if not utts:
        raise SystemExit(f"no test utterance is in every system's audio and in {args.results / 'audio'}")
    scorer = SpeakerScorer()
    refs = {u: scorer.embed(np.asarray(gt[u], np.float32)) for u in utts}
    spans = {u: speech_span(gt[u]) for u in utts} if args.speech else None
    sims = {s: similarities(scorer, args.results, s, audio[s], refs, utts, spans, args.parts) for s in args.systems}
    print(f"{len(utts)} utterances" + (", cut to the ground truth's speech" if spans else ""))
    report(sims, part_names(args.parts), "speaker_sim", args.resamples, args.seed)


if __name__ == "__main__":
    main()
