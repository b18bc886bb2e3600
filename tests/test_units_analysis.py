"""The units-analysis stage: phone alignments (SynthGRID timings, TextGrid files), the layer x k grid
of unit quality on a real tiny SynthGRID corpus, its report section, and its place in the DAG."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lipspeech.core.config import default_section
from lipspeech.core.store import Store
from lipspeech.features.alignments import (
    AlignmentError,
    find_textgrid,
    normalise_phone,
    synthgrid_alignment,
    textgrid_alignment,
)
from lipspeech.features.unit_quality import SILENCE

BIN = Path(sys.executable).parent
#: what the stage reads the alignments with (the config's default)
STRIP_STRESS = default_section("units_analysis")["strip_stress"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_textgrid(path: Path, intervals, tier="phones", xmax=None):
    """A long-format TextGrid with one interval tier, written as Praat does (which has no
    zero-length intervals; espeak-ng's timing has some)."""
    intervals = [(a, b, label) for a, b, label in intervals if b > a]
    xmax = intervals[-1][1] if xmax is None else xmax
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
             "tiers? <exists>", "size = 1", "item []:", "    item [1]:", '        class = "IntervalTier"',
             f'        name = "{tier}"', "        xmin = 0", f"        xmax = {xmax}",
             f"        intervals: size = {len(intervals)}"]
    for i, (a, b, label) in enumerate(intervals, 1):
        lines += [f"        intervals [{i}]:", f"            xmin = {a}", f"            xmax = {b}",
                  f'            text = "{label}"']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_phone_labels_are_normalised():
    labels = ["AH0", "AH1", "", "sil", "sp", "spn", "_:", "_", "t#", "u:"]
    assert [normalise_phone(p, strip_stress=True) for p in labels] == \
        ["AH", "AH", SILENCE, SILENCE, SILENCE, SILENCE, SILENCE, SILENCE, "t#", "u:"]
    assert normalise_phone("AH0", strip_stress=False) == "AH0"


def test_textgrid_reader(tmp_path):
    intervals = [(0, 0.3, ""), (0.3, 0.42, "B"), (0.42, 0.6, "IH1"), (0.6, 0.75, "N"), (0.75, 1.0, "sil")]
    write_textgrid(tmp_path / "s1" / "bbaf2n.TextGrid", intervals)
    path = find_textgrid(tmp_path, "s1", "bbaf2n")
    assert path == tmp_path / "s1" / "bbaf2n.TextGrid"
    phones, starts, ends = textgrid_alignment(path, "phones", strip_stress=True)
    assert phones == [SILENCE, "B", "IH", "N", SILENCE]
    np.testing.assert_allclose(starts, [0, 0.3, 0.42, 0.6, 0.75])
    np.testing.assert_allclose(ends, [0.3, 0.42, 0.6, 0.75, 1.0])
    write_textgrid(tmp_path / "flat.TextGrid", intervals)
    assert find_textgrid(tmp_path, "s9", "flat") == tmp_path / "flat.TextGrid"
    assert find_textgrid(tmp_path, "s1", "missing") is None
    with pytest.raises(AlignmentError, match="no tier 'phones'.*words"):
        write_textgrid(tmp_path / "w.TextGrid", intervals, tier="words")
        textgrid_alignment(tmp_path / "w.TextGrid", "phones", strip_stress=True)
    (tmp_path / "bad.TextGrid").write_text("not a textgrid\n")
    with pytest.raises(AlignmentError, match="bad.TextGrid: not a readable TextGrid"):
        textgrid_alignment(tmp_path / "bad.TextGrid", "phones", strip_stress=True)
    write_textgrid(tmp_path / "quiet.TextGrid", [(0, 1.0, "sil")])
    with pytest.raises(AlignmentError, match="only silence"):
        textgrid_alignment(tmp_path / "quiet.TextGrid", "phones", strip_stress=True)


