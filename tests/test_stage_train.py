"""The train and synthesize stages on tiny fake feature stores (no video, no audio)."""

import csv
import json

import numpy as np
import pyarrow as pa
import pytest

from lipspeech.core.config import ConfigError
from lipspeech.core.store import Store, StoreMeta, write_store
from lipspeech.training.stage import experiment_model_config, find_experiment, run_synthesize, run_train
from lipspeech.training.stores import CorpusStores, StoreDataset

T = 10
# utt -> (speaker, split, shard)
UTTS = {
    "s1_a": ("s1", "train", 0), "s1_b": ("s1", "train", 1), "s2_a": ("s2", "train", 0), "s2_b": ("s2", "train", 1),
    "s2_c": ("s2", "train", 0),  # left out of the mel store: skipped
    "s1_v": ("s1", "val", 0), "s2_v": ("s2", "val", 1),
    "s1_t": ("s1", "test", 0), "s2_t": ("s2", "test", 1),
}
MISSING_MEL = "s2_c"
STATS = {
    "stage": "prosody-stats", "config_hash": "x", "split": "train",
    "global": {"lf0": {"mean": 5.0, "std": 0.5, "frames": 1}, "energy": {"mean": 1.0, "std": 2.0, "frames": 1}},
    # s2 has no voiced train frame: its lf0 falls back to global
    "speakers": {
        "s1": {"lf0": {"mean": 4.5, "std": 0.25, "frames": 1}, "energy": {"mean": 0.5, "std": 1.0, "frames": 1}},
        "s2": {"lf0": {"mean": None, "std": None, "frames": 0}, "energy": {"mean": 2.0, "std": 4.0, "frames": 1}},
    },
}
EXP = {"name": "ltbs", "preset": "tiny", "overrides": {}}
TRAIN = {"batch_size": 2, "max_steps": 4, "val_every": 2, "warmup_steps": 1, "log_every": 1, "ckpt_every": 0,
         "val_batch_size": 4, "tensorboard": False, "device": "cpu", "random_crop": True, "hflip": True}
MODEL = {"preset": "tiny", "overrides": {"enc_layers": 1, "dec_layers": 1}}


def fake_results(root):
    rng = np.random.default_rng(0)
    utts = sorted(UTTS)
    write_store(root / "manifest.parquet", StoreMeta("manifest", "m"), utts, {
        "speaker": pa.array([UTTS[u][0] for u in utts]),
        "split": pa.array([UTTS[u][1] for u in utts]),
        "shard": pa.array([UTTS[u][2] for u in utts], type=pa.int32()),
    })
    for shard in (0, 1):
        names = [u for u in utts if UTTS[u][2] == shard]
        frames = {"n_frames": pa.array([T] * len(names), type=pa.int32()),
                  "duration": pa.array([T / 25] * len(names), type=pa.float64())}

        def store(folder, stage, keep, names=names, frames=frames, shard=shard, **arrays):
            cols = {k: pa.array([x for u, x in zip(names, v.to_pylist()) if u in keep], type=v.type)
                    for k, v in frames.items()}
            write_store(root / folder / f"{shard:03d}.parquet", StoreMeta(stage, stage + "hash"), keep, cols,
                        {k: [a for u, a in zip(names, v) if u in keep] for k, v in arrays.items()})

        n = len(names)
        store("roi", "roi", names, roi=[rng.integers(0, 256, (T, 96, 96), dtype=np.uint8) for _ in range(n)])
        store("mel", "mel", [u for u in names if u != MISSING_MEL],
              mel=[rng.standard_normal((4 * T, 80)).astype(np.float32) for _ in range(n)])
        store("units", "units", names, units=[rng.integers(0, 200, 2 * T).astype(np.int16) for _ in range(n)])
        store("prosody", "prosody", names, lf0=[np.full(T, 4.75, np.float32) for _ in range(n)],
              voiced=[np.ones(T, np.uint8) for _ in range(n)], energy=[np.full(T, 2.0, np.float32) for _ in range(n)])
    (root / "prosody" / "stats.json").write_text(json.dumps(STATS))
    return root


@pytest.fixture
def results(tmp_path):
    return fake_results(tmp_path / "results" / "fake")


def store_args(results, *folders, stats=False):
    """The path options a stage command is given: --manifest, --{folder} (every shard's file), --stats."""
    args = ["--manifest", str(results / "manifest.parquet")]
    for folder in folders:
        args += [f"--{folder}", *sorted(str(p) for p in (results / folder).glob("[0-9][0-9][0-9].parquet"))]
    return args + (["--stats", str(results / "prosody" / "stats.json")] if stats else [])


TRAIN_STORE_ARGS = ("roi", "mel", "units", "prosody")


