"""The report stage: HTML/Markdown content from fake stores in the shared eval format,
example selection, per-speaker WER, the rule, and the page rendered in headless Chromium."""

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from needs import chromium_binary

from lipspeech.cli import main
from lipspeech.core.config import validate_config
from lipspeech.core.store import Store, StoreMeta, write_store
from lipspeech.data.manifest import shard_name
from lipspeech.evaluation.families import FIGURES
from lipspeech.evaluation.report import (
    DETAIL,
    GROUND_TRUTH,
    GT_VOCODED,
    HEADLINE,
    SystemResult,
    build_report,
    select_examples,
    speaker_wer,
    wav_bytes,
)
from lipspeech.features.mel import mel_shard
from lipspeech.features.prosody import prosody_shard

REPO = Path(__file__).resolve().parents[1]
SR = 16000
SHARDS = 2
EXPERIMENTS = ["ltbs", "no_pitch"]
SYSTEMS = [GROUND_TRUTH, GT_VOCODED, *EXPERIMENTS]
# per-utterance WER of each system, by test utterance (s1_0..s1_3, s2_0..s2_3)
TEST_UTTS = [f"s{s}_{i}" for s in (1, 2) for i in range(4)]
UTT_WER = {
    GROUND_TRUTH: [0.0] * 8,
    GT_VOCODED: [0.0, 0.0, 1 / 6, 0.0, 0.0, 0.0, 0.0, 1 / 6],
    "ltbs": [0.0, 1 / 6, 2 / 6, 0.5, 1 / 6, 0.0, 4 / 6, 2 / 6],
    "no_pitch": [1 / 6, 2 / 6, 2 / 6, 0.5, 2 / 6, 1 / 6, 4 / 6, 3 / 6],
}
SUMMARY = {  # what evaluate would write; the report must show exactly these (formatted)
    GROUND_TRUTH: {"wer": 0.0, "cer": 0.0, "stoi": float("nan"), "estoi": float("nan"), "pesq_nb": float("nan"),
                   "mcd": float("nan"), "f0_mean": 118.04, "f0_std": 12.61, "vuv_error": float("nan"),
                   "energy_mae": float("nan")},
    GT_VOCODED: {"wer": 0.041666, "cer": 0.0213, "stoi": 0.9312, "estoi": 0.8547, "pesq_nb": 3.4049, "mcd": 2.131,
                 "f0_mean": 117.5, "f0_std": 12.9, "vuv_error": 0.0412, "energy_mae": 0.1234},
    "ltbs": {"wer": 0.1707, "cer": 0.0917, "stoi": 0.6123, "estoi": 0.4011, "pesq_nb": 1.5551, "mcd": 4.876,
             "f0_mean": 121.3, "f0_std": 9.97, "vuv_error": 0.1502, "energy_mae": 1.0249},
    "no_pitch": {"wer": 0.2211, "cer": 0.1305, "stoi": 0.6544, "estoi": 0.3876, "pesq_nb": 1.49, "mcd": 5.02,
                 "f0_mean": 117.9, "f0_std": 4.2, "vuv_error": 0.2001, "energy_mae": 1.3},
}
# per-utterance DNSMOS P.808: ltbs is 0.4 below the vocoded ground truth on every utterance (a gap whose
# interval is a point), no_pitch equals ltbs up to +-0.01 that cancels (a difference whose interval holds 0)
UTT_P808 = {
    GROUND_TRUTH: [3.6] * 8,
    GT_VOCODED: [3.0 + 0.05 * i for i in range(8)],
    "ltbs": [2.6 + 0.05 * i for i in range(8)],
    "no_pitch": [2.6 + 0.05 * i + (0.01 if i % 2 else -0.01) for i in range(8)],
}
for _name, _values in UTT_P808.items():
    SUMMARY[_name]["dnsmos_p808"] = float(np.mean(_values))
SUMMARY[GROUND_TRUTH].update(speaker_sim=1.0, speaker_sim_other=0.6123, ci95={"speaker_sim_other": [0.58, 0.64]})
SUMMARY["ltbs"].update(speaker_sim=0.8312, ci95={"wer": [0.1012, 0.2534]})
F0_SHIFT = {GT_VOCODED: 1.0, "ltbs": 1.15, "no_pitch": 1.0}
REF = "bin blue at f two now"


