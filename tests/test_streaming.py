"""Training reads its stores lazily: memory depends on the batch and the cache, not on the corpus;
the stores' row groups; training from stores resumes exactly mid-epoch; the vocoder's items."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lipspeech.core.store import ROW_GROUP_BYTES, GroupCache, Store, StoreMeta, write_store

T = 50  # frames per utterance
N = 192  # utterances (4 shards): 192 * 50 * 96 * 96 bytes = 88 MB of mouth crops once decoded


def big_corpus(root, n=N, shards=4, t=T):
    """Stores of n utterances (all train but 4 val) whose decoded size is large next to the caches below;
    the crops are smooth patterns, so the files stay small on disk and quick to write."""
    utts = [f"u{i:04d}" for i in range(n)]
    split = ["val" if i < 4 else "train" for i in range(n)]
    write_store(root / "manifest.parquet", StoreMeta("manifest", "m"), utts,
                {"speaker": pa.array(["s1" if i % 2 else "s2" for i in range(n)]), "split": pa.array(split),
                 "shard": pa.array([i % shards for i in range(n)], type=pa.int32())})
    yy, xx = np.mgrid[0:96, 0:96]
    for shard in range(shards):
        names = [u for i, u in enumerate(utts) if i % shards == shard]
        cols = {"n_frames": pa.array([t] * len(names), type=pa.int32()),
                "duration": pa.array([t / 25] * len(names), type=pa.float64())}
        k = [int(u[1:]) for u in names]
        roi = [((xx + yy + i + np.arange(t)[:, None, None]) % 256).astype(np.uint8) for i in k]
        write_store(root / "roi" / f"{shard:03d}.parquet", StoreMeta("roi", "r"), names, cols, {"roi": roi})
        write_store(root / "mel" / f"{shard:03d}.parquet", StoreMeta("mel", "m"), names, cols,
                    {"mel": [np.full((4 * t, 80), -3.0 + i % 7, np.float32) for i in k]})
        write_store(root / "units" / f"{shard:03d}.parquet", StoreMeta("units", "u"), names, cols,
                    {"units": [(np.arange(2 * t) * (i + 1) % 200).astype(np.int16) for i in k]})
        write_store(root / "prosody" / f"{shard:03d}.parquet", StoreMeta("prosody", "p"), names, cols,
                    {"lf0": [np.full(t, 5.0, np.float32) for _ in k], "voiced": [np.ones(t, np.uint8) for _ in k],
                     "energy": [np.linspace(0, 1, t).astype(np.float32) for _ in k]})
    (root / "prosody" / "stats.json").write_text(json.dumps({"global": {"lf0": {"mean": 5.0, "std": 1.0},
                                                                        "energy": {"mean": 0.5, "std": 0.3}}}))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return big_corpus(tmp_path_factory.mktemp("big") / "results")


def test_stores_are_written_in_row_groups_of_a_bounded_size(corpus):
    meta = pq.ParquetFile(corpus / "roi" / "000.parquet").metadata
    per_utt = T * 96 * 96
    assert meta.num_row_groups == -(-N // 4 // -(-ROW_GROUP_BYTES // per_utt))
    meta = pq.ParquetFile(corpus / "units" / "000.parquet").metadata
    assert meta.num_row_groups == 1  # 48 utterances of 200 bytes
    empty = corpus / "empty.parquet"
    write_store(empty, StoreMeta("roi", "r"), [], {}, {"roi": []})
    assert len(Store(empty)) == 0 and len(Store(empty, lazy=True)) == 0


def test_lazy_store_reads_what_the_eager_one_does(corpus):
    eager = Store(corpus / "roi" / "001.parquet")
    cache = GroupCache(3 * ROW_GROUP_BYTES)
    lazy = Store(corpus / "roi" / "001.parquet", lazy=True, cache=cache)
    assert lazy.utts == eager.utts and lazy.meta == eager.meta and lazy.df.equals(eager.df)
    for i in [5, 0, 47, 5, 31]:
        np.testing.assert_array_equal(lazy.array("roi", i), eager.array("roi", i))
    assert 0 < cache.bytes <= cache.max_bytes  # kept what fits
    with pytest.raises(IndexError):
        lazy.array("roi", 48)


PEAK = """
import json, resource, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from lipspeech.models import model_config
from lipspeech.training import train, train_config
from lipspeech.training.stores import CorpusStores, StoreDataset, TRAIN_STORES

root, lazy = Path(sys.argv[1]), sys.argv[2] == "lazy"
corpus = CorpusStores.from_results(root, TRAIN_STORES, cache_mb=8, lazy=lazy)
data, val = StoreDataset(corpus, "train", TRAIN_STORES), StoreDataset(corpus, "val", TRAIN_STORES)
mcfg = model_config("tiny", {"enc_layers": 1, "dec_layers": 1})
cfg = train_config({"batch_size": 4, "max_steps": 8, "val_every": 8, "val_max_batches": 1, "log_every": 1,
                    "progress": False, "tensorboard": False, "device": "cpu", "seed": 3})