def test_store_dataset_joins_normalises_and_counts_skipped(results):
    corpus = CorpusStores.from_results(results)
    train = StoreDataset(corpus, "train")
    assert len(train) == 4 and MISSING_MEL not in train.utts
    assert train.skipped == {"not in mel": 1} and train.n_skipped == 1
    assert "1 skipped (not in mel: 1)" in train.summary()
    assert train.lengths() == [T] * 4
    item = train[train.utts.index("s1_a")]
    assert item.video.shape == (T, 96, 96) and item.video.dtype == np.uint8
    assert item.mel.shape == (4 * T, 80) and item.units.shape == (2 * T,) and item.voiced.dtype == bool
    np.testing.assert_allclose(item.pitch, (4.75 - 4.5) / 0.25)  # per speaker
    np.testing.assert_allclose(item.energy, (2.0 - 0.5) / 1.0)
    item = train[train.utts.index("s2_a")]
    np.testing.assert_allclose(item.pitch, (4.75 - 5.0) / 0.5)  # s2 has no lf0 stats: global
    np.testing.assert_allclose(item.energy, 0.0)
    # inference needs the video only: the utterance without a mel is there
    video_only = StoreDataset(corpus, "train", ("roi",))
    assert len(video_only) == 5 and video_only[0].mel is None


def test_experiment_model_config():
    cfg = experiment_model_config({"name": "no_pitch", "overrides": {"use_pitch": False}}, MODEL)
    assert cfg["use_pitch"] is False and cfg["enc_layers"] == 1 and cfg["d_model"] == 64
    assert experiment_model_config({"name": "p", "preset": "paper"}, MODEL)["d_model"] == 384
    assert find_experiment([EXP], "ltbs") == EXP
    with pytest.raises(ConfigError, match="no experiment named"):
        find_experiment([EXP], "nope")
    with pytest.raises(ConfigError, match="use_pich"):
        experiment_model_config({"name": "x", "overrides": {"use_pich": False}}, MODEL)


def test_train_then_synthesize(results, capsys):
    run_dir = results / "models" / "ltbs"
    summary = run_train(results, EXP, MODEL, TRAIN, run_dir, threads=1, progress=False, fail_fast=False)
    assert summary["steps"] == 4 and summary["train_utterances"] == 4 and summary["skipped"]["train"] == 1
    assert "train: 4 utterances, 1 skipped (not in mel: 1)" in capsys.readouterr().out
    ckpt = run_dir / "ckpt"
    assert (ckpt / "best.pt").exists() and (ckpt / "last.pt").exists() and (ckpt / "best.kept.pt").exists()
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 4
    with open(run_dir / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows if r["split"] == "train"] == ["1", "2", "3", "4"]
    assert [r["step"] for r in rows if r["split"] == "val"] == ["2", "4"]

    # Snakemake removes the declared best.pt before rerunning a killed job: it comes back, nothing retrains
    (ckpt / "best.pt").unlink()
    again = run_train(results, EXP, MODEL, TRAIN, run_dir, threads=1, progress=False, fail_fast=False)
    assert again["steps"] == 4 and (ckpt / "best.pt").exists()

    out = results / "eval" / "ltbs" / "mels.parquet"
    n = run_synthesize(results, EXP, ckpt / "best.pt", out)
    assert n == 2
    store = Store(out, expect_stage="synthesize")
    assert sorted(store.utts) == ["s1_t", "s2_t"]
    assert list(store.df["n_frames"]) == [T, T]
    for i in range(len(store)):
        for name in ("coarse", "post"):
            a = store.array(name, i)
            assert a.shape == (4 * T, 80) and a.dtype == np.float32 and np.isfinite(a).all()
    assert store.meta.extra["experiment"] == "ltbs"
    # a split without utterances (tiny corpora) gives an empty, valid store
    empty = results / "eval" / "ltbs" / "empty.parquet"
    assert run_synthesize(results, EXP, ckpt / "best.pt", empty, split="none") == 0
    assert len(Store(empty, expect_stage="synthesize")) == 0


def test_empty_val_split_validates_on_train(results, capsys):
    manifest = Store(results / "manifest.parquet").df
    manifest.loc[manifest["split"] == "val", "split"] = "test"
    write_store(results / "manifest.parquet", StoreMeta("manifest", "m"), list(manifest["utt"]),
                {c: pa.array(list(manifest[c])) for c in ("speaker", "split")} |
                {"shard": pa.array(list(manifest["shard"]), type=pa.int32())})
    summary = run_train(results, EXP, MODEL, {**TRAIN, "max_steps": 2}, results / "models" / "x", progress=False,
                        fail_fast=False)
    assert summary["val_utterances"] == 4 and (results / "models" / "x" / "ckpt" / "best.pt").exists()
    assert "val split empty" in capsys.readouterr().out


