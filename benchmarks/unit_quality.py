"""How phonetic the demo's units are: phone purity, cluster purity and PNMI of MFCC k-means units
against SynthGRID's own phone timings, for several cluster counts.

    python benchmarks/unit_quality.py results/synthgrid [--k 50 100 200] [--seed 1234]

Reads a finished SynthGRID run: the decode stores (audio), the manifest (split), the generator's
phone timings (``raw/{speaker}/mouth/{utt}.npz``) and, for a check, the units stores. Features are
the pipeline's own MFCC features (``ssl.mfcc`` of config.yaml); k-means (the pipeline's faiss
k-means++, ``kmeans`` settings) is fitted on the train split and the figures are measured on the
test split at 50 Hz.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--k", type=int, nargs="+", default=[50, 100, 200])
    args = ap.parse_args()

    import faiss

    from lipspeech.config import load_config
    from lipspeech.features.ssl import mfcc_features
    from lipspeech.features.unit_quality import phone_frames, unit_quality
    from lipspeech.features.units import assign_units, fit_kmeans
    from lipspeech.store import Store
    from lipspeech.timing import UNITS_PER_FRAME

    cfg = load_config(args.config)
    manifest = Store(args.results / "manifest.parquet").df.set_index("utt")
    feats, phones, split, demo_units = {}, {}, {}, {}
    for path in sorted((args.results / "audio").glob("[0-9][0-9][0-9].parquet")):
        store = Store(path)
        units = Store(args.results / "units" / path.name)
        unit_row = units.row_index()
        for i, utt in enumerate(store.utts):
            n = int(store.df["n_frames"][i])
            feats[utt] = mfcc_features(np.array(store.array("audio", i)), n, cfg["ssl"]["mfcc"])
            speaker, name = manifest.at[utt, "speaker"], Path(manifest.at[utt, "video_path"]).stem
            truth = np.load(args.results / "raw" / speaker / "mouth" / f"{name}.npz")
            phones[utt] = phone_frames(truth["phonemes"], truth["phoneme_start"], truth["phoneme_end"],
                                       n * UNITS_PER_FRAME)
            split[utt] = manifest.at[utt, "split"]
            if utt in unit_row:
                demo_units[utt] = np.asarray(units.array("units", unit_row[utt]))
    train = [u for u in feats if split[u] == "train"]
    test = [u for u in feats if split[u] == "test"]
    x = np.concatenate([feats[u] for u in train]).astype(np.float32)
    # the units stage clusters the raw MFCC (+ deltas); standardised dimensions are shown for comparison
    mean, std = x.mean(0), x.std(0) + 1e-8
    y_test = np.concatenate([phones[u] for u in test])
    print(f"{len(train)} train / {len(test)} test utterances, {len(x)} train frames, "
          f"{len(y_test)} test frames, {len(set(y_test))} phone labels (incl. silence)\n")
    print("| units | k | phone purity | cluster purity | PNMI | fit (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if demo_units:
        q = unit_quality(y_test, np.concatenate([demo_units[u] for u in test]))
        print(f"| the demo's units store (MFCC) | {q['units']} | {q['phone_purity']:.3f} | "
              f"{q['cluster_purity']:.3f} | {q['pnmi']:.3f} | - |")
    for k in args.k:
        for name, scale in (("MFCC", False), ("MFCC, standardised", True)):
            data = (x - mean) / std if scale else x
            t = time.perf_counter()
            centroids, _, _ = fit_kmeans(data, k, int(cfg["kmeans"]["seed"]), int(cfg["kmeans"]["niter"]),
                                         log=lambda *_: None)
            fit = time.perf_counter() - t
            index = faiss.IndexFlatL2(centroids.shape[1])
            index.add(centroids)
            z = np.concatenate([assign_units((feats[u] - mean) / std if scale else feats[u], index) for u in test])
            q = unit_quality(y_test, z)
            print(f"| {name} | {k} | {q['phone_purity']:.3f} | {q['cluster_purity']:.3f} | {q['pnmi']:.3f} | "
                  f"{fit:.1f} |")


if __name__ == "__main__":
    main()
