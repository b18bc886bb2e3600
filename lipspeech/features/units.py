"""K-means over SSL features (stage kmeans-fit) and the discrete units (stage units).

kmeans-fit draws ``kmeans.sample_frames`` frames uniformly at random (seeded) from
the train utterances of every ssl shard and runs faiss k-means with ``kmeans.k``
clusters (200, the paper's best; k-means++ seeding unless ``kmeans.init`` is
``random``), writing ``kmeans/centroids.npy`` ((k, D) float32) and
``kmeans/kmeans.json`` (config hash, k, sample size, objective). On a tiny
corpus with fewer sampled frames than ``k`` the number of clusters is clamped
to the number of frames (the log and the json say so) rather than failing, so
the demo and the test fixture run end to end; the units then take values in
``[0, k_used)``.

units assigns every 50 Hz frame its nearest centroid (faiss, L2). Store
``units/{shard}.parquet``: ``utt, n_frames, duration`` and ``units`` int16
``(T * 2,)`` (the ssl features already have ``T * 2`` rows by
:func:`lipspeech.core.timing.fit_length`; the assignment keeps that length).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.settings import KmeansConfig, SslConfig
from lipspeech.core.shards import ShardResult, StageError, open_input_store, open_stores
from lipspeech.core.store import SHAPE_SUFFIX, Store, atomic_path, write_text_atomic

STAGE_FIT = "kmeans"
STAGE_UNITS = "units"
# faiss warns below this many points per centroid; we warn ourselves, once, with the numbers.
MIN_POINTS_PER_CENTROID = 39


def kmeans_hash(ssl_cfg: Mapping[str, Any], kmeans_cfg: Mapping[str, Any]) -> str:
    """Centroids and units depend on both the features and the clustering."""
    return config_hash(dict(ssl_cfg), dict(kmeans_cfg))


def sample_frames(
    ssl_paths: Sequence[Path], utts: set[str] | None, n_sample: int, seed: int, progress: bool = True, *,
    fail_fast: bool, log: Any = print,
) -> np.ndarray:
    """Draw up to ``n_sample`` frames uniformly without replacement across stores.

    Args:
        ssl_paths: ssl stores (unreadable ones are skipped with a warning on ``log``,
            or fail the stage with ``fail_fast``).
        utts: utterances to draw from (None: all).
        n_sample: frames wanted (all frames when fewer exist).
        seed: random seed; the same stores and seed give the same sample.

    Returns:
        (n, D) float32, n = min(n_sample, frames available).
    """
    counts: list[tuple[Path, list[int], list[int]]] = []  # store, row indices, frames per row
    for path, store in open_stores(ssl_paths, "ssl", fail_fast, log):
        if not len(store):
            continue
        shapes = store.table.column("features" + SHAPE_SUFFIX).to_pylist()
        rows = [i for i, u in enumerate(store.utts) if utts is None or u in utts]
        counts.append((path, rows, [shapes[i][0] for i in rows]))
    total = sum(sum(n) for _, _, n in counts)
    if total == 0:
        return np.zeros((0, 0), dtype=np.float32)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(n_sample, total), replace=False))
    parts: list[np.ndarray] = []
    start = 0
    for path, rows, n_per_row in tqdm(counts, desc="kmeans sample", unit="shard", disable=not progress):
        end = start + sum(n_per_row)
        lo, hi = np.searchsorted(chosen, [start, end])
        if hi > lo:
            store = Store(path, expect_stage="ssl")
            offsets = np.concatenate([[start], start + np.cumsum(n_per_row)])
            picks = chosen[lo:hi]
            row_of = np.searchsorted(offsets, picks, side="right") - 1
            for r in np.unique(row_of):
                feats = store.array("features", rows[r])
                parts.append(np.asarray(feats[picks[row_of == r] - offsets[r]], dtype=np.float32))
        start = end
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def kmeanspp_init(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding (D^2 sampling): (n, D) frames -> (k, D) initial centroids.

    faiss seeds with k random frames; on speech features that lands ~4 % higher in
    inertia than k-means++ after the same Lloyd iterations (benchmarks/README.md).
    Cost O(n k D), small next to the iterations themselves.
    """
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    norms = np.einsum("nd,nd->n", x, x)
    centroids = np.empty((k, x.shape[1]), dtype=np.float32)

    def sq_dist(c: np.ndarray) -> np.ndarray:
        # |x|^2 - 2 x.c + |c|^2: one matrix-vector product per centroid instead of an (n, D) temporary
        return np.maximum(norms - 2 * (x @ c) + c @ c, 0).astype(np.float64)

    centroids[0] = x[rng.integers(n)]
    d2 = sq_dist(centroids[0])
    for j in range(1, k):
        total = d2.sum()
        # all remaining frames coincide with a centroid: any frame will do
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centroids[j] = x[idx]
        np.minimum(d2, sq_dist(centroids[j]), out=d2)
    return centroids


