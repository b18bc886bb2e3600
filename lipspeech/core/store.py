"""Feature stores: one Parquet file per (stage, shard), one row per utterance.

Layout of a store file
----------------------
* first column ``utt`` (string), then scalar columns (numbers, strings),
* each array column ``x`` is a ``large_list<dtype>`` holding the array flattened
  in C order, next to ``x_shape`` (``list<int32>``) with its shape, so that plain
  pyarrow / pandas / duckdb read the values as numbers without lipspeech,
* the schema metadata key ``lipspeech`` holds JSON: stage, config hash, lipspeech
  version and, per array column, its dtype.

Our reader hands back numpy views into the Arrow buffers (no copy per element).
Row groups hold about :data:`ROW_GROUP_BYTES` of array data each (one utterance's mouth
crops; a few utterances' mels), so that a reader can decode one utterance without the
rest of the file: :class:`Store` with ``lazy=True`` reads the scalar columns and shapes
at open and an array row's group when asked for it (training's memory then depends on
the batch and a bounded cache, :class:`GroupCache`, not on the corpus).

Writes are atomic: the file is written under a temporary name in the same folder
and renamed into place, so a killed job leaves either the old file or the new one.

Every stage also writes a *rejected* table (``{shard}.rejected.parquet``, columns
``utt, stage, reason``): utterances it could not process, each with a one-line
reason, so good data is never lost because of a bad neighbour.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lipspeech import __version__

META_KEY = b"lipspeech"
SHAPE_SUFFIX = "_shape"
#: array bytes (uncompressed) after which a store's row group is closed: a row group is what a
#: lazy reader decodes to get one row, so small enough that reading one utterance costs about
#: itself (GRID's mouth crops are ~0.7 MB an utterance: one per group; reading a demo utterance's
#: four stores cold took 19 ms with 1 MB groups, 11 with 512 kB, 9 with 256 kB), large enough
#: that the per-group metadata (~150 bytes a column) stays negligible next to the data
ROW_GROUP_BYTES = 1 << 18
REJECTED_SCHEMA = pa.schema([("utt", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


class StoreError(RuntimeError):
    """A store file is missing, unreadable or not what the caller expects."""


class StoreUnreadable(StoreError):
    """A store file exists but cannot be read as a store (damaged: a disk error, a copy cut short)."""


@dataclass(frozen=True)
class StoreMeta:
    """What every store file says about itself."""

    stage: str
    config_hash: str
    version: str = __version__
    extra: Mapping[str, Any] = field(default_factory=dict)


def _process_umask() -> int:
    # read once, at import (single-threaded): os.umask can only be read by setting it
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the mode a file written with open() would get here; mkstemp's own 0600 would hide every store,
#: checkpoint and report from the rest of a lab sharing the results folder
FILE_MODE = 0o666 & ~_process_umask()


def _tmp_prefix(path: Path, pid: int | None = None) -> str:
    return f".{path.name}.{socket.gethostname()}-{os.getpid() if pid is None else pid}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by writers on this host that were killed (kill -9).

    A temporary is ``.{name}.{host}-{pid}.{random}.tmp``; only those whose process no longer
    exists are removed, so a live writer (another job, another host sharing the folder) is
    never disturbed. Returns the files removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        # strip ".{name}." and ".tmp", then mkstemp's random part: "{host}-{pid}" is left
        owner = tmp.name[len(path.name) + 2 : -len(".tmp")].rpartition(".")[0]
        tmp_host, _, pid = owner.rpartition("-")
        if tmp_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder so the final ``os.replace`` is an
    atomic rename on POSIX file systems. The file ends with the permissions the umask
    gives a plain ``open()`` (:data:`FILE_MODE`), not mkstemp's 0600. On error the
    temporary file is removed; one left by a killed writer is removed by the next
    write of the same ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _array_column(arrays: Sequence[np.ndarray], dtype: np.dtype) -> tuple[pa.Array, pa.Array]:
    """Flatten a list of arrays (any shapes, one dtype) into a list column and a shape column."""
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = (
        np.concatenate([np.ascontiguousarray(a, dtype=dtype).reshape(-1) for a in arrays])
        if arrays
        else np.zeros(0, dtype=dtype)
    )
    values = pa.array(flat, type=pa.from_numpy_dtype(dtype))
    col = pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), values)
    shapes = pa.array([list(a.shape) for a in arrays], type=pa.list_(pa.int32()))
    return col, shapes


def write_store(
    path: str | os.PathLike,
    meta: StoreMeta,
    utts: Sequence[str],
    columns: Mapping[str, Sequence[Any]] | None = None,
    arrays: Mapping[str, Sequence[np.ndarray]] | None = None,
    compression: str = "zstd",
) -> None:
    """Write one store file atomically.

    Args:
        path: destination ``.parquet`` file.
        meta: stage name, config hash, version.
        utts: utterance ids, one per row (may be empty: an empty shard is a valid store).
        columns: scalar columns, each a sequence of ``len(utts)`` values.
        arrays: array columns, each a sequence of ``len(utts)`` numpy arrays of one
            dtype and one number of dimensions (sizes may differ per row).
        compression: Parquet codec.
    """
    columns = dict(columns or {})
    arrays = dict(arrays or {})
    n = len(utts)
    names: list[str] = ["utt"]
    data: list[pa.Array] = [pa.array(list(utts), type=pa.string())]
    for name, values in columns.items():
        if len(values) != n:
            raise StoreError(f"column {name!r} has {len(values)} rows, expected {n}")
        names.append(name)
        data.append(pa.array(list(values)) if not isinstance(values, pa.Array) else values)
    array_meta: dict[str, dict[str, Any]] = {}
    for name, values in arrays.items():
        if len(values) != n:
            raise StoreError(f"array column {name!r} has {len(values)} rows, expected {n}")
        dtypes = {np.asarray(a).dtype for a in values}
        ndims = {np.asarray(a).ndim for a in values}
        if len(dtypes) > 1 or len(ndims) > 1:
            raise StoreError(f"array column {name!r} mixes dtypes {dtypes} or ranks {ndims}")
        dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        ndim = ndims.pop() if ndims else 1
        col, shapes = _array_column([np.asarray(a) for a in values], dtype)
        names += [name, name + SHAPE_SUFFIX]
        data += [col, shapes]
        array_meta[name] = {"dtype": np.dtype(dtype).str, "ndim": ndim}
    meta_json = json.dumps(
        {
            "stage": meta.stage,
            "config_hash": meta.config_hash,
            "version": meta.version,
            "arrays": array_meta,
            "extra": dict(meta.extra),
        },
        sort_keys=True,
    )
    table = pa.Table.from_arrays(data, names=names).replace_schema_metadata({META_KEY: meta_json.encode()})
    # Dictionary encoding only for the scalar columns: on array values (audio samples, features)
    # the Parquet writer builds a dictionary of millions of distinct floats before giving up,
    # which took 1.7 GB and 10 s for one 10-minute clip's audio (and made the file larger).
    scalar = [n for n in names if n not in arrays]
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, table.schema, compression=compression, use_dictionary=scalar) as writer:
            for start, stop in _row_groups([[np.asarray(a).nbytes for a in v] for v in arrays.values()], n):
                writer.write_table(table.slice(start, stop - start))


def _row_groups(sizes: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges: consecutive rows until their arrays reach :data:`ROW_GROUP_BYTES`."""
    if n == 0:
        return [(0, 0)]
    per_row = np.sum(np.asarray(sizes, dtype=np.int64).reshape(-1, n), axis=0) if sizes else np.zeros(n, np.int64)
    groups, start, total = [], 0, 0
    for i, size in enumerate(per_row):
        total += int(size)
        if total >= ROW_GROUP_BYTES:
            groups.append((start, i + 1))
            start, total = i + 1, 0
    if start < n:
        groups.append((start, n))
    return groups


