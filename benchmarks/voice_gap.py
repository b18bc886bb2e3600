"""What a voice gap goes with: per-utterance speaker similarity against the spectral and pitch errors.

    python benchmarks/voice_gap.py --results results/synthgrid ltbs_init_more:ltbs_stream_dla2_more_c1

For each pair A:B of evaluated systems (``eval/<system>/metrics.parquet``), over their common test
utterances: B's paired difference from A (bootstrap interval) in speaker similarity, in the mel-cepstral
distortion (MCD: the spectral envelope's error against the ground truth) and in the F0 error (cents), and
the Pearson correlation of the per-utterance speaker-similarity difference with each error's difference.
A voice gap that follows MCD and not F0 is in the spectra, not the pitch. Reads the metrics only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lipspeech.evaluation.compare import paired

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_goal import difference_text, load  # noqa: E402
from voice_halves import parser  # noqa: E402

ERRORS = ("mcd", "f0_rmse_cents")


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the entries where both are finite (NaN with fewer than 3)."""
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() >= 3 else float("nan")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("pairs", nargs="+", metavar="A:B", help="two eval systems; B minus A")
    args = ap.parse_args()
    for pair in args.pairs:
        if pair.count(":") != 1:
            raise SystemExit(f"{pair!r}: expected A:B")
        (_, a), (_, b) = (load(args.results, s) for s in pair.split(":"))
        common = sorted(set(a.index) & set(b.index))
        figures = ("speaker_sim", *ERRORS)
        d = paired(a, b, figures, args.resamples, args.seed)
        delta = {m: (b.loc[common, m] - a.loc[common, m]).to_numpy(np.float64) for m in figures}
        parts = [f"{m} {difference_text(d[m])}" for m in figures]
        corr = [f"r(speaker sim, {m}) {correlation(delta['speaker_sim'], delta[m]):+.2f}" for m in ERRORS]
        print(f"{pair.replace(':', ' -> ')} ({len(common)} utterances): " + "; ".join(parts + corr))


if __name__ == "__main__":
    main()
