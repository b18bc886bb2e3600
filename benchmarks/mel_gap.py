"""What separates two systems' mels: accuracy, smoothness and the chunk boundaries, against the ground truth.

    python benchmarks/mel_gap.py --results results/synthgrid_grid ltbs_init_more2 ltbs_stream_align_more2_c2

For each system's synthesised test mels (``eval/<system>/mels.parquet``, the post-net's output) against
the corpus's ground-truth mels (``mel/*.parquet``), over the utterances every system has:

- L1 over all bins and per band of 20 mel bins (accuracy);
- the utterance-mean bias (L1 between the utterance's average spectrum and the ground truth's: timbre);
- the global-variance ratio (per bin, std over time / the ground truth's; below 1: over-smoothed) and
  the same for frame-to-frame differences (delta-GV);
- the mean absolute change from one mel frame to the next, by position in a period of
  ``--period`` mel frames (8: a chunk of 2 video frames at 4 mel frames each), so a step at every
  chunk or video-frame boundary shows as a larger value at positions 0 (and 4).

Reads the stores only (nothing is synthesised or vocoded); a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lipspeech.core.store import Store


def ground_truth(results: Path, wanted: set[str], stage: str = "mel") -> dict[str, np.ndarray]:
    """The ``wanted`` utterances' arrays from the corpus's ``stage`` stores (``mel`` or ``audio``; the array
    of that name), read lazily: only their row groups."""
    out: dict[str, np.ndarray] = {}
    for path in sorted((results / stage).glob("*.parquet")):
        if path.name.endswith(".rejected.parquet"):
            continue
        store = Store(path, lazy=True)
        out.update((u, store.array(stage, i)) for u, i in store.row_index().items() if u in wanted)
    return out


def system_mels(results: Path, system: str) -> dict[str, np.ndarray]:
    store = Store(results / "eval" / system / "mels.parquet")
    return dict(zip(store.utts, store.arrays("post")))


def figures(mels: dict[str, np.ndarray], gt: dict[str, np.ndarray], utts: list[str], period: int) -> dict[str, object]:
    l1, bias, gv, dgv, bands = [], [], [], [], []
    steps, counts = np.zeros(period), np.zeros(period)
    for u in utts:
        m = mels[u]
        g = gt[u][: len(m)]
        m = m[: len(g)]
        err = np.abs(m - g)
        l1.append(err.mean())
        bands.append([err[:, b : b + 20].mean() for b in range(0, m.shape[1], 20)])
        bias.append(np.abs(m.mean(0) - g.mean(0)).mean())
        gv.append((m.std(0) / g.std(0)).mean())
        dgv.append((np.diff(m, axis=0).std(0) / np.diff(g, axis=0).std(0)).mean())
        change = np.abs(np.diff(m, axis=0)).mean(1)
        position = np.arange(1, len(m)) % period
        np.add.at(steps, position, change)
        np.add.at(counts, position, 1)
    by_position = steps / np.maximum(counts, 1)
    return {"L1": np.mean(l1), "L1 by band": np.mean(bands, axis=0), "utterance-mean bias": np.mean(bias),
            "GV ratio": np.mean(gv), "delta-GV ratio": np.mean(dgv), "change by position": by_position,
            "boundary / inner change": by_position[0] / by_position[1:].mean()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("systems", nargs="+", help="experiment names with eval/<name>/mels.parquet")
    ap.add_argument("--results", type=Path, default=Path("results/synthgrid"))
    ap.add_argument("--period", type=int, default=8, help="mel frames per period of the change-by-position row")
    args = ap.parse_args()
    systems = {name: system_mels(args.results, name) for name in args.systems}
    gt = ground_truth(args.results, set.intersection(*(set(mels) for mels in systems.values())))
    utts = sorted(gt)
    print(f"{len(utts)} utterances with every system and the ground truth")
    rows = {"ground truth": figures(gt, gt, utts, args.period)} | {
        name: figures(mels, gt, utts, args.period) for name, mels in systems.items()}
    for name, f in rows.items():
        print(f"\n{name}")
        for key, value in f.items():
            shown = " ".join(f"{v:.3f}" for v in value) if isinstance(value, np.ndarray) else f"{value:.3f}"
            print(f"  {key:24s} {shown}")


if __name__ == "__main__":
    main()
