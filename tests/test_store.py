"""Feature store: round-trips, plain-pyarrow readability, metadata, atomic writes."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lipspeech import __version__
from lipspeech.core.store import Store, StoreError, StoreMeta, read_rejected, write_rejected, write_store


@pytest.mark.parametrize(
    "dtype,shapes",
    [
        (np.float32, [(0,), (1,), (17,), (640 * 3,)]),
        (np.int16, [(5, 2), (0, 2), (31, 2)]),
        (np.uint8, [(3, 96, 96), (1, 96, 96), (7, 96, 96)]),
    ],
)
def test_round_trip_varying_lengths(tmp_path, dtype, shapes):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    arrays = [
        (rng.integers(info.min, info.max, size=s, endpoint=True) if info else rng.standard_normal(s)).astype(dtype)
        for s in shapes
    ]
    utts = [f"u{i}" for i in range(len(arrays))]
    path = tmp_path / "x.parquet"
    write_store(path, StoreMeta("test", "abc123"), utts, {"n": list(range(len(utts)))}, {"x": arrays})
    store = Store(path, expect_stage="test")
    assert store.utts == utts
    assert store.meta.config_hash == "abc123" and store.meta.version == __version__
    for i, a in enumerate(arrays):
        got = store.array("x", i)
        assert got.dtype == np.dtype(dtype) and got.shape == a.shape
        np.testing.assert_array_equal(got, a)
    assert store.df["n"].tolist() == list(range(len(utts)))


def test_plain_pyarrow_and_pandas_read_values(tmp_path):
    path = tmp_path / "a.parquet"
    audio = [np.arange(4, dtype=np.float32), np.arange(3, dtype=np.float32) * 2]
    write_store(path, StoreMeta("decode", "h"), ["a", "b"], {"n_frames": [1, 1]}, {"audio": audio})
    table = pq.read_table(path)
    assert table.column_names[0] == "utt"
    assert table.column("audio").to_pylist() == [[0.0, 1.0, 2.0, 3.0], [0.0, 2.0, 4.0]]
    assert table.column("audio_shape").to_pylist() == [[4], [3]]
    meta = json.loads(table.schema.metadata[b"lipspeech"])
    assert meta["stage"] == "decode" and meta["config_hash"] == "h" and meta["arrays"]["audio"]["dtype"] == "<f4"
    df = pd.read_parquet(path)
    assert list(df["audio"][1]) == [0.0, 2.0, 4.0]


def test_reader_returns_views_not_copies(tmp_path):
    path = tmp_path / "v.parquet"
    write_store(path, StoreMeta("t", "h"), ["a", "b"], arrays={"x": [np.ones(10, np.float32), np.zeros(5, np.float32)]})
    store = Store(path)
    a, b = store.array("x", 0), store.array("x", 1)
    assert a.base is not None and not a.flags.writeable  # a view on the Arrow buffer
    assert np.shares_memory(a, store._flat_values("x")[0]) and np.shares_memory(b, store._flat_values("x")[0])


def test_empty_store_is_valid(tmp_path):
    path = tmp_path / "empty.parquet"
    write_store(path, StoreMeta("decode", "h"), [], {"n": []}, {"audio": []})
    store = Store(path)
    assert len(store) == 0 and store.arrays("audio") == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "s.parquet"
    write_store(path, StoreMeta("t", "h1"), ["a"], arrays={"x": [np.ones(3, np.float32)]})
    with pytest.raises(StoreError):
        # mixing dtypes fails before anything is renamed into place
        write_store(path, StoreMeta("t", "h2"), ["a", "b"], arrays={"x": [np.ones(3, np.float32), np.ones(3, np.int16)]})
    assert Store(path).meta.config_hash == "h1"
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temporary left behind


def test_atomic_writes_get_the_umask_mode_not_mkstemps(tmp_path, monkeypatch):
    """Stores, texts and checkpoints are readable by whoever the umask lets read a plain file
    (mkstemp alone would leave every output 0600: unreadable for the rest of a lab)."""
    import os
    import stat

    import torch

    from lipspeech.core import store
    from lipspeech.training.checkpoint import save_checkpoint

    mask = os.umask(0o022)
    os.umask(mask)
    assert store.FILE_MODE == 0o666 & ~mask
    for mode in (0o644, 0o640):
        monkeypatch.setattr(store, "FILE_MODE", mode)
        paths = [tmp_path / f"s{mode:o}.parquet", tmp_path / f"t{mode:o}.json", tmp_path / f"c{mode:o}.pt"]
        write_store(paths[0], StoreMeta("t", "h"), ["a"], arrays={"x": [np.ones(3, np.float32)]})
        store.write_text_atomic(paths[1], "{}")
        save_checkpoint(paths[2], {"step": 0, "w": torch.zeros(2)})
        assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [mode] * 3


def test_wrong_stage_and_garbage_are_clear_errors(tmp_path):
    path = tmp_path / "s.parquet"
    write_store(path, StoreMeta("roi", "h"), ["a"])
    with pytest.raises(StoreError, match="holds stage 'roi', expected 'decode'"):
        Store(path, expect_stage="decode")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError, match="not a readable Parquet store"):
        Store(bad)
    with pytest.raises(StoreError, match="no such store file"):
        Store(tmp_path / "missing.parquet")


def test_rejected_table_round_trip(tmp_path):
    path = tmp_path / "r.parquet"
    write_rejected(path, "decode", {"u1": "no audio stream", "u2": "ffmpeg: line one\nline two"})
    rows = read_rejected([path, tmp_path / "absent.parquet"]).to_pylist()
    assert rows == [
        {"utt": "u1", "stage": "decode", "reason": "no audio stream"},
        {"utt": "u2", "stage": "decode", "reason": "ffmpeg: line one line two"},
    ]
    write_rejected(tmp_path / "e.parquet", "decode", [])
    assert read_rejected([tmp_path / "e.parquet"]).num_rows == 0
