"""Where in a clip two models' unit predictions differ: top-1 unit accuracy of each half of a clip.

    python benchmarks/unit_halves.py --results results/synthgrid ltbs_init_more ltbs_stream_dla2_more:1

Each MODEL is a trained experiment (``models/<name>/ckpt/best.pt``, its averaged weights, as
``stream_hybrid.py`` loads them), ``MODEL:CHUNK`` a streaming model whose encoder runs in chunks of
CHUNK frames, as ``lipspeech live`` runs it. For each test utterance with units, the share of its
50 Hz unit frames whose most likely predicted unit is the target unit (the training's val
``unit_acc``), in the first half of the clip, the second (split at the middle unit frame) and the
whole. Prints each model's means and, for every model after the first, its paired difference from the
first with a bootstrap interval over the utterances. With ``--words``, the same for each word of a
GRID sentence by its place (command, colour, preposition, letter, digit, adverb), from the ``.align``
file beside each video (GRID's and SynthGRID's layout). Read beside ``voice_halves.py``: whether a
streaming model's voice gap sits where its units are worse.

Runs the encoders and variance adaptors only; seconds for the demo's 31 test utterances on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from lipspeech.data.corpora import GRID_SILENCES, read_grid_align
from lipspeech.models.batch import collate
from lipspeech.training.bundle import load_model
from lipspeech.training.stage import corpus_stores
from lipspeech.training.stores import StoreDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_halves import PARTS, parser, report  # noqa: E402

SLOTS = ("command", "colour", "preposition", "letter", "digit", "adverb")
ALIGN_PER_UNIT = 500  # GRID .align units (25000 a second) per 50 Hz unit frame


def word_parts(video_path: str, hit: np.ndarray) -> dict[str, float]:
    """The accuracy over each GRID word's unit frames, by the word's place in the sentence."""
    path = Path(video_path).parent / "align" / f"{Path(video_path).stem}.align"
    _, rows = read_grid_align(path)
    words = [(a, b) for a, b, w in rows if w not in GRID_SILENCES]
    if len(words) != len(SLOTS):
        raise SystemExit(f"{path}: {len(words)} words, not a GRID sentence of {len(SLOTS)}")
    return {slot: hit[a // ALIGN_PER_UNIT: max(b // ALIGN_PER_UNIT, a // ALIGN_PER_UNIT + 1)].mean()
            for slot, (a, b) in zip(SLOTS, words)}


@torch.no_grad()
def accuracies(results: Path, spec: str, words: bool) -> dict[str, dict[str, float]]:
    """utt -> part -> that part's unit accuracy, for ``spec`` (``name`` or ``name:chunk``); with ``words``
    also each GRID word's."""
    name, _, chunk = spec.partition(":")
    bundle = load_model(results / "models" / name / "ckpt" / "best.pt", "cpu", weights="average")
    model = bundle.model.eval()
    chunk_frames = model._chunk(int(chunk) if chunk else None)  # as infer: checks that the model has chunks
    data = StoreDataset(corpus_stores(results, False), "test", ("roi", "units"), bundle.speakers)
    videos = data.corpus.manifest.set_index("utt")["video_path"]
    out: dict[str, dict[str, float]] = {}
    for i, utt in enumerate(data.utts):
        batch = collate([data[i]])
        mask = batch.frame_mask()
        h = model.encode(batch.video, mask, batch.speakers, chunk_frames)
        _, preds = model.adaptor(h, mask)
        hit = (preds["unit_logits"].argmax(-1) == batch.units)[batch.unit_mask()].float().numpy()
        half = hit.size // 2
        out[utt] = {**dict(zip(PARTS, (hit[:half].mean(), hit[half:].mean(), hit.mean()))),
                    **(word_parts(videos[utt], hit) if words else {})}
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--words", action="store_true", help="also each GRID word by its place in the sentence")
    ap.add_argument("models", nargs="+", help="MODEL or MODEL:CHUNK; the first is the baseline of the differences")
    args = ap.parse_args()
    torch.set_num_threads(2)
    acc = {m: accuracies(args.results, m, args.words) for m in args.models}
    parts = PARTS + (SLOTS if args.words else ())
    utts = sorted(set.intersection(*(set(a) for a in acc.values())))
    if not utts:
        raise SystemExit(f"no test utterance with units in {args.results}")
    table = {m: {p: np.array([acc[m][u][p] for u in utts], np.float64) for p in parts} for m in args.models}
    print(f"{len(utts)} utterances")
    report(table, parts, "unit_acc", args.resamples, args.seed)


if __name__ == "__main__":
    main()
