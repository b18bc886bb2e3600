"""Issue 27's goal, checked on evaluated systems: is the streaming model's speech as good as the offline model's?

    python benchmarks/stream_goal.py --results results/synthgrid_grid ltbs_init_more3:ltbs_stream_dla2_more3_c1

Each argument OFFLINE:STREAMING names two systems of ``eval/`` (their ``summary.json`` and
``metrics.parquet``) trained to the same budget; a name with a slash is a folder under the results
(``hybrids/<name>``, what ``time_shift.py`` and the other scored benchmarks write). The goal's parts, as
the issue states them:

- WER: the streaming model's at most ``1.2x`` the offline model's (the test split's WER, word edits over
  reference words, as the evaluate stage reports it);
- DNSMOS P.808, DNSMOS OVRL and speaker similarity: the streaming model's mean within the offline
  model's 95 % bootstrap interval (the evaluate stage's), or above it.

Beside each part it prints the paired difference (streaming minus offline, over the common utterances,
with the evaluate stage's bootstrap draws), which says more than the means' overlap does but is not what
the goal asks. Several pairs (other seeds, other budgets) are rows of one table. Latency is measured
apart (``benchmarks/live_latency.py``). Reads the summaries and metrics only: a second.

A side may pool the same recipe trained with several seeds, joined by ``+``
(``ltbs_init_more3+ltbs_init_more3_seed2:ltbs_stream_dla2_more3_c1+ltbs_stream_dla2_more3_seed2_c1``): each
utterance's figures are averaged over the seeds (word edits too, so the WER is the seeds' mean WER), and
the pool's means and bootstrap intervals are computed from those averages as the evaluate stage computes
a system's (its draws and seed, over the utterances every seed has). That compares what each recipe gives
on average rather than one draw of its training noise; the interval is still over the test utterances only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from lipspeech.evaluation import bootstrap
from lipspeech.evaluation.compare import paired, utterance_columns

#: the issue's WER goal: the streaming model's WER at most this multiple of the offline model's
WER_RATIO = 1.2
#: the figures whose streaming mean must lie within (or above) the offline model's interval
WITHIN = ("dnsmos_p808", "dnsmos_ovrl", "speaker_sim")
LABELS = {"wer": "WER", "dnsmos_p808": "P.808", "dnsmos_ovrl": "OVRL", "speaker_sim": "speaker sim"}


def check(offline: Mapping[str, Any], streaming: Mapping[str, Any], diffs: Mapping[str, Any]) -> dict[str, Any]:
    """The goal's parts for one pair: ``offline`` and ``streaming`` are evaluate summaries (their means
    and ``ci95``), ``diffs`` the paired differences (:func:`lipspeech.evaluation.compare.paired`).

    Returns figure -> ``{"met", ...}``: for WER the ratio, for the others the streaming mean, the offline
    interval and by how much the mean lies below it (0 when within or above); ``"goal"`` is every part met.

    Raises:
        ValueError: a summary lacks a figure or the offline one its interval (evaluated without it).
    """
    for name, s in (("offline", offline), ("streaming", streaming)):
        missing = [m for m in ("wer", *WITHIN) if not isinstance(s.get(m), (int, float))]
        if name == "offline":
            missing += [f"{m} interval" for m in WITHIN if not (s.get("ci95") or {}).get(m)]
        if missing:
            raise ValueError(f"the {name} summary has no {', '.join(missing)} (evaluate it with every metric)")
    ratio = streaming["wer"] / offline["wer"] if offline["wer"] else float("inf")
    out: dict[str, Any] = {"wer": {"offline": offline["wer"], "streaming": streaming["wer"], "ratio": ratio,
                                   "met": ratio <= WER_RATIO, "paired": diffs.get("wer")}}
    for m in WITHIN:
        low, high = offline["ci95"][m]
        mean = streaming[m]
        out[m] = {"streaming": mean, "interval": (low, high), "below_by": max(0.0, low - mean),
                  "met": mean >= low, "paired": diffs.get(m)}
    out["goal"] = all(part["met"] for part in out.values())
    return out


def difference_text(d: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 4) -> str:
    """A paired difference (:func:`lipspeech.evaluation.compare.paired`'s entry) as ``+d [lo, hi]``, times
    ``scale``; ``n/a`` where it is undefined."""
    if not d or d.get("diff") is None or d.get("ci95") is None:
        return "n/a"
    lo, hi = d["ci95"]
    return f"{d['diff'] * scale:+.{digits}f} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"


def row(pair: str, result: Mapping[str, Any]) -> str:
    """One Markdown table row of :func:`check`'s result."""
    w = result["wer"]
    cells = [pair, f"{100 * w['offline']:.1f} -> {100 * w['streaming']:.1f}: {w['ratio']:.2f}x "
             f"({'met' if w['met'] else 'not met'}; paired {difference_text(w['paired'], 100, 1)})"]
    for m in WITHIN:
        r = result[m]
        digits = 4 if m == "speaker_sim" else 3
        below = f"{r['below_by']:.{digits}f}" if round(r["below_by"], digits) else f"< {10.0 ** -digits:.{digits}f}"
        where = "within or above" if r["met"] else f"below by {below}"
        cells.append(f"{r['streaming']:.{digits}f} vs [{r['interval'][0]:.{digits}f}, {r['interval'][1]:.{digits}f}]:"
                     f" {where} (paired {difference_text(r['paired'], 1, digits)})")
    cells.append("**met**" if result["goal"] else "not met")
    return "| " + " | ".join(cells) + " |"


def system_folder(results: Path, system: str) -> Path:
    """An evaluated system's folder: ``eval/<system>``; a system with a slash is a folder under ``results``
    (``hybrids/<name>``, where the scored benchmarks write)."""
    return results / system if "/" in system else results / "eval" / system


def load(results: Path, system: str) -> tuple[dict[str, Any], pd.DataFrame]:
    folder = system_folder(results, system)
    if not (folder / "summary.json").exists():
        raise SystemExit(f"{folder / 'summary.json'} is missing: evaluate {system} first")
    summary = json.loads((folder / "summary.json").read_text())
    return summary, utterance_columns(pd.read_parquet(folder / "metrics.parquet"))


def bootstrap_settings(summary: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The evaluate stage's bootstrap settings (``resamples``, ``seed``) of a summary; exits when it has none."""
    boot = summary.get("bootstrap") or {}
    if "resamples" not in boot or "seed" not in boot:
        raise SystemExit(f"{what}: the summary has no bootstrap settings (evaluate it again)")
    return dict(boot)


def pooled(results: Path, systems: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """A system's summary and per-utterance table (:func:`load`), or for ``A+B+...`` (the same recipe, other
    seeds) the per-utterance average over the common utterances with a summary computed from it (module
    docstring), the first system's bootstrap settings kept."""
    names = systems.split("+")
    loaded = [load(results, s) for s in names]
    if len(loaded) == 1:
        return loaded[0]
    everywhere = set.intersection(*(set(t.index) for _, t in loaded))
    common = [u for u in loaded[0][1].index if u in everywhere]  # the first system's order: its draws
    if not common:
        raise SystemExit(f"{systems}: no utterance is in every one of them")
    numeric = [c for c in loaded[0][1].columns if pd.api.types.is_numeric_dtype(loaded[0][1][c])]
    table = pd.concat([t.loc[common, numeric] for _, t in loaded]).groupby(level=0).mean().loc[common]
    boot = bootstrap_settings(loaded[0][0], names[0])
    columns = {c: table[c].to_numpy(float) for c in numeric}
    summary = {m: bootstrap.figure(columns, m) for m in ("wer", *WITHIN)}
    summary.update(system=systems, n=len(common), bootstrap=boot,
                   ci95=bootstrap.intervals(columns, ("wer", *WITHIN), boot["resamples"], boot["seed"]))
    return summary, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="a corpus's results folder (results/<corpus>)")
    ap.add_argument("pairs", nargs="+", metavar="OFFLINE:STREAMING",
                    help="two eval systems of the same budget (each side may be A+B+...: seeds pooled)")
    args = ap.parse_args()
    header = ["offline : streaming", "WER % (goal <= 1.2x)", *(f"{LABELS[m]} (goal: within)" for m in WITHIN), "goal"]
    print("| " + " | ".join(header) + " |\n" + "| --- " * len(header) + "|")
    met = 0
    for pair in args.pairs:
        if pair.count(":") != 1:
            raise SystemExit(f"{pair!r}: expected OFFLINE:STREAMING")
        (s_off, c_off), (s_str, c_str) = (pooled(args.results, s) for s in pair.split(":"))
        boot = bootstrap_settings(s_off, f"{pair}, offline")
        diffs = paired(c_off, c_str, ("wer", *WITHIN), boot["resamples"], boot["seed"])
        try:
            result = check(s_off, s_str, diffs)
        except ValueError as e:
            raise SystemExit(f"{pair}: {e}") from None
        met += result["goal"]
        print(row(pair.replace(":", " : "), result))
    print(f"\nthe goal holds in {met} of {len(args.pairs)} pairs")


if __name__ == "__main__":
    main()
