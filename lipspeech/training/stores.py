"""Training data from a corpus's feature stores.

:class:`StoreDataset` is a sequence of :class:`~lipspeech.models.batch.Utterance`
for one split of ``results/{corpus}/``, across all shards, joining

=====================  ===================================================
``manifest.parquet``   split, speaker, shard of every utterance
``roi/{shard}``        ``roi`` uint8 (T, 96, 96) -> ``video``
``mel/{shard}``        ``mel`` float32 (4T, 80) -> ``mel``
``units/{shard}``      ``units`` int16 (2T,) -> ``units``
``prosody/{shard}``    ``lf0``, ``voiced``, ``energy`` (T,) -> ``pitch``,
                       ``voiced``, ``energy``, normalised with
                       ``prosody/stats.json`` (per speaker; ``global`` for
                       speakers the train split does not have)
=====================  ===================================================

An utterance of the split missing from any store it needs (rejected by that
stage) or whose streams disagree on T is skipped and counted
(:attr:`StoreDataset.skipped`, :meth:`StoreDataset.summary`).

Stores are read lazily (:class:`~lipspeech.core.store.Store` with ``lazy=True``): at
open only the utterance ids, scalar columns and array shapes; an :class:`Utterance`
is assembled on indexing from the row groups that hold it (about one utterance's
mouth crops each, :data:`~lipspeech.core.store.ROW_GROUP_BYTES`). Decoded groups are kept
in one :class:`~lipspeech.core.store.GroupCache` per :class:`CorpusStores` of at most
``cache_mb`` (the ``train.reader_cache_mb`` key), so memory depends on the batch and
that budget, not on the corpus: a corpus that fits in the cache is decoded once (as
the demo's is), a larger one is read from disk as the epoch's order asks for it. A
DataLoader worker (``train.num_workers``) forks with its own copy of the cache.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lipspeech.core.shards import shard_of_store, shard_stores
from lipspeech.core.store import SHAPE_SUFFIX, GroupCache, Store, StoreError, StoreUnreadable, one_line
from lipspeech.core.timing import MEL_PER_FRAME, SAMPLES_PER_FRAME, UNITS_PER_FRAME
from lipspeech.models.batch import Utterance

log = logging.getLogger(__name__)

#: store folder -> (stage name in its metadata, the array that gives its length, rows per video frame)
STORES: dict[str, tuple[str, str, int]] = {
    "roi": ("roi", "roi", 1),
    "mel": ("mel", "mel", MEL_PER_FRAME),
    "units": ("units", "units", UNITS_PER_FRAME),
    "prosody": ("prosody", "lf0", 1),
    "audio": ("decode", "audio", SAMPLES_PER_FRAME),  # the vocoder's training targets
}
#: the reader's cache when none is configured (train.reader_cache_mb's default)
DEFAULT_CACHE_MB = 512
#: what training needs; synthesis needs only the video
TRAIN_STORES = ("roi", "mel", "units", "prosody")
VIDEO_STORES = ("roi",)


class CorpusStores:
    """The manifest, prosody statistics and (lazily opened, cached) store files of one corpus.

    Every file is given: a stage reads exactly the paths its rule declares.

    Args:
        manifest: the manifest store.
        stores: store folder (a key of :data:`STORES`) -> its per-shard files
            (``{shard:03d}.parquet``; the shard is read from the name). A shard without
            a file has no utterances in that store.
        stats: ``prosody/stats.json`` (needed when the prosody store is used).
        cache_mb: decoded row groups kept, in MB of array data (see the module docstring).
        lazy: False: decode each store file whole on first use and keep it (the reader before
            row groups; benchmarks compare against it).
    """

    def __init__(self, manifest: str | Path, stores: Optional[Mapping[str, Sequence[str | Path]]] = None,
                 stats: Optional[str | Path] = None, cache_mb: float = DEFAULT_CACHE_MB, lazy: bool = True):
        self.manifest = Store(manifest, expect_stage="manifest").df
        self.paths: dict[str, dict[int, Path]] = {}
        for folder, paths in (stores or {}).items():
            if folder not in STORES:
                raise ValueError(f"unknown store folder {folder!r} (known: {', '.join(STORES)})")
            self.paths[folder] = {}
            for path in paths:
                shard = shard_of_store(Path(path))
                if shard is None:
                    raise ValueError(f"{path}: not a per-shard store file ({{shard:03d}}.parquet)")
                self.paths[folder][shard] = Path(path)
        self.stats: Optional[dict[str, Any]] = None
        if stats is not None:
            if not Path(stats).exists():
                raise StoreError(f"{stats}: no prosody statistics (run the prosody_stats rule)")
            self.stats = json.loads(Path(stats).read_text())
        self.cache = GroupCache(int(cache_mb * 2**20))
        self.lazy = lazy
        self._stores: dict[tuple[str, int], Optional[Store]] = {}
        self._shapes: dict[tuple[str, int], dict[str, tuple[int, list[int]]]] = {}
        #: store path -> why it could not be read (its utterances are skipped, not fatal)
        self.unreadable: dict[str, str] = {}

    @classmethod
    def from_results(cls, results_dir: str | Path, folders: Sequence[str] = tuple(STORES),
                     load_stats: bool = True, cache_mb: float = DEFAULT_CACHE_MB, lazy: bool = True) -> "CorpusStores":
        """Every store of ``folders`` found under the workflow's layout of ``results/{corpus}``
        (for tools, tests and notebooks; the stages are given their files)."""
        results_dir = Path(results_dir)
        stores = {}
        for folder in folders:
            stores[folder] = shard_stores(results_dir / folder)
        stats = results_dir / "prosody" / "stats.json" if load_stats else None
        return cls(results_dir / "manifest.parquet", stores, stats, cache_mb, lazy)

    def store(self, folder: str, shard: int) -> Optional[Store]:
        """The store of ``folder`` for ``shard``, or None when it was not given, does not exist or is unreadable."""
        key = (folder, shard)
        if key not in self._stores:
            path = self.paths.get(folder, {}).get(shard)
            store = None
            if path is not None and path.exists():
                try:
                    store = Store(path, expect_stage=STORES[folder][0], lazy=self.lazy, cache=self.cache)
                except StoreUnreadable as exc:
                    self.unreadable[str(path)] = one_line(exc)
            self._stores[key] = store
        return self._stores[key]

    def opened(self, folder: str) -> list[Store]:
        """The store files of ``folder`` opened so far (e.g. to check their metadata)."""
        return [s for (f, _), s in self._stores.items() if f == folder and s is not None]

    def is_unreadable(self, folder: str, shard: int) -> bool:
        path = self.paths.get(folder, {}).get(shard)
        return path is not None and str(path) in self.unreadable

    def rows(self, folder: str, shard: int) -> dict[str, tuple[int, list[int]]]:
        """utt -> (row, shape of the store's length array) of one store file (empty when it is missing)."""
        key = (folder, shard)
        if key not in self._shapes:
            store = self.store(folder, shard)
            if store is None or len(store) == 0:
                self._shapes[key] = {}
            else:
                shapes = store.table.column(STORES[folder][1] + SHAPE_SUFFIX).to_pylist()
                self._shapes[key] = {u: (i, s) for i, (u, s) in enumerate(zip(store.utts, shapes))}
        return self._shapes[key]

    def norm(self, speaker: str, name: str) -> tuple[float, float]:
        """(mean, std) of ``lf0`` or ``energy`` for a speaker, falling back to ``global``, then (0, 1)."""
        stats = self.stats or {}
        for entry in (stats.get("speakers", {}).get(speaker), stats.get("global")):
            if entry and entry.get(name) and entry[name].get("mean") is not None:
                return float(entry[name]["mean"]), float(entry[name]["std"])
        return 0.0, 1.0


class StoreDataset(Sequence[Utterance]):
    """The utterances of one split of a corpus's stores.

    Args:
        source: ``results/{corpus}`` or a :class:`CorpusStores` (share one between splits).
        split: "train", "val" or "test".
        stores: the store folders an utterance must be in (:data:`TRAIN_STORES`;
            :data:`VIDEO_STORES` for inference: items then hold the video only).
        speakers: speaker name -> index for models with a speaker embedding;
            None: items carry no speaker id.

    Attributes:
        utts: utterance ids kept, in manifest order.
        skipped: reason -> count of the split's utterances left out.
    """

    def __init__(
        self,
        source: str | Path | CorpusStores,
        split: str,
        stores: Sequence[str] = TRAIN_STORES,
        speakers: Optional[Mapping[str, int]] = None,
    ):
        unknown = [s for s in stores if s not in STORES]
        if unknown or "roi" not in stores:
            raise ValueError(f"stores must include roi and be among {', '.join(STORES)}, got {list(stores)}")
        self.corpus = (source if isinstance(source, CorpusStores)
                       else CorpusStores.from_results(source, load_stats="prosody" in stores))
        self.split = split
        self.stores = tuple(stores)
        self.speakers = dict(speakers) if speakers is not None else None
        manifest = self.corpus.manifest
        rows = manifest[manifest["split"] == split]
        self.utts: list[str] = []
        self._index: list[tuple[str, int, dict[str, int]]] = []  # speaker, shard, folder -> row
        self._lengths: list[int] = []
        self.skipped: Counter[str] = Counter()
        for utt, speaker, shard in zip(rows["utt"], rows["speaker"], rows["shard"]):
            shard = int(shard)
            found: dict[str, int] = {}
            n_frames: Optional[int] = None
            reason = None
            for folder in self.stores:
                hit = self.corpus.rows(folder, shard).get(utt)
                if hit is None:
                    reason = f"{folder} store unreadable" if self.corpus.is_unreadable(folder, shard) else f"not in {folder}"
                    break
                row, shape = hit
                t, rem = divmod(shape[0], STORES[folder][2])
                if n_frames is None:
                    n_frames = t
                if rem or t != n_frames or t == 0:
                    reason = "length mismatch"
                    break
                found[folder] = row
            if reason is None and self.speakers is not None and speaker not in self.speakers:
                reason = "unknown speaker"
            if reason is not None:
                self.skipped[reason] += 1
                continue
            self.utts.append(utt)
            self._index.append((speaker, shard, found))
            self._lengths.append(int(n_frames))  # type: ignore[arg-type]
        if self.skipped:
            log.info(self.summary())

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: kept and skipped utterances (with reasons)."""
        text = f"{self.split}: {len(self)} utterances"
        if self.skipped:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
            text += f", {self.n_skipped} skipped ({reasons})"
        return text

    def __len__(self) -> int:
        return len(self._index)

    def lengths(self) -> list[int]:
        """Video frames per item (what the trainer's bucketing reads)."""
        return list(self._lengths)

    def __getitem__(self, index: int) -> Utterance:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("StoreDataset takes integer indices")
        speaker, shard, rows = self._index[index]
        c = self.corpus

        def array(folder: str, name: str) -> np.ndarray:
            # a copy: store arrays are read-only views, and torch warns on (and must not write to) them
            return np.array(c.store(folder, shard).array(name, rows[folder]))  # type: ignore[union-attr]

        item = Utterance(
            utt=self.utts[index],
            video=array("roi", "roi"),
            speaker=self.speakers[speaker] if self.speakers is not None else None,
        )
        if "mel" in rows:
            item.mel = array("mel", "mel").astype(np.float32, copy=False)
        if "units" in rows:
            item.units = array("units", "units").astype(np.int64)
        if "prosody" in rows:
            mean, std = c.norm(speaker, "lf0")
            item.pitch = ((array("prosody", "lf0") - mean) / std).astype(np.float32)
            item.voiced = array("prosody", "voiced").astype(bool)
            mean, std = c.norm(speaker, "energy")
            item.energy = ((array("prosody", "energy") - mean) / std).astype(np.float32)
        return item

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data: the utterances and the config hashes of the stores read."""
        hashes = {}
        for folder in self.stores:
            shards = sorted({shard for _, shard, _ in self._index})
            hashes[folder] = sorted({c.meta.config_hash for s in shards if (c := self.corpus.store(folder, s))})
        return {"split": self.split, "utts": list(self.utts), "stores": hashes,
                "stats": (self.corpus.stats or {}).get("config_hash")}


def speaker_ids(manifest: Any, split: str = "train") -> dict[str, int]:
    """Speaker name -> index, over the speakers of ``split`` in sorted order."""
    names = sorted(set(manifest.loc[manifest["split"] == split, "speaker"]))
    return {name: i for i, name in enumerate(names)}