train(mcfg, cfg, data, val, Path(sys.argv[3]))
import pyarrow as pa
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "arrow": pa.default_memory_pool().max_memory() / 2**20}))
"""


def _peak(root, reader, run):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK), str(root), reader, str(run)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_training_memory_depends_on_the_batch_not_on_the_corpus(corpus, tmp_path):
    # 8 steps of 4 utterances on a corpus of 48 and one of 192 (4x, 88 MB of crops decoded). What
    # the stores take is Arrow's memory (its pool's peak is exact; the process's peak RSS also
    # counts torch and the allocators' caches, and varies by tens of MB from run to run): with the
    # lazy reader (8 MB cache) it peaks alike on both; the reader before row groups, which decoded
    # each store file whole, needs about the corpus more
    small = big_corpus(tmp_path / "small" / "results", n=N // 4)
    lazy_1x, lazy_4x = _peak(small, "lazy", tmp_path / "a"), _peak(corpus, "lazy", tmp_path / "b")
    eager_4x = _peak(corpus, "eager", tmp_path / "c")
    print(f"\npeak Arrow memory (RSS): lazy reader {lazy_1x['arrow']:.1f} MB ({lazy_1x['rss']:.0f}) on the 1x corpus, "
          f"{lazy_4x['arrow']:.1f} MB ({lazy_4x['rss']:.0f}) on 4x; whole-store reader {eager_4x['arrow']:.1f} MB "
          f"({eager_4x['rss']:.0f}) on 4x")
    assert eager_4x["arrow"] > lazy_4x["arrow"] + 80  # the check can tell: the corpus, decoded
    # the lazy reader's peak: the cache, and decoding one row group (its list columns' levels are
    # several times the data while a group is read), whatever the corpus's size
    assert abs(lazy_4x["arrow"] - lazy_1x["arrow"]) < 5


def test_training_from_stores_resumes_exactly_mid_epoch(corpus, tmp_path):
    import csv

    import torch

    from lipspeech.models import model_config
    from lipspeech.training import load_checkpoint, train, train_config
    from lipspeech.training.stores import TRAIN_STORES, CorpusStores, StoreDataset

    def data():
        c = CorpusStores.from_results(corpus, TRAIN_STORES, cache_mb=4)
        return StoreDataset(c, "train", TRAIN_STORES), StoreDataset(c, "val", TRAIN_STORES)

    mcfg = model_config("tiny", {"enc_layers": 1, "dec_layers": 1})
    cfg = train_config({"batch_size": 4, "max_steps": 5, "val_every": 5, "val_max_batches": 1, "log_every": 1,
                        "progress": False, "tensorboard": False, "device": "cpu", "seed": 5, "threads": 1,
                        "num_workers": 1, "bucket": True})
    whole = train(mcfg, cfg, *data(), tmp_path / "whole")
    train(mcfg, cfg, *data(), tmp_path / "cut", stop_at_step=2)  # killed 2 steps into an epoch of 47
    rest = train(mcfg, cfg, *data(), tmp_path / "cut")
    assert whole.step == rest.step == 5

    def rows(run):
        with open(run / "losses.csv", newline="") as fh:
            return [r for r in csv.DictReader(fh) if r["split"] == "train"]

    a, b = rows(tmp_path / "whole"), rows(tmp_path / "cut")
    assert [r["total"] for r in a] == [r["total"] for r in b]
    assert all(0.0 <= float(r["pad_frac"]) < 1.0 for r in a)
    sa, sb = load_checkpoint(whole.last_checkpoint)["model"], load_checkpoint(rest.last_checkpoint)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_vocoder_items_are_read_on_demand(corpus):
    from lipspeech.training.stores import CorpusStores
    from lipspeech.vocoder.train import load_items

    # shard 0's mels and an audio store beside them; the other shards have no audio store
    mel = Store(corpus / "mel" / "000.parquet")
    audio = corpus.parent / "audio000.parquet"
    write_store(audio, StoreMeta("decode", "a"), mel.utts, {"n_frames": pa.array([T] * len(mel), type=pa.int32())},
                {"audio": [np.full(160 * 4 * T, float(i), np.float32) for i in range(len(mel))]})
    audio = audio.rename(corpus.parent / "000.parquet")
    c = CorpusStores(corpus / "manifest.parquet", {"audio": [audio], "mel": [corpus / "mel" / "000.parquet"]},
                     cache_mb=1)
    items, skipped = load_items(c, "train")
    assert len(items) == 47 and dict(skipped) == {"not in audio": 188 - 47}
    assert c.cache.bytes == 0  # nothing read yet
    item = items[3]
    assert item.utt == items.utts[3] and item.mel.shape == (4 * T, 80) and item.audio.shape == (160 * 4 * T,)
    assert item.audio[0] == float(mel.utts.index(item.utt))
    assert c.cache.bytes <= 2**20