def voice(n_frames: int, f0: float, seed: int, flat: bool = False) -> np.ndarray:
    """(n_frames * 640,) a buzzy vowel-like tone with a gliding F0 and silent edges."""
    n = n_frames * 640
    t = np.arange(n) / SR
    contour = np.full(n, f0) if flat else f0 * (1 + 0.15 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(contour) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.minimum(t - 0.12, t[-1] - 0.12 - t) * 10, 0, 1)
    rng = np.random.default_rng(seed)
    return (0.25 * x * env + 1e-4 * rng.standard_normal(n)).astype(np.float32)


def frames_of(i: int) -> int:
    return 24 + 3 * i  # 0.96 s .. 1.80 s


def build_results(root: Path) -> Path:
    """results/{corpus} with manifest, audio/mel/prosody shards and eval/{system} in the shared format."""
    res = root / "results" / "fake"
    utts = TEST_UTTS + ["s1_train"]
    rows = []
    for i, utt in enumerate(utts):
        spk = utt.split("_")[0]
        rows.append({"utt": utt, "speaker": spk, "split": "train" if "train" in utt else "test", "shard": i % SHARDS,
                     "text": REF.replace("two", str(i)), "duration": frames_of(i) / 25})
    manifest = pd.DataFrame(rows)
    write_store(res / "manifest.parquet", StoreMeta("manifest", "x"), list(manifest["utt"]),
                {c: list(manifest[c]) for c in manifest.columns if c != "utt"})
    base_f0 = {"s1": 110.0, "s2": 180.0}
    gt_audio = {u: voice(frames_of(i), base_f0[u.split("_")[0]], i) for i, u in enumerate(utts)}
    cfg = validate_config({})
    for shard in range(SHARDS):
        mine = [u for i, u in enumerate(utts) if i % SHARDS == shard]
        n = [len(gt_audio[u]) // 640 for u in mine]
        path = res / "audio" / f"{shard_name(shard)}.parquet"
        write_store(path, StoreMeta("decode", "x"), mine, {"n_frames": n, "duration": [k / 25 for k in n]},
                    {"audio": [gt_audio[u] for u in mine]})
        mel_shard(path, cfg["mel"], res / "mel" / path.name, res / "mel" / f"{shard_name(shard)}.rejected.parquet",
                  progress=False, fail_fast=False)
        prosody_shard(path, cfg["prosody"], cfg["mel"], res / "prosody" / path.name,
                      res / "prosody" / f"{shard_name(shard)}.rejected.parquet", progress=False, fail_fast=False)
    for system in SYSTEMS:
        folder = res / "eval" / system
        folder.mkdir(parents=True)
        if system != GROUND_TRUTH:
            audio = [voice(frames_of(i), base_f0[u[:2]] * F0_SHIFT[system], 100 + i, flat=system == "no_pitch")
                     for i, u in enumerate(TEST_UTTS)]
            n = [len(a) // 640 for a in audio]
            write_store(folder / "audio.parquet",
                        StoreMeta("vocode", "x", extra={"system": system, "vocoder": "griffin_lim (32 iterations)"}),
                        TEST_UTTS, {"n_frames": n, "duration": [k / 25 for k in n]}, {"audio": audio})
        metrics = pd.DataFrame({
            "utt": TEST_UTTS, "speaker": [u[:2] for u in TEST_UTTS],
            "ref": [manifest.set_index("utt").at[u, "text"] for u in TEST_UTTS],
            "hyp": [f"{system} says {u}" for u in TEST_UTTS], "wer": UTT_WER[system], "cer": [0.1] * 8,
            **{k: [0.5] * 8 for k in FIGURES if k not in ("wer", "cer")},
            "dnsmos_p808": UTT_P808[system],
        })
        metrics.to_parquet(folder / "metrics.parquet")
        summary = {"system": system, "n": 8, **SUMMARY[system], "asr": "pocketsphinx en-us (test)",
                   "chance_wer": 0.8123}
        (folder / "summary.json").write_text(json.dumps(summary))
    return res


def report_config(**report) -> dict:
    cfg = validate_config({"corpus": {"name": "fake"}, "report": report,
                           "experiments": [{"name": "ltbs", "description": "the full model"},
                                           {"name": "no_pitch", "overrides": {"use_pitch": False}}]})
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One fake results folder and its default report (3 examples x 4 systems)."""
    root = tmp_path_factory.mktemp("report")
    res = build_results(root)
    data = build_report(res, report_config(), res / "report.html", res / "report.md", json_out=res / "report.json")
    return res, data, (res / "report.html").read_text(), (res / "report.md").read_text()


class DomReader(HTMLParser):
    """Attributes of audio/img/tr/body elements and the text of table cells by row."""

    def __init__(self):
        super().__init__()
        self.audio, self.img, self.rows, self.body = [], [], [], {}
        self._row = None
        self._in_ci = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.audio.append(attrs)
        elif tag == "img":
            self.img.append(attrs)
        elif tag == "body":
            self.body = attrs
        elif tag == "tr" and "data-system" in attrs:
            self._row = {"system": attrs["data-system"], "cells": [], "ci": []}
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")
            self._row["ci"].append("")
        elif tag == "span" and attrs.get("class") == "ci":
            self._in_ci = True

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "span":
            self._in_ci = False

    def handle_data(self, data):
        if self._row is not None and self._row["cells"]:
            self._row["ci" if self._in_ci else "cells"][-1] += data


def parse(page: str, table: str | None = None) -> DomReader:
    """The page's elements, or only those of the table with id ``table``."""
    reader = DomReader()
    if table is not None:
        page = re.search(rf'<table id="{table}">.*?</table>', page).group(0)
    reader.feed(page)
    return reader


def decode_wav(uri: str) -> tuple[int, np.ndarray]:
    assert uri.startswith("data:audio/wav;base64,")
    with wave.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_metrics_table_rows_and_numbers(built):
    res, data, page, _ = built
    table = parse(page, "metrics").rows
    assert [r["system"] for r in table] == SYSTEMS
    labels = [r["cells"][0] for r in table]
    assert labels == ["ground truth audio", "ground-truth mel through the vocoder", "ltbs (full model)",
                      "no_pitch (w/o pitch predictor)"]
    header = re.search(r"<table id=\"metrics\"><thead>(.*?)</thead>", page).group(1)
    for needle in ("WER (%) ↓", "CER (%) ↓", "STOI ↑", "ESTOI ↑", "DNSMOS P.808 ↑", "DNSMOS OVRL ↑",
                   "P.808 gap to vocoded ↑", "OVRL gap to vocoded ↑", "speaker sim ↑"):
        assert needle in header
    detail = re.search(r"<table id=\"metrics-detail\"><thead>(.*?)</thead>", page).group(1)
    for needle in ("PESQ-nb ↑", "MCD (dB) ↓", "F0 mean (Hz) ≈GT", "F0 std (Hz) ≈GT", "V/UV error (%) ↓",
                   "energy MAE ↓", "DNSMOS SIG ↑", "DNSMOS BAK ↑"):
        assert needle in detail
    cells = {r["system"]: dict(zip(["n", *HEADLINE], r["cells"][1:])) for r in table}
    ci = {r["system"]: dict(zip(["n", *HEADLINE], r["ci"][1:])) for r in table}
    # no_pitch's WER differs from the full model's on every utterance in one direction: starred
    assert cells["ltbs"] == {"n": "8", "wer": "17.07", "cer": "9.17", "stoi": "0.612", "estoi": "0.401",
                             "dnsmos_p808": "2.77", "dnsmos_ovrl": "—", "gap_dnsmos_p808": "-0.40",
                             "gap_dnsmos_ovrl": "+0.00", "speaker_sim": "0.831"}
    assert cells["no_pitch"]["wer"] == "22.11*" and cells["no_pitch"]["dnsmos_p808"] == "2.77"
    assert ci["ltbs"]["wer"] == "[10.12, 25.34]" and ci["ltbs"]["gap_dnsmos_p808"] == "[-0.40, -0.40]"
    assert ci["no_pitch"]["wer"] == ""  # its summary has no interval: none is invented
    assert cells[GT_VOCODED]["wer"] == "4.17" and cells[GT_VOCODED]["gap_dnsmos_p808"] == "—"
    # NaN (a metric that does not apply to the ground truth against itself) is a dash
    assert cells[GROUND_TRUTH]["stoi"] == "—" and cells[GROUND_TRUTH]["speaker_sim"] == "1.000"
    detail_cells = {r["system"]: dict(zip(["n", *DETAIL], r["cells"][1:])) for r in parse(page, "metrics-detail").rows}
    assert detail_cells["ltbs"] | {"dnsmos_sig": "", "dnsmos_bak": ""} == {
        "n": "8", "pesq_nb": "1.56", "mcd": "4.88", "f0_mean": "121.3", "f0_std": "10.0", "vuv_error": "15.0",
        "energy_mae": "1.02", "dnsmos_sig": "", "dnsmos_bak": ""}
    assert detail_cells[GROUND_TRUTH]["pesq_nb"] == "—" and detail_cells[GROUND_TRUTH]["f0_mean"] == "118.0"
    assert detail_cells[GT_VOCODED]["energy_mae"] == "0.123"
    # bold = best experiment: ltbs wins WER; no_pitch wins STOI and F0 mean (closest to 118.04), ltbs F0 std
    row_html = {s: "".join(re.findall(rf'<tr [^>]*data-system="{s}">(.*?)</tr>', page)) for s in SYSTEMS}
    bolded = {s: set(re.findall(r'data-metric="(\w+)"><b>', h)) for s, h in row_html.items()}
    assert bolded[GROUND_TRUTH] == bolded[GT_VOCODED] == set()  # references do not compete
    assert bolded["ltbs"] >= {"wer", "cer", "estoi", "pesq_nb", "mcd", "f0_std", "vuv_error", "energy_mae"}
    assert {"stoi", "f0_mean"} <= bolded["no_pitch"] and "wer" not in bolded["no_pitch"]
    # header facts
    assert "pocketsphinx en-us (test)" in page and "8 (2 speakers)" in page and data.n_test == 8
    assert "griffin_lim (32 iterations)" in page  # the vocoder, in what the gt_vocoded row is
    assert "without pitch predictor" in page and "the full model" in page
    assert "Speaker sim floor: the ground truth against a different speaker&#x27;s ground truth scores 0.612 " \
           "[0.580, 0.640]" in page


def test_differences_to_the_full_model(built, tmp_path):
    res, data, page, md = built
    diff = re.search(r'<table id="differences">.*?</table>', page).group(0)
    row = {m: re.search(rf'<tr data-metric="{m}">(.*?)</tr>', diff).group(1) for m in ("wer", "dnsmos_p808")}
    # WER: +10.42 points (from the utterances), every resample above 0 -> bold and starred;
    # DNSMOS: 0 +- noise -> interval holds 0
    assert "<b>+10.42*</b>" in row["wer"]
    assert "<b>" not in row["dnsmos_p808"] and "+0.00" in row["dnsmos_p808"]
    numbers = json.loads((res / "report.json").read_text())
    wer = numbers["vs_baseline"]["no_pitch"]["wer"]
    assert numbers["baseline"] == "ltbs" and wer["significant"] and wer["ci95"][0] > 0 and wer["n"] == 8
    assert wer["diff"] == pytest.approx(np.mean(UTT_WER["no_pitch"]) - np.mean(UTT_WER["ltbs"]))
    p808 = numbers["vs_baseline"]["no_pitch"]["dnsmos_p808"]
    assert not p808["significant"] and p808["ci95"][0] < 0 < p808["ci95"][1]
    gap = numbers["gap_to_vocoded"]["ltbs"]["dnsmos_p808"]
    assert gap["diff"] == pytest.approx(-0.4) and gap["significant"]
    by_name = {s["name"]: s for s in numbers["systems"]}
    assert by_name["ltbs"]["figures"]["gap_dnsmos_p808"] == pytest.approx(-0.4)
    assert by_name["ltbs"]["ci95"]["wer"] == [0.1012, 0.2534]
    assert "## Differences to the full model: ltbs (full model)" in md and "**+10.42*** [" in md
    # deterministic for a seed: a second report gives the same numbers
    again = build_report(res, report_config(n_examples=0), tmp_path / "r.html", tmp_path / "r.md",
                         json_out=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["vs_baseline"] == numbers["vs_baseline"]
    assert again.comparison == data.comparison


def test_examples_audio_and_images(built):
    res, data, page, _ = built
    dom = parse(page)
    # 3 examples x 4 systems, every one a 16-bit WAV equal to its source (to the 16-bit step)
    assert len(data.examples) == 3 and len(dom.audio) == 3 * len(SYSTEMS)
    gt = {u: Store(res / "audio" / f"{shard_name(i % SHARDS)}.parquet") for i, u in enumerate(TEST_UTTS)}
    for attrs in dom.audio:
        sr, pcm = decode_wav(attrs["src"])
        utt, system = attrs["data-utt"], attrs["data-system"]
        if system == GROUND_TRUTH:
            store = gt[utt]
        else:
            store = Store(res / "eval" / system / "audio.parquet")
        source = store.array("audio", store.row_index()[utt])
        assert sr == SR and len(pcm) == len(source)
        assert np.max(np.abs(pcm / 32767.0 - source)) <= 1.0 / 32767
    assert len(dom.img) == 3
    for attrs in dom.img:
        png = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert attrs["src"].startswith("data:image/png;base64,") and png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width == 7 * 80 and 400 < height < 600  # 7 in at 80 dpi; 4 mel panels + F0: about 5.4 in
    # reference text and every system's transcript beside the players
    for ex in data.examples:
        section = re.search(rf'<section class="example" data-utt="{ex.utt}">(.*?)</section>', page).group(1)
        assert REF.split()[0] in section and ex.text in section
        for s in SYSTEMS:
            assert f"{s} says {ex.utt}" in section
    # the F0 the plots use: the systems' from their audio, the ground truth's from the prosody store
    ex = data.examples[0]
    f0 = {t.system: np.nanmedian(t.f0) for t in ex.tracks}
    assert f0["ltbs"] == pytest.approx(1.15 * f0[GROUND_TRUTH], rel=0.05)
    assert f0[GT_VOCODED] == pytest.approx(f0[GROUND_TRUTH], rel=0.05)


def test_page_is_self_contained_and_small(built):
    res, _, page, _ = built
    assert not re.search(r"https?://|<link|@import|url\(", page)
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:")
    assert "<style>" in page and "<script>" in page
    # 12 players of 1-1.5 s and 3 figures: well under a megabyte and a half
    assert (res / "report.html").stat().st_size < 1.5e6
    assert not list(res.glob(".report.*"))  # atomic writes leave no temporary files


def test_markdown_summary(built):
    res, data, _, md = built
    lines = md.splitlines()
    headers = [ln for ln in lines if ln.startswith("| system")]
    assert "WER (%) ↓" in headers[0] and "P.808 gap to vocoded ↑" in headers[0] and "F0 mean (Hz) ≈GT" in headers[1]
    table = [ln for ln in lines if ln.startswith("| ")]
    assert table[2].startswith("| ground truth audio | 8 | 0.00 | 0.00 | — |")
    assert table[3].startswith("| ground-truth mel through the vocoder | 8 | 4.17 |")
    assert table[4].startswith("| ltbs (full model) | 8 | **17.07** [10.12, 25.34] | **9.17** | 0.612 |")
    assert table[5].startswith("| no_pitch (w/o pitch predictor) | 8 | 22.11* | 13.05 | **0.654** |")
    assert "| **-0.40** [-0.40, -0.40] |" in table[4]  # a tie with no_pitch: both bold
    assert "- **no_pitch (w/o pitch predictor)**: preset small; without pitch predictor." in md
    # make demo prints the Metrics section: both tables and the legend are in it
    metrics = md.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    assert metrics.count("| system") == 2 and "95 % interval" in metrics and "speaker sim floor" in metrics
    assert "chance level: a random sentence of the ASR's grammar scores WER 81.23%" in md
    assert "<th>chance WER</th><td>81.23% (random sentences of the ASR&#x27;s grammar)</td>" in built[2]
    assert f"`{data.cfg_hash}`" in md and "lipspeech 0.1.0, git commit" in md
    assert "## WER per speaker (%)" in md and md.count("says") == 3 * len(SYSTEMS)


def test_speaker_wer_weights_utterances_by_reference_words():
    metrics = pd.DataFrame({"speaker": ["a", "a", "b", "b"], "ref": ["one two", "one two three four", "x", None],
                            "wer": [0.5, 0.25, 1.0, 0.7]})
    out = speaker_wer(metrics)
    # a: (0.5*2 + 0.25*4) / 6 errors per word; b: the empty reference weighs nothing
    assert out == {"a": (pytest.approx(2 / 6), 2), "b": (pytest.approx(1.0), 2)}


def test_speaker_table_in_page(built):
    _, data, page, _ = built
    # every reference has 6 words, so the weighted WER is the plain mean over the speaker's utterances
    expected = {spk: np.mean(UTT_WER["ltbs"][k:k + 4]) for spk, k in (("s1", 0), ("s2", 4))}
    assert data.speakers["ltbs"] == {"s1": (pytest.approx(expected["s1"]), 4), "s2": (pytest.approx(expected["s2"]), 4)}
    row = re.search(r"<tr><td>s2</td>(.*?)</tr>", page).group(1)
    assert f"{expected['s2'] * 100:.2f}" in row


def _fake_system(name, kind, wers):
    utts = [f"u{i}" for i in range(len(wers))]
    return SystemResult(name, name, kind, "", {"wer": 0.0}, pd.DataFrame({"utt": utts, "wer": wers}).set_index("utt",
                                                                                                            drop=False))


def test_example_selection_is_deterministic():
    systems = [_fake_system(GROUND_TRUTH, "reference", [0.0] * 7),
               _fake_system("a", "experiment", [0.9, 0.1, 0.5, 0.3, 0.4, float("nan"), 0.0]),
               _fake_system("b", "experiment", [0.7, 0.1, 0.3, 0.3, 0.4, float("nan"), 0.2])]
    cands = [f"u{i}" for i in range(7)][::-1]
    # means: u0 .8, u1 .1, u2 .4, u3 .3, u4 .4, u5 nan, u6 .1; median .35 -> u3 (.05), then u2/u4 (.05) by id
    assert select_examples(cands, systems, 3, "median_wer") == ["u2", "u3", "u4"]
    assert select_examples(cands, systems, 2, "sorted") == ["u0", "u1"]
    assert select_examples(cands, systems, 0, "median_wer") == []
    assert select_examples(cands, systems, 50, "median_wer") == sorted(cands)  # the NaN one comes last, but comes
    with pytest.raises(ValueError):
        select_examples(cands, systems, 1, "best")


def test_wav_bytes_is_16bit_pcm_and_clips():
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0, np.nan], dtype=np.float32)
    sr, pcm = decode_wav("data:audio/wav;base64," + base64.b64encode(wav_bytes(x)).decode())
    assert sr == SR and pcm.tolist() == [0, 16384, -16384, 32767, -32767, 0]


def test_missing_system_is_a_noted_row_not_a_crash(built, tmp_path):
    res, _, _, _ = built
    data = build_report(res, report_config(n_examples=1, selection="sorted"), tmp_path / "r.html", tmp_path / "r.md",
                        systems=[GROUND_TRUTH, "ltbs", "ghost"])
    page = (tmp_path / "r.html").read_text()
    dom, rows = parse(page), parse(page, "metrics").rows
    assert [r["system"] for r in rows] == [GROUND_TRUTH, "ltbs", "ghost"]
    assert rows[2]["cells"][1:] == ["—"] * (1 + len(HEADLINE))
    assert any("ghost" in n and "summary.json" in n for n in data.notes) and "<h2>Notes</h2>" in page
    # the example still has the players of the systems that exist
    assert [e.utt for e in data.examples] == ["s1_0"] and len(dom.audio) == 2


def test_cli(built, tmp_path, capsys):
    res, _, _, _ = built
    params = json.dumps({"corpus": {"name": "fake"}, "report": {"n_examples": 1, "selection": "sorted"},
                         "experiments": [{"name": "ltbs"}, {"name": "no_pitch"}]})
    # every file on the command line, as the rule gives them
    shards = [f"{shard_name(i)}.parquet" for i in range(SHARDS)]
    args = ["--manifest", str(res / "manifest.parquet")]
    for folder in ("audio", "mel", "prosody"):
        args += [f"--{folder}", *(str(res / folder / s) for s in shards)]
    for name in SYSTEMS:
        ev = res / "eval" / name
        args += ["--system", name, str(ev / "summary.json"), str(ev / "metrics.parquet")]
        args += [str(ev / "audio.parquet")] if name != GROUND_TRUTH else []
    assert main(["report", "--params", params, *args, "--html", str(tmp_path / "r.html"),
                 "--md", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    assert "4 systems, 1 examples, 0 notes" in capsys.readouterr().out
    assert len(parse((tmp_path / "r.html").read_text()).audio) == len(SYSTEMS)
    assert (tmp_path / "r.md").read_text().startswith("# lipspeech report: fake")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json", "r.md"]  # nothing temporary left


def test_rule_inputs(built, tmp_path):
    """The report rule finds every input it declares in the shared layout (evaluate's outputs given)."""
    res, _, _, _ = built
    work = tmp_path / "wf"
    shutil.copytree(res, work / "results" / "fake", ignore=shutil.ignore_patterns("report.*"))
    for exp in ("ltbs", "no_pitch"):  # the report also reads the checkpoints (their commits): older than all else
        ckpt = work / "results" / "fake" / "models" / exp / "ckpt" / "best.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        os.utime(ckpt, (0, 0))
    config = {"corpus": {"name": "fake"}, "manifest": {"shards": SHARDS}, "experiments": [{"name": "ltbs"},
                                                                                         {"name": "no_pitch"}]}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "results/fake/report.html", "-n", "-p", "-s", str(REPO / "Snakefile"),
         "-d", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1", "--allowed-rules", "report"],
        capture_output=True, text=True, cwd=work,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert re.search(r"^report\s+1\s*$", text, re.M) and "--md results/fake/report.md" in text.replace("'", "")
    flat = text.replace("'", "")
    assert "--system ltbs results/fake/eval/ltbs/summary.json results/fake/eval/ltbs/metrics.parquet " \
           "results/fake/eval/ltbs/audio.parquet" in flat
    assert "--model ltbs=results/fake/models/ltbs/ckpt/best.pt" in flat


# ------------------------------------------------------------------------- headless Chromium

def test_page_renders_in_headless_chromium(built, tmp_path):
    """Every player decodes its WAV to the right duration and every PNG decodes, in a real browser."""
    binary = chromium_binary()
    if binary is None:
        if os.geteuid() == 0:
            pytest.fail("chromium is not installed: run scripts/install-system-deps.sh (apt-get install chromium)")
        pytest.skip("chromium is not installed and we are not root: sudo apt-get install chromium")
    res, data, page, _ = built
    start = time.monotonic()
    proc = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--mute-audio", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom",
         (res / "report.html").as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = parse(proc.stdout)
    assert dom.body.get("data-media-checked") == str(3 * len(SYSTEMS)), (
        f"not every audio element loaded within the budget ({elapsed:.1f} s): {proc.stderr[-1000:]}")
    expected = {}
    for ex in data.examples:
        for t in ex.tracks:
            expected[(ex.utt, t.system)] = len(t.audio) / SR
    assert len(dom.audio) == len(expected)
    for attrs in dom.audio:
        duration = attrs.get("data-duration")
        assert duration not in (None, "error"), attrs.get("data-system")
        assert math.isfinite(float(duration)) and float(duration) > 0
        assert float(duration) == pytest.approx(expected[(attrs["data-utt"], attrs["data-system"])], abs=0.05)
    assert len(dom.img) == 3 and all(int(a["data-natural-width"]) == 560 for a in dom.img)
    rows = parse(proc.stdout, "metrics").rows
    assert [r["system"] for r in rows] == SYSTEMS
    assert [r["cells"][0] for r in rows][:2] == ["ground truth audio", "ground-truth mel through the vocoder"]