def lipspeech(*args):
    proc = subprocess.run([str(BIN / "lipspeech"), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A real tiny SynthGRID corpus (2 speakers x 8 utterances), its manifest (half train, half
    test), one decoded audio store and the pipeline's MFCC units of it."""
    from lipspeech.data.synth.corpus import generate_corpus

    tmp = tmp_path_factory.mktemp("ua")
    generate_corpus({"seed": 5, "speakers": ["s1", "s2"], "utterances_per_speaker": 8,
                     "faces": ["astronaut"], "head_motion": 0, "lighting": 0}, tmp / "raw", threads=2, progress=False)
    params = json.dumps({"corpus": {"name": "ua", "kind": "synthgrid", "split_ratios": [0.5, 0.0, 0.5]},
                         "manifest": {"shards": 1}, "kmeans": {"k": 12}})
    lipspeech("manifest", "--params", params, "--root", str(tmp / "raw"), "--out", str(tmp / "manifest.parquet"),
              "--rejected", str(tmp / "manifest.rejected.parquet"), "--threads", "1")
    lipspeech("decode", "--params", params, "--manifest", str(tmp / "manifest.parquet"), "--shard", "0",
              "--out", str(tmp / "audio.parquet"), "--rejected", str(tmp / "audio.rejected.parquet"), "--threads", "1",
              "--no-progress")
    lipspeech("ssl-features", "--params", params, "--audio", str(tmp / "audio.parquet"), "--out", str(tmp / "ssl.parquet"),
              "--rejected", str(tmp / "ssl.rejected.parquet"), "--no-progress")
    lipspeech("kmeans-fit", "--params", params, "--manifest", str(tmp / "manifest.parquet"), "--ssl",
              str(tmp / "ssl.parquet"), "--out", str(tmp / "centroids.npy"), "--json", str(tmp / "kmeans.json"),
              "--no-progress")
    lipspeech("units", "--params", params, "--ssl", str(tmp / "ssl.parquet"), "--centroids", str(tmp / "centroids.npy"),
              "--out", str(tmp / "units.parquet"), "--rejected", str(tmp / "units.rejected.parquet"), "--no-progress")
    manifest = Store(tmp / "manifest.parquet").df
    assert set(manifest["split"]) == {"train", "test"}
    return tmp, params, manifest


def analyse(tmp, params, out_dir, *extra):
    out = lipspeech("units-analysis", "--params", params, "--manifest", str(tmp / "manifest.parquet"),
                    "--audio", str(tmp / "audio.parquet"), "--out", str(out_dir / "quality.parquet"),
                    "--rejected", str(out_dir / "rejected.parquet"), "--threads", "1", "--no-progress", *extra)
    return out, pq.read_table(out_dir / "quality.parquet").to_pandas(), pq.read_table(out_dir / "rejected.parquet")


def test_analysis_on_synthgrid_timings_and_the_same_from_textgrids(corpus, tmp_path):
    tmp, params, manifest = corpus
    ua = {"units_analysis": {"k": [4, 12], "sample_frames": 100000}}
    params = json.dumps({**json.loads(params), **ua})
    out, table, rejected = analyse(tmp, params, tmp_path / "a", "--raw", str(tmp / "raw"), "--units",
                                   str(tmp / "units.parquet"))
    assert "highest PNMI" in out and rejected.num_rows == 0
    grid = table[table["kind"] == "grid"].set_index("k")
    assert list(grid.index) == [4, 12] and set(grid["layer"]) == {-1} and set(grid["source"]) == {"mfcc"}
    n_test = int((manifest["split"] == "test").sum())
    assert set(grid["utterances"]) == {n_test}
    for col in ("phone_purity", "cluster_purity", "pnmi"):
        assert ((grid[col] > 0) & (grid[col] <= 1)).all()
    # more clusters: purer units, phones split over more of them, more information about the phone
    assert grid.at[12, "phone_purity"] > grid.at[4, "phone_purity"]
    assert grid.at[12, "cluster_purity"] < grid.at[4, "cluster_purity"]
    assert grid.at[12, "pnmi"] > grid.at[4, "pnmi"] > 0.1
    pipeline = table[table["kind"] == "pipeline"].iloc[0]
    assert pipeline["k"] == 12 and pipeline["frames"] == grid.at[12, "frames"] and 0.1 < pipeline["pnmi"] <= 1

    # the generator's timings as TextGrid files (MFA's layout): the same figures; one utterance
    # without its file is rejected with the reason and the others are still scored
    folder = tmp_path / "tg"
    test = manifest[manifest["split"] == "test"]
    for _, row in test.iloc[1:].iterrows():
        name = Path(row["video_path"]).stem
        phones, starts, ends = synthgrid_alignment(tmp / "raw", row["speaker"], name, STRIP_STRESS)
        write_textgrid(folder / row["speaker"] / f"{name}.TextGrid",
                       [(a, b, "sil" if p == SILENCE else p) for p, a, b in zip(phones, starts, ends)])
    tg = json.dumps({**json.loads(params), "units_analysis": {**ua["units_analysis"], "alignments": str(folder)}})
    _, table_tg, rejected_tg = analyse(tmp, tg, tmp_path / "b")
    assert rejected_tg.column("utt").to_pylist() == [test.iloc[0]["utt"]]
    assert "no TextGrid" in rejected_tg.column("reason")[0].as_py()
    assert set(table_tg["utterances"]) == {n_test - 1}
    # all of them: identical numbers to the generator's own timings
    first = test.iloc[0]
    name = Path(first["video_path"]).stem
    phones, starts, ends = synthgrid_alignment(tmp / "raw", first["speaker"], name, STRIP_STRESS)
    write_textgrid(folder / f"{name}.TextGrid", [(a, b, p) for p, a, b in zip(phones, starts, ends)])
    _, table_all, rejected_all = analyse(tmp, tg, tmp_path / "c")
    assert rejected_all.num_rows == 0
    cols = ["k", "phone_purity", "cluster_purity", "pnmi", "frames"]
    np.testing.assert_allclose(table_all[cols].to_numpy(float), table[table["kind"] == "grid"][cols].to_numpy(float))


def test_shuffled_alignments_carry_no_information(corpus, tmp_path):
    """Each test utterance scored against another utterance's phones: PNMI falls towards chance
    (what is left: small-sample bias, and GRID sentences sharing their structure)."""
    tmp, params, manifest = corpus
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    folder = tmp_path / "shuffled"
    for i, row in test.iterrows():
        other = test.iloc[(i + 1) % len(test)]
        phones, starts, ends = synthgrid_alignment(tmp / "raw", other["speaker"], Path(other["video_path"]).stem,
                                                   STRIP_STRESS)
        write_textgrid(folder / f"{Path(row['video_path']).stem}.TextGrid",
                       [(a, b, p) for p, a, b in zip(phones, starts, ends)])
    ua = {"k": [12], "alignments": str(folder)}
    _, shuffled, _ = analyse(tmp, json.dumps({**json.loads(params), "units_analysis": ua}), tmp_path / "s")
    _, true, _ = analyse(tmp, json.dumps({**json.loads(params), "units_analysis": {"k": [12]}}), tmp_path / "t",
                         "--raw", str(tmp / "raw"))
    print(f"\nPNMI k=12: true alignments {true['pnmi'][0]:.3f}, shuffled {shuffled['pnmi'][0]:.3f}")
    assert shuffled["pnmi"][0] < true["pnmi"][0] - 0.15


def test_report_section(corpus, tmp_path):
    from lipspeech.evaluation.report.figures import data_uri
    from lipspeech.evaluation.report.markdown import _md_table
    from lipspeech.evaluation.report.units import load_units_analysis, units_html, units_markdown, units_numbers

    tmp, params, _ = corpus
    params = json.dumps({**json.loads(params), "units_analysis": {"k": [4, 12]}})
    analyse(tmp, params, tmp_path, "--raw", str(tmp / "raw"), "--units", str(tmp / "units.parquet"))
    ua = load_units_analysis(tmp_path / "quality.parquet")
    page = units_html(ua, 40, data_uri)
    assert "<h2>Unit analysis</h2>" in page and "data:image/png;base64," in page
    assert page.count("<tr>") == 1 + 3  # header, k=4, k=12, the pipeline's units
    md = "\n".join(units_markdown(ua, _md_table))
    assert "| mfcc MFCC | 12 |" in md and "pipeline's units store" in md
    numbers = units_numbers(ua)
    assert numbers["split"] == "test" and [r["k"] for r in numbers["rows"]] == [4, 12, 12]
    json.dumps(numbers, allow_nan=False)
    with pytest.raises(Exception, match="not a units-analysis table"):
        load_units_analysis(tmp / "manifest.parquet")
