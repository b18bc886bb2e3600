"""Whose voice a system speaks in: each test utterance's output identified among the corpus's speakers.

    python benchmarks/speaker_confusion.py --results results/synthgrid ltbs_init_more ltbs_stream_dla2_more_c1

Each speaker is enrolled from the ground truth of the val split (the mean of the unit GE2E embeddings of
its val utterances, the eval stage's scorer: resemblyzer's pretrained encoder). Each system's vocoded test
audio (``eval/<system>/audio.parquet``, or ``hybrids/<name>`` with a slash) is embedded and given to the
enrolled speaker it is nearest (cosine); the ground truth's own test audio is scored the same way, as the
ceiling. Printed per system: the share of utterances given to their own speaker, the confusions (true ->
given, with counts), and the margin (similarity to the own speaker's enrolment minus the nearest other's),
with, for every system after the first, its paired difference from the first with a bootstrap interval.

SynthGRID cycles its face photos over its speakers (two photos, four voices: s1 and s4 share one, s2 and
s29 the other), so a model can tell two speakers with one face apart only by how they articulate; a
model that reads less of the clip than another may confuse them more, and that shows here as the
confusions within a face's pair.

Reads the stores only (nothing is synthesised); about a minute for 31 utterances on 2 cores.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from lipspeech.evaluation.speaker import SpeakerScorer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mel_gap import ground_truth  # noqa: E402
from voice_halves import parser, report, system_audio  # noqa: E402


def enrol(scorer: SpeakerScorer, audio: dict[str, np.ndarray], speaker_of: dict[str, str]
          ) -> tuple[list[str], np.ndarray]:
    """The speakers (sorted) and their (S, D) unit-length mean embeddings over the utterances in ``audio``."""
    by = {}
    for u, x in audio.items():
        by.setdefault(speaker_of[u], []).append(scorer.embed(np.asarray(x, np.float32)))
    names = sorted(by)
    means = np.stack([np.mean(by[s], axis=0) for s in names])
    return names, means / np.linalg.norm(means, axis=1, keepdims=True)


def identify(embeddings: np.ndarray, own: np.ndarray, enrolled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) unit embeddings, (N,) index of each one's own speaker, (S, D) enrolments -> the index each
    is nearest to and its margin (cosine to its own enrolment minus the highest to any other)."""
    sims = embeddings @ enrolled.T
    rows = np.arange(len(own))
    others = sims.copy()
    others[rows, own] = -np.inf
    return sims.argmax(axis=1), sims[rows, own] - others.max(axis=1)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("systems", nargs="+", help="eval systems; the first is the baseline of the differences")
    args = ap.parse_args()
    manifest = pd.read_parquet(args.results / "manifest.parquet", columns=["utt", "speaker", "split"])
    speaker_of = dict(zip(manifest.utt, manifest.speaker))
    val = set(manifest.utt[manifest.split == "val"])
    audio = {s: system_audio(args.results, s) for s in args.systems}
    utts = sorted(set.intersection(*(set(a) for a in audio.values())))
    gt = ground_truth(args.results, set(utts) | val, "audio")
    utts = [u for u in utts if u in gt]
    if not utts or not val & set(gt):
        raise SystemExit(f"no test utterance in every system's audio and in {args.results / 'audio'}, or no val audio")
    scorer = SpeakerScorer()
    names, enrolled = enrol(scorer, {u: gt[u] for u in val if u in gt}, speaker_of)
    if missing := {speaker_of[u] for u in utts} - set(names):
        raise SystemExit(f"speakers with no val utterance to enrol them: {', '.join(sorted(missing))}")
    own = np.array([names.index(speaker_of[u]) for u in utts])
    print(f"{len(utts)} test utterances; {len(names)} speakers enrolled from {len(val & set(gt))} val utterances")
    margins = {}
    for s, source in [("ground truth", gt)] + [(s, audio[s]) for s in args.systems]:
        emb = np.stack([scorer.embed(np.asarray(source[u], np.float32)) for u in utts])
        given, margin = identify(emb, own, enrolled)
        wrong = Counter(f"{names[a]}->{names[b]}" for a, b in zip(own, given) if a != b)
        print(f"{s}: own speaker {np.mean(given == own):.3f} ({int(np.sum(given == own))}/{len(utts)}); "
              f"confusions: {', '.join(f'{k} {v}' for k, v in sorted(wrong.items())) or 'none'}")
        if s != "ground truth":
            margins[s] = {"margin": margin}
    report(margins, ["margin"], "margin", args.resamples, args.seed)


if __name__ == "__main__":
    main()
