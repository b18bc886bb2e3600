"""benchmarks/stream_goal.py, issue 27's goal as a computation: the WER ratio's bound, a mean within, above or
below the offline interval, and the whole script on two evaluated systems written by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from benchscripts import BENCHMARKS, script

REPO = BENCHMARKS.parent
SCRIPT = BENCHMARKS / "stream_goal.py"
goal = script("stream_goal")


def summary(wer: float, means: dict[str, float], ci: dict[str, tuple[float, float]]) -> dict:
    return {"wer": wer, **means, "ci95": {k: list(v) for k, v in ci.items()},
            "bootstrap": {"resamples": 200, "seed": 7, "level": 0.95}}


OFFLINE = summary(0.10, {"dnsmos_p808": 3.0, "dnsmos_ovrl": 2.6, "speaker_sim": 0.93},
                  {"dnsmos_p808": (2.95, 3.05), "dnsmos_ovrl": (2.55, 2.65), "speaker_sim": (0.92, 0.94)})


def test_ratio_bound_is_inclusive_and_a_mean_above_the_interval_meets_it():
    s = summary(0.12, {"dnsmos_p808": 3.10, "dnsmos_ovrl": 2.55, "speaker_sim": 0.9199}, {})
    r = goal.check(OFFLINE, s, {})
    assert r["wer"]["ratio"] == pytest.approx(1.2) and r["wer"]["met"]
    assert r["dnsmos_p808"]["met"] and r["dnsmos_p808"]["below_by"] == 0.0      # above the interval
    assert r["dnsmos_ovrl"]["met"]                                              # on its low end
    assert not r["speaker_sim"]["met"] and r["speaker_sim"]["below_by"] == pytest.approx(0.0001)
    assert not r["goal"]
    s["speaker_sim"] = 0.925
    assert goal.check(OFFLINE, s, {})["goal"]
    s["wer"] = 0.121
    r = goal.check(OFFLINE, s, {})
    assert not r["wer"]["met"] and not r["goal"]


def test_a_summary_without_a_figure_or_its_interval_is_refused():
    s = summary(0.1, {"dnsmos_p808": 3.0, "dnsmos_ovrl": None, "speaker_sim": 0.93}, {})
    with pytest.raises(ValueError, match="the streaming summary has no dnsmos_ovrl"):
        goal.check(OFFLINE, s, {})
    no_interval = {**OFFLINE, "ci95": {**OFFLINE["ci95"], "speaker_sim": None}}
    with pytest.raises(ValueError, match="the offline summary has no speaker_sim interval"):
        goal.check(no_interval, {**OFFLINE}, {})


def write_system(results: Path, name: str, s: dict, wer: list[float], sim: list[float]) -> None:
    folder = results / "eval" / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(s))
    n = len(wer)
    table = pd.DataFrame({"utt": [f"u{i}" for i in range(n)], "ref": ["bin blue at a one now"] * n, "wer": wer,
                          "dnsmos_p808": [3.0] * n, "dnsmos_ovrl": [2.6] * n, "speaker_sim": sim})
    table.to_parquet(folder / "metrics.parquet")


def test_the_script_reports_each_pair_and_how_many_meet_the_goal(tmp_path):
    wer_off = [0.0, 1 / 6, 0.0, 1 / 6] * 5
    write_system(tmp_path, "off", OFFLINE, wer_off, [0.93] * 20)
    good = summary(0.09, {"dnsmos_p808": 3.0, "dnsmos_ovrl": 2.6, "speaker_sim": 0.93}, {})
    write_system(tmp_path, "good", good, [0.0] * 20, [0.93] * 20)
    bad = summary(0.2, {"dnsmos_p808": 3.0, "dnsmos_ovrl": 2.6, "speaker_sim": 0.93}, {})
    write_system(tmp_path, "bad", bad, [w + 1 / 6 for w in wer_off], [0.92] * 20)
    out = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "off:good", "off:bad"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    rows = [line for line in out.splitlines() if line.startswith("| off : ")]
    assert len(rows) == 2
    assert rows[0].endswith("| **met** |") and "0.90x (met" in rows[0]
    assert rows[1].endswith("| not met |") and "2.00x (not met; paired +16.7 [+16.7, +16.7])" in rows[1]
    assert "speaker sim" in out and "paired -0.0100 [-0.0100, -0.0100]" in rows[1]
    assert "the goal holds in 1 of 2 pairs" in out


def test_a_missing_system_is_a_readable_error(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "a:b"], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode != 0 and "evaluate a first" in res.stderr


def test_seeds_joined_by_plus_are_averaged_per_utterance_and_their_intervals_drawn_again(tmp_path):
    from lipspeech.evaluation import bootstrap

    sims_a = [0.90 + 0.01 * (i % 5) for i in range(20)]
    sims_b = [0.92 - 0.005 * (i % 3) for i in range(20)] + [0.5]  # u20: not in a, left out of the pool
    wer_a, wer_b = [1 / 6 if i % 4 == 0 else 0.0 for i in range(20)], [2 / 6 if i % 5 == 0 else 0.0 for i in range(21)]
    write_system(tmp_path, "a", OFFLINE, wer_a, sims_a)
    write_system(tmp_path, "b", OFFLINE, wer_b, sims_b)
    s, table = goal.pooled(tmp_path, "a+b")
    assert s["n"] == 20 and list(table.index) == [f"u{i}" for i in range(20)]
    assert s["speaker_sim"] == pytest.approx((sum(sims_a) + sum(sims_b[:20])) / 40)
    assert s["wer"] == pytest.approx((sum(wer_a) + sum(wer_b[:20])) / 40)  # equal references: the mean WER
    columns = {c: table[c].to_numpy(float) for c in ("speaker_sim", "word_edits", "ref_words")}
    assert s["ci95"]["speaker_sim"] == bootstrap.intervals(columns, ["speaker_sim"], 200, 7)["speaker_sim"]
    lo, hi = s["ci95"]["speaker_sim"]
    assert lo < s["speaker_sim"] < hi


def test_a_system_pooled_with_itself_is_that_system(tmp_path):
    from lipspeech.evaluation import bootstrap

    sims = [0.90 + 0.01 * (i % 7) for i in range(20)]
    write_system(tmp_path, "a", OFFLINE, [1 / 6 if i % 3 == 0 else 0.0 for i in range(20)], sims)
    one, table = goal.pooled(tmp_path, "a")
    assert one == OFFLINE                                 # a single name is the summary as evaluated
    twice, _ = goal.pooled(tmp_path, "a+a")
    columns = {c: table[c].to_numpy(float) for c in ("speaker_sim", "word_edits", "ref_words")}
    assert twice["speaker_sim"] == pytest.approx(sum(sims) / 20)
    assert twice["wer"] == pytest.approx(bootstrap.figure(columns, "wer"))
    assert twice["ci95"]["wer"] == pytest.approx(bootstrap.intervals(columns, ["wer"], 200, 7)["wer"])