def fit_kmeans(
    x: np.ndarray, k: int, seed: int, niter: int, log: Any = print, *, init: str,
) -> tuple[np.ndarray, float, int]:
    """faiss k-means on ``x``.

    Args:
        x: (n, D) float32 frames.
        k: clusters wanted; clamped to ``n`` when there are fewer frames (with a warning).
        seed: seed of the initial centroids; same data and seed give the same centroids, whatever
            the thread count faiss was given (the fit runs on one thread).
        niter: Lloyd iterations.
        log: where warnings go (one line each).
        init: "kmeans++" (D^2 seeding, :func:`kmeanspp_init`) or "random" (faiss's own: k random frames).

    Returns:
        centroids (k_used, D) float32, objective (sum of squared distances), k_used.
    """
    import faiss

    n, d = x.shape
    if n == 0:
        raise StageError("kmeans-fit: no train frames to fit on (no train utterances in any ssl shard)")
    k_used = min(k, n)
    if k_used < k:
        log(f"warning: only {n} frames sampled, fewer than kmeans.k = {k}: clamping k to {k_used} (tiny corpus)")
    elif n < k * MIN_POINTS_PER_CENTROID:
        log(f"warning: {n} frames for k = {k} (< {MIN_POINTS_PER_CENTROID} per centroid): "
            "centroids will be poorly estimated")
    km = faiss.Kmeans(
        d, k_used, niter=niter, seed=seed, verbose=False,
        # we sampled already: stop faiss from subsampling again, and from warning about small data
        max_points_per_centroid=max(256, -(-n // k_used)), min_points_per_centroid=1,
    )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if init not in ("kmeans++", "random"):
        raise ValueError(f"kmeans init must be kmeans++ or random, got {init!r}")
    start = kmeanspp_init(x, k_used, seed) if init == "kmeans++" else None
    # one thread: faiss's Lloyd iterations round differently with more, and after ~20 iterations the
    # centroids differ (52k MFCC-sized frames, 1 against 2 threads), so the units would depend on the
    # cores a run had (a cluster job against a laptop). The demo's fit takes ~1 s; a 200k-frame
    # HuBERT fit tens of seconds
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        km.train(x, init_centroids=start)
    finally:
        faiss.omp_set_num_threads(threads)
    objective = float(km.obj[-1]) if len(km.obj) else float("nan")
    return np.ascontiguousarray(km.centroids, dtype=np.float32), objective, k_used


def kmeans_fit(
    ssl_paths: Sequence[Path], manifest_path: Path, ssl_cfg: Mapping[str, Any], kmeans_cfg: Mapping[str, Any],
    out_centroids: Path, out_json: Path, progress: bool = True, log: Any = print, *, fail_fast: bool,
) -> dict[str, Any]:
    """Fit the k-means of the units on train frames of every ssl shard; returns what the json holds.

    ``ssl_cfg``, ``kmeans_cfg``: the validated sections' mappings (the json records their hash).
    """
    kmeans = KmeansConfig.from_section(kmeans_cfg)
    manifest = Store(manifest_path, expect_stage="manifest").df
    train = set(manifest.loc[manifest["split"] == "train", "utt"])
    x = sample_frames(ssl_paths, train, kmeans.sample_frames, kmeans.seed, progress, fail_fast=fail_fast, log=log)
    centroids, objective, k_used = fit_kmeans(x, kmeans.k, kmeans.seed, kmeans.niter, log, init=kmeans.init)
    info = {
        "stage": STAGE_FIT,
        "config_hash": kmeans_hash(ssl_cfg, kmeans_cfg),
        "source": SslConfig.from_section(ssl_cfg).source,
        "k_requested": kmeans.k,
        "k": k_used,
        "clamped": k_used < kmeans.k,
        "dim": int(x.shape[1]),
        "frames_sampled": int(x.shape[0]),
        "objective": objective,
        "mean_sq_distance": objective / max(1, x.shape[0]),
        "seed": kmeans.seed,
        "init": kmeans.init,
    }
    with atomic_path(out_centroids) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, centroids)
    write_text_atomic(out_json, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


def assign_units(features: np.ndarray, index: Any) -> np.ndarray:
    """(L, D) features -> (L,) int16 index of the nearest centroid (L2)."""
    _, labels = index.search(np.ascontiguousarray(features, dtype=np.float32), 1)
    return labels[:, 0].astype(np.int16)


def units_shard(
    ssl_path: Path, centroids_path: Path, ssl_cfg: Mapping[str, Any], kmeans_cfg: Mapping[str, Any],
    out: Path, rejected_out: Path, progress: bool = True, manifest: Path | None = None, *, fail_fast: bool,
) -> tuple[int, int]:
    """Assign units to every utterance of one ssl store; returns (n_ok, n_rejected).

    ``manifest`` and ``fail_fast`` as for :func:`lipspeech.features.mel.mel_shard`.
    """
    import faiss

    centroids = np.load(centroids_path)
    if centroids.shape[0] > np.iinfo(np.int16).max + 1:
        raise StageError(f"{centroids.shape[0]} centroids do not fit the int16 units store")
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    store, unreadable = open_input_store(ssl_path, "ssl", manifest, fail_fast)
    n_frames = [int(n) for n in store.df["n_frames"]] if store is not None and len(store) else []
    res = ShardResult(rejected=unreadable)
    utts = store.utts if store is not None else []
    for i, utt in enumerate(tqdm(utts, desc=f"units {ssl_path.stem}", unit="utt", disable=not progress)):
        feats = store.array("features", i)
        if feats.ndim != 2 or feats.shape[1] != centroids.shape[1]:
            res.reject(utt, f"features have shape {feats.shape}, centroids have dimension {centroids.shape[1]}")
        elif not np.all(np.isfinite(feats)):
            res.reject(utt, "features have NaN or infinite values")
        else:
            res.add(utt, n_frames[i], units=assign_units(feats, index))
    return res.write(
        out, rejected_out, STAGE_UNITS, kmeans_hash(ssl_cfg, kmeans_cfg), ["units"],
        extra={"k": int(centroids.shape[0])}, fail_fast=fail_fast,
    )