def test_changed_config_starts_afresh(results):
    run_dir = results / "models" / "ltbs"
    run_train(results, EXP, MODEL, {**TRAIN, "max_steps": 2}, run_dir, threads=1, progress=False, fail_fast=False)
    summary = run_train(results, EXP, MODEL, {**TRAIN, "max_steps": 2, "lr": 2e-3}, run_dir, threads=1, progress=False,
                        fail_fast=False)
    assert summary["steps"] == 2
    # not resumed from the other run's last.pt (which was at step 2 already)
    assert json.loads((run_dir / "config.json").read_text())["resumed_from_step"] is None
    with open(run_dir / "losses.csv") as fh:
        assert [r["step"] for r in csv.DictReader(fh) if r["split"] == "train"] == ["1", "2"]
    # the same config again: resumed (at its end), nothing retrained
    run_train(results, EXP, MODEL, {**TRAIN, "max_steps": 2, "lr": 2e-3}, run_dir, threads=1, progress=False,
              fail_fast=False)
    assert json.loads((run_dir / "config.json").read_text())["resumed_from_step"] == 2
    with pytest.raises(ConfigError, match="val_every"):
        run_train(results, EXP, MODEL, {**TRAIN, "val_every": 10}, run_dir, threads=1, progress=False, fail_fast=False)


def test_distill_from_teaches_a_streaming_model(results):
    """distill_from needs the teacher's best.pt; with distill_weight 0 the student trains exactly as
    without a teacher (the teacher's loading draws nothing from the student's random stream), with a
    weight it trains another model, with a mel weight another again; the teacher and the weights are
    part of the run key."""
    import torch

    from lipspeech.training.bundle import load_model

    stream = {"name": "st", "preset": "tiny", "overrides": {}, "streaming": {"chunk_frames": 2, "lookahead_frames": 1},
              "distill_from": "ltbs"}
    with pytest.raises(Exception, match="distill_from 'ltbs': no .*ltbs/ckpt/best.pt"):
        run_train(results, stream, MODEL, TRAIN, results / "models" / "st", progress=False, fail_fast=False)
    run_train(results, EXP, MODEL, TRAIN, results / "models" / "ltbs", progress=False, fail_fast=False)

    def trained(name, **exp):
        run_train(results, {**stream, "name": name, **exp}, MODEL, {**TRAIN, "max_steps": 2}, results / "models" / name,
                  progress=False, fail_fast=False)
        run = results / "models" / name
        return (json.loads((run / "run.json").read_text())["key"], (run / "losses.csv").read_text(),
                load_model(run / "ckpt" / "best.pt").model.state_dict())

    alone = trained("alone", distill_from=None)
    zero = trained("zero", distill_weight=0.0)
    half = trained("half")
    mels = trained("mels", distill_mel_weight=0.5)  # the teacher's coarse mels too
    assert zero[1] == alone[1] and all(torch.equal(zero[2][k], alone[2][k]) for k in alone[2])
    assert len({alone[0], zero[0], half[0], mels[0]}) == 4
    assert half[1] != zero[1] and mels[1] != half[1]


def test_init_from_starts_a_streaming_model_from_the_offline_weights(results, capsys):
    """init_from copies every tensor whose name and shape match (the streaming model's relative-position
    biases have no offline counterpart and keep their initialisation), is part of the run key, and
    needs the other experiment's best.pt."""
    import torch

    from lipspeech.training.bundle import load_model

    stream = {"name": "st", "preset": "tiny", "overrides": {}, "streaming": {"chunk_frames": 2, "lookahead_frames": 1},
              "init_from": "ltbs"}
    with pytest.raises(Exception, match="init_from 'ltbs': no .*ltbs/ckpt/best.pt"):
        run_train(results, stream, MODEL, TRAIN, results / "models" / "st", progress=False, fail_fast=False)
    run_train(results, EXP, MODEL, TRAIN, results / "models" / "ltbs", progress=False, fail_fast=False)
    capsys.readouterr()
    # learning rate 0 (and so no weight decay): the streaming model's weights stay what it started from
    run_train(results, stream, MODEL, {**TRAIN, "lr": 0.0, "max_steps": 2}, results / "models" / "st", progress=False,
              fail_fast=False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("started from"))
    offline = load_model(results / "models" / "ltbs" / "ckpt" / "best.pt").model.state_dict()
    streaming = load_model(results / "models" / "st" / "ckpt" / "best.pt").model.state_dict()
    fresh = sorted(k for k in streaming if k not in offline)
    assert fresh and all("rel" in k for k in fresh) and f"{len(fresh)} initialised afresh" in line
    # every parameter as copied (batch-norm running statistics moved on with the two steps' batches)
    params = {k for k, _ in load_model(results / "models" / "st" / "ckpt" / "best.pt").model.named_parameters()}
    differ = [k for k in streaming if k in offline and not torch.equal(streaming[k], offline[k])]
    assert differ and all(k not in params and k.rsplit(".", 1)[1] in ("running_mean", "running_var",
                                                                     "num_batches_tracked") for k in differ)
    key = json.loads((results / "models" / "st" / "run.json").read_text())["key"]
    alone = run_train(results, {k: v for k, v in stream.items() if k != "init_from"}, MODEL,
                      {**TRAIN, "lr": 0.0, "max_steps": 2}, results / "models" / "st2", progress=False, fail_fast=False)
    assert alone["steps"] == 2 and json.loads((results / "models" / "st2" / "run.json").read_text())["key"] != key
