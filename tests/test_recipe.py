"""The training recipe's pieces against known answers: time masking, the weight average,
early stopping, learning-curve snapshots (and that each leaves the run exactly resumable)."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lipspeech.models import model_config
from lipspeech.models.batch import Utterance
from lipspeech.training import load_checkpoint, load_model, synthetic_utterances, train, train_config
from lipspeech.training.data import augment, lead_in, time_mask
from lipspeech.training.ema import WeightAverage
from lipspeech.training.loop import LoopSettings, Task, run_loop

QUIET = {"progress": False, "tensorboard": False}
#: the synthetic utterances' sizes: the tiny model's
DIMS = {key: model_config("tiny")[key] for key in ("n_mels", "n_units")}


def test_time_mask_replaces_spans_by_the_mean_frame():
    t = 100  # 4 s at 25 fps: 4 spans of up to 10 frames at 1 per second
    video = np.stack([np.full((4, 4), 2 * i, np.uint8) for i in range(t)])  # frame i is all 2i
    mean = int(round(video.mean()))  # 99
    rng = np.random.default_rng(5)
    out = time_mask(video, rng, max_frames=10, per_second=1.0)
    # the same draws by hand: 4 (length, start) pairs
    check = np.random.default_rng(5)
    expected = video.copy()
    for _ in range(4):
        length = int(check.integers(0, 11))
        start = int(check.integers(0, t - length + 1))
        expected[start:start + length] = mean
    np.testing.assert_array_equal(out, expected)
    masked = (out != video).any(axis=(1, 2))
    assert 0 < masked.sum() <= 40 and (out[masked] == mean).all()
    assert out is not video and (video[:, 0, 0] == 2 * np.arange(t)).all()  # the input is untouched
    # a short clip still gets one span, never longer than the clip
    short = time_mask(video[:3], np.random.default_rng(0), max_frames=10, per_second=1.0)
    assert short.shape == (3, 4, 4)


def test_time_masking_off_leaves_the_augmentation_as_it_was():
    item = synthetic_utterances(1, 30, seed=3, **DIMS)[0]
    plain = augment(item, 1, 2, 3, 4, True, True)
    off = augment(item, 1, 2, 3, 4, True, True, 0, 1.0)
    on = augment(item, 1, 2, 3, 4, True, True, 8, 2.0)
    np.testing.assert_array_equal(plain.video, off.video)
    # on: the same crop and flip (drawn first), then some frames replaced
    differ = (on.video != plain.video).any(axis=(1, 2))
    assert 0 < differ.sum() < 30
    assert isinstance(on, Utterance) and on.video.shape == plain.video.shape


def test_a_lead_in_repeats_every_streams_opening_in_step():
    item = synthetic_utterances(1, 12, seed=4, **DIMS)[0]
    longer = lead_in(item, 5)
    for name, per_frame in (("video", 1), ("mel", 4), ("units", 2), ("pitch", 1), ("voiced", 1), ("energy", 1)):
        x, y = np.asarray(getattr(item, name)), getattr(longer, name)
        k = 5 * per_frame
        assert len(y) == len(x) + k, name
        np.testing.assert_array_equal(y[k:], x)  # the clip itself, untouched
        np.testing.assert_array_equal(y[:k], np.repeat(x[:1], k, axis=0))  # its opening, repeated
    assert longer.n_frames == 17 and longer.utt == item.utt
    assert lead_in(item, 0) is item
    bare = Utterance("v", np.zeros((3, 96, 96), np.uint8))  # inference items carry no targets
    assert lead_in(bare, 2).mel is None and lead_in(bare, 2).n_frames == 5


def test_a_lead_in_is_drawn_last_and_off_leaves_the_augmentation_as_it_was():
    item = synthetic_utterances(1, 30, seed=3, **DIMS)[0]
    plain = augment(item, 1, 2, 3, 4, True, True, 8, 2.0)
    off = augment(item, 1, 2, 3, 4, True, True, 8, 2.0, 0)
    np.testing.assert_array_equal(plain.video, off.video)
    drawn = [augment(item, 1, 2, 3, i, True, True, 0, 1.0, 10) for i in range(20)]
    extra = [d.n_frames - 30 for d in drawn]
    assert min(extra) >= 0 and max(extra) <= 10 and len(set(extra)) > 3
    for i, d in enumerate(drawn):  # the same crop and flip as without it, behind the drawn opening
        np.testing.assert_array_equal(d.video[extra[i]:], augment(item, 1, 2, 3, i, True, True).video)
        assert len(d.mel) == 4 * d.n_frames and len(d.units) == 2 * d.n_frames
    again = augment(item, 1, 2, 3, 7, True, True, 0, 1.0, 10)
    np.testing.assert_array_equal(again.mel, drawn[7].mel)  # a pure function of the seeds


def test_weight_average_follows_the_known_recursion():
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage(net, decay=0.5)
    expected, values = 0.0, [1.0, 2.0, 4.0, 8.0]
    for n, value in enumerate(values):
        with torch.no_grad():
            net.weight.fill_(value)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.1818, 0.25, 0.3077
        expected = d * expected + (1 - d) * value
        avg.update(net)
    assert avg.updates == 4
    assert float(avg.model.weight) == pytest.approx(expected, rel=1e-6)
    assert float(net.weight.detach()) == 8.0 and not avg.model.weight.requires_grad
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, 1.0)


def test_buffers_are_copied_not_averaged():
    net = torch.nn.BatchNorm1d(2)
    avg = WeightAverage(net, decay=0.99)
    net.running_mean.fill_(3.0)
    avg.update(net)
    assert avg.model.running_mean.tolist() == [3.0, 3.0]


class _Scripted(Task):
    """A task whose validations return the given values (the loop's early stopping, alone)."""

    columns = ("step", "split", "lr", "v")
    best_metric = "v"

    def __init__(self, values):
        self.values = values

    def build(self):
        self.steps = 0

    def load_state(self, ckpt):
        self.steps = ckpt["steps"]

    def state(self):
        return {"steps": self.steps}

    def epoch_batches(self, epoch):
        return [[0]] * 4

    def batches(self, batches, epoch, start):
        return iter(batches[start:])

    def lr(self):
        return 0.0

    def step(self, batch):
        self.steps += 1
        return {"v": 0.0}

    @property
    def has_validation(self):
        return True

    def validate(self):
        return {"v": self.values[self.steps // 2 - 1]}


def test_early_stopping_after_patience_validations(tmp_path):
    # validations every 2 steps: 5, 4, 4.5, 4.2, 3 ... best at step 4; patience 2 stops at step 8
    values = [5.0, 4.0, 4.5, 4.2, 3.0, 2.0]
    loop = {"max_steps": 12, "seed": 0, "log_every": 1, "val_every": 2, "ckpt_every": 0, "max_nonfinite": 10,
            "snapshot_every": 0, "deterministic": True, "progress": False}
    settings = LoopSettings(**loop, patience=2)
    result = run_loop(_Scripted(values), settings, tmp_path)
    assert (result.step, result.best_step, result.best_value, result.stopped_early) == (8, 4, 4.0, True)
    # resumed (the job restarted): it stops again at once
    again = run_loop(_Scripted(values), settings, tmp_path)
    assert again.step == 8 and again.stopped_early and again.history == []
    # patience 0: max_steps
    full = run_loop(_Scripted(values), LoopSettings(**loop, patience=0), tmp_path / "full")
    assert (full.step, full.best_step, full.stopped_early) == (12, 12, False)


def test_weight_average_in_training_is_what_inference_loads_and_resumes_exactly(tmp_path):
    items = synthetic_utterances(5, [6, 9, 7, 8, 5], seed=1, **DIMS)
    val = synthetic_utterances(2, [5, 6], seed=2, **DIMS)
    mcfg = model_config("tiny")
    tcfg = train_config({**QUIET, "batch_size": 2, "max_steps": 6, "warmup_steps": 2, "log_every": 1, "val_every": 3,
                         "seed": 7, "ema_decay": 0.9, "time_mask_max_frames": 3, "snapshot_every": 2,
                         "lead_in_max_frames": 4})
    whole = train(mcfg, tcfg, items, val, tmp_path / "whole")
    train(mcfg, tcfg, items, val, tmp_path / "split", stop_at_step=3)
    random.seed(9)
    torch.manual_seed(9)
    rest = train(mcfg, tcfg, items, val, tmp_path / "split")
    a, b = load_checkpoint(whole.last_checkpoint), load_checkpoint(rest.last_checkpoint)
    assert a["ema"]["updates"] == b["ema"]["updates"] == 6
    for part in ("model", "ema"):
        sa, sb = (a[part], b[part]) if part == "model" else (a[part]["model"], b[part]["model"])
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)
    # inference loads the average, not the raw weights
    loaded = load_model(whole.last_checkpoint).model.state_dict()
    raw = a["model"]
    key = next(k for k in raw if raw[k].is_floating_point() and "weight" in k)
    torch.testing.assert_close(loaded[key], a["ema"]["model"][key])
    assert not torch.equal(loaded[key], raw[key])
    # snapshots every 2 steps: the averaged weights, loadable as models
    snaps = sorted(p.name for p in (Path(whole.run_dir) / "ckpt" / "snapshots").iterdir())
    assert snaps == ["step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    last = load_model(Path(whole.run_dir) / "ckpt" / "snapshots" / "step_0000006.pt")
    assert last.step == 6
    torch.testing.assert_close(last.model.state_dict()[key], a["ema"]["model"][key])


def test_experiment_training_keys_snapshots_curve_and_raw_weights(tmp_path):
    import json as _json

    import pyarrow as pa
    from test_stage_train import EXP, MODEL, TRAIN, fake_results

    from lipspeech.core.config import default_section
    from lipspeech.core.store import Store, StoreMeta, write_store
    from lipspeech.evaluation.curve import learning_curve, val_subset
    from lipspeech.evaluation.report.curves import curve_rows, curves_html, curves_markdown, temperature_rows
    from lipspeech.training.stage import run_synthesize, run_train

    results = fake_results(tmp_path / "results" / "fake")
    manifest = Store(results / "manifest.parquet", expect_stage="manifest").df
    texts = ["bin blue at f two now", "lay red by g nine soon", "place white in a one again"]
    write_store(results / "manifest.parquet", StoreMeta("manifest", "m"), list(manifest["utt"]), {
        "speaker": pa.array(list(manifest["speaker"])), "split": pa.array(list(manifest["split"])),
        "shard": pa.array(list(manifest["shard"]), type=pa.int32()),
        "text": pa.array([texts[i % 3] for i in range(len(manifest))])})
    # the experiment's own training keys override the section: averaged weights, snapshots every 2 steps
    exp = {**EXP, "train": {"ema_decay": 0.5, "snapshot_every": 2}}
    run_dir = results / "models" / "ltbs"
    summary = run_train(results, exp, MODEL, TRAIN, run_dir, threads=1, progress=False, fail_fast=False)
    assert summary["steps"] == 4
    assert _json.loads((run_dir / "config.json").read_text())["train"]["ema_decay"] == 0.5
    snaps = run_dir / "ckpt" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["step_0000002.pt", "step_0000004.pt"]

    # the same checkpoint synthesised with its averaged and its raw weights: different mels
    avg, raw = results / "eval" / "a.parquet", results / "eval" / "r.parquet"
    run_synthesize(results, exp, run_dir / "ckpt" / "best.pt", avg)
    run_synthesize(results, {**exp, "weights": "raw"}, run_dir / "ckpt" / "best.pt", raw)
    assert not np.array_equal(Store(avg).array("coarse", 0), Store(raw).array("coarse", 0))

    out = results / "eval" / "ltbs" / "curve.json"
    curve_cfg = {**default_section("curve"), "max_utterances": 1, "temperatures": [0.0, 0.5]}
    curve = learning_curve(snaps, results / "manifest.parquet", sorted((results / "roi").glob("0*.parquet")),
                           curve_cfg, default_section("evaluate"), default_section("vocoder"),
                           default_section("mel"), out, progress=False, best=run_dir / "ckpt" / "best.pt")
    assert _json.loads(out.read_text()) == curve
    assert [r["step"] for r in curve["rows"]] == [2, 4] and curve["utterances"] == 1
    for r in curve["rows"]:
        assert r["n"] == 1 and 0.0 <= r["wer"] and 0.0 <= r["cer"] and 1.0 <= r["dnsmos_p808"] <= 5.0
    assert val_subset(["a", "b", "c", "d"], 2, 1) == val_subset(["a", "b", "c", "d"], 2, 1)
    assert len(val_subset(["a", "b", "c", "d"], 2, 1)) == 2 and val_subset(["a", "b"], 0, 1) == ["a", "b"]
    assert [t["temperature"] for t in curve["temperatures"]] == [0.0, 0.5]
    assert all(t["step"] == 4 and t["n"] == 1 for t in curve["temperatures"])
    assert [r[1] for r in temperature_rows({"ltbs": curve})[1:]] == ["0", "0.5"]
    rows = curve_rows({"ltbs": curve})
    assert rows[0][:2] == ["experiment", "step"] and [r[1] for r in rows[1:]] == ["2", "4"]
    assert "## Learning curve" in curves_markdown({"ltbs": curve})
    from lipspeech.evaluation.report.figures import data_uri

    page = curves_html({"ltbs": curve}, 40, data_uri)
    assert "<table id='curve'>" in page and "<table id='curve-temperature'>" in page
    assert 'src="data:image/png;base64,' in page