def write_rejected(path: str | os.PathLike, stage: str, rejected: Mapping[str, str] | Sequence[tuple[str, str]]) -> None:
    """Write a stage's rejected table (``utt, stage, reason``), atomically; empty is fine."""
    items = list(rejected.items()) if isinstance(rejected, Mapping) else list(rejected)
    table = pa.Table.from_pylist(
        [{"utt": u, "stage": stage, "reason": one_line(r)} for u, r in items], schema=REJECTED_SCHEMA
    ).replace_schema_metadata({META_KEY: json.dumps({"stage": stage}).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rejected(paths: Sequence[str | os.PathLike]) -> "pa.Table":
    """Concatenate rejected tables (missing files are skipped)."""
    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths if Path(p).exists()]
    return pa.concat_tables(tables) if tables else REJECTED_SCHEMA.empty_table()


def rejected_stage(path: str | os.PathLike) -> str | None:
    """The stage a rejected table belongs to: from its metadata, else its rows (None: neither says)."""
    schema = pq.read_schema(path)
    meta = (schema.metadata or {}).get(META_KEY)
    if meta:
        return json.loads(meta).get("stage")
    stages = pq.read_table(path, columns=["stage"]).column("stage").to_pylist()
    return stages[0] if stages else None


def one_line(text: object, limit: int = 300) -> str:
    """Squash a message (e.g. an ffmpeg error) to one line of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


class GroupCache:
    """Decoded row groups of lazily read stores, least recently used dropped first, at most
    ``max_bytes`` of array data in all (shared by every store of a reader; 0: keep nothing)."""

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._items: "OrderedDict[tuple[str, int, str], tuple[np.ndarray, np.ndarray]]" = OrderedDict()

    def get(self, key: tuple[str, int, str]) -> tuple[np.ndarray, np.ndarray] | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple[str, int, str], value: tuple[np.ndarray, np.ndarray]) -> None:
        size = value[0].nbytes + value[1].nbytes
        if size > self.max_bytes:
            return
        self._items[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (values, offsets) = self._items.popitem(last=False)
            self.bytes -= values.nbytes + offsets.nbytes


class Store:
    """A read-only view of one store file.

    ``store.df`` has the scalar columns (pandas); ``store.array(name, i)`` returns
    the ``i``-th row's array as a numpy view; ``store.arrays(name)`` all of them.

    With ``lazy``, only the scalar and shape columns are read at open (``store.table`` holds
    those); ``array(name, i)`` decodes row ``i``'s row group of that column, kept in ``cache``
    (a :class:`GroupCache`; none: only the group read last).
    """

    def __init__(self, path: str | os.PathLike, expect_stage: str | None = None, lazy: bool = False,
                 cache: GroupCache | None = None):
        self.path = Path(path)
        self.lazy = lazy
        try:
            schema = pq.read_schema(self.path) if lazy else None
            raw = (schema.metadata or {}).get(META_KEY) if lazy else None
            if lazy and raw is not None:
                arrays = set(json.loads(raw).get("arrays", {}))
                keep = [c for c in schema.names if c not in arrays]
                self.table = pq.read_table(self.path, columns=keep)
                self.table = self.table.replace_schema_metadata(schema.metadata)
            else:
                self.table = pq.read_table(self.path, memory_map=True)
        except FileNotFoundError as exc:
            raise StoreError(f"{self.path}: no such store file") from exc
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise StoreUnreadable(f"{self.path}: not a readable Parquet store ({one_line(exc)})") from exc
        raw = (self.table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise StoreUnreadable(f"{self.path}: Parquet file has no lipspeech metadata")
        try:
            self.meta_dict: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise StoreUnreadable(f"{self.path}: damaged lipspeech metadata ({exc})") from None
        if expect_stage is not None and self.meta_dict["stage"] != expect_stage:
            raise StoreError(f"{self.path}: holds stage {self.meta_dict['stage']!r}, expected {expect_stage!r}")
        self._flat: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cache = cache if cache is not None else GroupCache(0)
        self._last: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray]] | None = None  # the group read last
        self._file: tuple[int, pq.ParquetFile] | None = None
        self._group_starts: np.ndarray | None = None

    @property
    def meta(self) -> StoreMeta:
        m = self.meta_dict
        return StoreMeta(m["stage"], m["config_hash"], m["version"], m.get("extra", {}))

    @property
    def utts(self) -> list[str]:
        return self.table.column("utt").to_pylist()

    @property
    def array_names(self) -> list[str]:
        return list(self.meta_dict["arrays"])

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def df(self):
        """Scalar columns as a pandas DataFrame (array columns left out)."""
        skip = set(self.array_names) | {n + SHAPE_SUFFIX for n in self.array_names}
        keep = [c for c in self.table.column_names if c not in skip]
        return self.table.select(keep).to_pandas()

    def _numpy(self, col: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(flat values, offsets) of a large-list column, zero-copy."""
        col = col.combine_chunks()
        dtype = np.dtype(self.meta_dict["arrays"][name]["dtype"])
        values = col.values.to_numpy(zero_copy_only=True) if len(col.values) else np.zeros(0, dtype)
        offsets = col.offsets.to_numpy(zero_copy_only=True)
        return (values.view(dtype) if values.dtype != dtype else values, offsets)

    def _check_array(self, name: str) -> None:
        if name not in self.meta_dict["arrays"]:
            raise StoreError(f"{self.path}: no array column {name!r} (has {self.array_names})")

    def _flat_values(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._flat:
            self._check_array(name)
            self._flat[name] = self._numpy(self.table.column(name), name)
        return self._flat[name]

    def _parquet(self) -> pq.ParquetFile:
        """The open file (reopened in a forked process: a DataLoader worker must not share the handle)."""
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), pq.ParquetFile(self.path))
            md = self._file[1].metadata
            self._group_starts = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
        return self._file[1]

    def _group_values(self, name: str, i: int) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        """Row ``i``'s row group of column ``name`` (values, offsets), and ``i`` within the group."""
        self._check_array(name)
        pf = self._parquet()
        g = int(np.searchsorted(self._group_starts, i, side="right")) - 1
        key = (str(self.path), g, name)
        hit = self._last.get(key) if self._last is not None else None
        hit = hit if hit is not None else self._cache.get(key)
        if hit is None:
            # every array column of the group at once: a caller reading one row usually wants its
            # other arrays too (prosody's lf0, voiced and energy), and one read is cheaper than three
            try:
                table = pf.read_row_group(g, columns=self.array_names, use_threads=False)
            except (pa.ArrowInvalid, OSError) as exc:
                raise StoreUnreadable(f"{self.path}: row group {g} unreadable ({one_line(exc)})") from exc
            self._last = {}
            for column in self.array_names:
                self._last[(str(self.path), g, column)] = got = self._numpy(table.column(column), column)
                self._cache.put((str(self.path), g, column), got)
            hit = self._last[key]
        return hit, i - int(self._group_starts[g])

    def array(self, name: str, i: int) -> np.ndarray:
        """Row ``i`` of array column ``name``, reshaped, as a read-only view."""
        if not 0 <= i < len(self):
            raise IndexError(f"{self.path}: row {i} of {len(self)}")
        if self.lazy:
            (values, offsets), j = self._group_values(name, i)
        else:
            (values, offsets), j = self._flat_values(name), i
        shape = self.table.column(name + SHAPE_SUFFIX)[i].as_py()
        return values[offsets[j] : offsets[j + 1]].reshape(shape)

    def arrays(self, name: str) -> list[np.ndarray]:
        return [self.array(name, i) for i in range(len(self))]

    def row_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.utts)}
