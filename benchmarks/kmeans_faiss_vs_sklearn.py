"""faiss k-means (what kmeans-fit runs) vs scikit-learn MiniBatchKMeans with the
settings of fairseq's HuBERT ``simple_kmeans`` recipe, on the same features.

Features: the MFCC source of the ssl stage (13 MFCC + deltas + delta-deltas,
50 Hz) of espeak-ng GRID sentences; k = 200. Both are fitted on the same frames
(the first 80 % of the sentences) and scored by the mean squared distance to the
nearest centroid (inertia / frames; lower is better) on those frames and on the
held-out 20 %, plus how much of the codebook the held-out frames use.

    python benchmarks/kmeans_faiss_vs_sklearn.py [--sentences 600] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def score(x: np.ndarray, centroids: np.ndarray) -> tuple[float, int]:
    """(mean squared distance to the nearest centroid, clusters used) over x."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d, labels = index.search(x, 1)
    return float(d.mean()), int(len(np.unique(labels)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=600)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--repeat", type=int, default=3, help="fits per method; the fastest is reported")
    args = ap.parse_args()

    import faiss
    import sklearn
    import torch
    from espeak_speech import espeak_corpus  # beside this script
    from sklearn.cluster import MiniBatchKMeans

    from lipspeech.core.config import default_section
    from lipspeech.features.ssl import mfcc_features
    from lipspeech.features.units import fit_kmeans

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    corpus = espeak_corpus(args.sentences)
    mfcc_cfg = default_section("ssl")["mfcc"]
    feats = [mfcc_features(a, len(a) // 640, mfcc_cfg) for _, a in corpus]
    n_fit = int(0.8 * len(feats))
    x = np.concatenate(feats[:n_fit]).astype(np.float32)
    held = np.concatenate(feats[n_fit:]).astype(np.float32)
    seconds = sum(len(a) for _, a in corpus) / 16000
    print(f"{len(corpus)} sentences, {seconds / 60:.1f} min of speech; fit on {x.shape[0]} frames, "
          f"held out {held.shape[0]}, {x.shape[1]} dims, k = {args.k}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    # warm-up (faiss/OpenMP start-up)
    fit_kmeans(x[: 20 * args.k], args.k, args.seed, 2, log=lambda m: None, init="kmeans++")

    rows = []
    niter = default_section("kmeans")["niter"]
    # the settings of fairseq's examples/hubert/simple_kmeans/learn_kmeans.py
    recipe = dict(init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
                  reassignment_ratio=0.0, compute_labels=False)

    def faiss_redo() -> np.ndarray:
        km = faiss.Kmeans(x.shape[1], args.k, niter=niter, nredo=5, seed=args.seed, max_points_per_centroid=10**6)
        km.train(x)
        return km.centroids

    candidates = [
        (f"faiss Kmeans, k-means++ seeding, niter={niter} (kmeans-fit default)",
         lambda: fit_kmeans(x, args.k, args.seed, niter, log=lambda m: None, init="kmeans++")[0]),
        (f"faiss Kmeans, random seeding (faiss's own), niter={niter}",
         lambda: fit_kmeans(x, args.k, args.seed, niter, log=lambda m: None, init="random")[0]),
        (f"faiss Kmeans, random seeding, niter={niter}, nredo=5 (best of 5)", faiss_redo),
        (f"sklearn {sklearn.__version__} MiniBatchKMeans (fairseq recipe: n_init=20, batch 10000)",
         lambda: MiniBatchKMeans(n_clusters=args.k, random_state=args.seed, **recipe).fit(x).cluster_centers_),
        ("sklearn MiniBatchKMeans, same recipe but n_init=1",
         lambda: MiniBatchKMeans(n_clusters=args.k, random_state=args.seed,
                                 **{**recipe, "n_init": 1}).fit(x).cluster_centers_),
    ]
    for label, fit in candidates:
        times = []
        for _ in range(args.repeat):  # seeded: every repeat gives the same centroids
            t = time.perf_counter()
            centroids = fit()
            times.append(time.perf_counter() - t)
        rows.append((label, min(times), score(x, centroids)[0], *score(held, centroids)))

    print("\n| method | fit time (s, best of repeats) | mean sq. distance, fit frames | mean sq. distance, held out "
          "| clusters used (held out) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, sec, msd_fit, msd_held, used in rows:
        print(f"| {label} | {sec:.2f} | {msd_fit:.1f} | {msd_held:.1f} | {used} / {args.k} |")


if __name__ == "__main__":
    main()
