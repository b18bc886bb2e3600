"""Memory and speed of the training reader: the lazy row-group reader against whole-store decoding.

    python benchmarks/streaming_reader.py --results results/synthgrid --work /tmp/reader-bench \
        [--scales 1 4 16] [--steps 40] [--workers 0 1 2] [--cache-mb 256]

Needs a finished demo (``make demo``): its train-split stores are the 1x corpus; the Nx corpora
repeat every utterance N times under new ids (``{utt}~k``, the same arrays, new stores written
with the store writer, so with today's row groups). For every scale it trains the demo's model
(``small`` preset, batch 8, the demo's ``train`` settings otherwise) for ``--steps`` steps, in a
fresh process each time, with

- the lazy reader (``train.reader_cache_mb`` = ``--cache-mb``) and 0, 1, 2 DataLoader workers,
- the whole-store reader (each store file decoded whole on first use, as before row groups), 0 workers,

and prints one row each: peak RSS of the training process, and of it and its workers together
(sampled every 0.1 s), Arrow's peak memory in the training process, and steps/s over the steps
after the first five (the model built; the whole-store reader has decoded every store by then,
the lazy one decodes as it goes, so runs shorter than an epoch favour the whole-store reader).
Speeds are also given as a ratio to the whole-store reader at 1x, measured in the same run
(machines differ 2x; the ratio is what carries over).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

RUN = """
import json, os, resource, sys, time
from pathlib import Path
import pyarrow as pa
import torch
from lipspeech.core.config import load_config, validate_config
from lipspeech.models.presets import model_config
from lipspeech.training import train, train_config
from lipspeech.training.stores import TRAIN_STORES, CorpusStores, StoreDataset

results, run, lazy, workers, steps, cache_mb, threads = sys.argv[1:8]
cfg = validate_config(load_config("config.yaml"))
torch.set_num_threads(int(threads))
corpus = CorpusStores.from_results(results, TRAIN_STORES, cache_mb=float(cache_mb), lazy=lazy == "lazy")
data, val = StoreDataset(corpus, "train", TRAIN_STORES), StoreDataset(corpus, "val", TRAIN_STORES)
mcfg = model_config(cfg["model"]["preset"], cfg["model"].get("overrides") or {})
steps = int(steps)
tcfg = train_config({**cfg["train"], "max_steps": steps, "val_every": steps, "val_max_batches": 1,
                     "num_workers": int(workers), "threads": int(threads), "progress": False, "tensorboard": False,
                     "device": "cpu"})
import threading

def tree_rss_mb():  # this process and its DataLoader workers (its children), MB
    total, pids = 0, [os.getpid()]
    for task in os.listdir("/proc/self/task"):
        try:
            pids += [int(p) for p in open(f"/proc/self/task/{task}/children").read().split()]
        except OSError:
            pass
    for pid in pids:
        try:
            total += next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024

peak = [0.0]
done = threading.Event()
def sample():
    while not done.wait(0.1):
        peak[0] = max(peak[0], tree_rss_mb())
threading.Thread(target=sample, daemon=True).start()
train(mcfg, tcfg, data, val, Path(run), stop_at_step=5)
t = time.perf_counter()
train(mcfg, tcfg, data, val, Path(run))
seconds = time.perf_counter() - t
done.set()
print(json.dumps({"steps_per_s": (steps - 5) / seconds, "tree_rss_mb": peak[0],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "arrow_mb": pa.default_memory_pool().max_memory() / 2**20, "utterances": len(data)}))
"""


def scaled_corpus(results: Path, out: Path, scale: int) -> Path:
    """``results``'s manifest and train-time stores with every utterance repeated ``scale`` times."""
    import pyarrow as pa

    from lipspeech.core.shards import shard_stores
    from lipspeech.core.store import Store, write_store

    if (out / "manifest.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    def rekey(store: Store, path: Path) -> None:
        n = len(store)
        utts = [f"{u}~{k}" if k else u for k in range(scale) for u in store.utts]
        df = store.df
        columns = {c: pa.array(list(df[c]) * scale) for c in df.columns if c != "utt"}
        arrays = {name: [store.array(name, i) for _ in range(scale) for i in range(n)] for name in store.array_names}
        write_store(path, store.meta, utts, columns, arrays)

    rekey(Store(results / "manifest.parquet"), out / "manifest.parquet")
    for folder in ("roi", "mel", "units", "prosody"):
        (out / folder).mkdir(exist_ok=True)
        for path in shard_stores(results / folder):
            rekey(Store(path), out / folder / path.name)
    shutil.copy(results / "prosody" / "stats.json", out / "prosody" / "stats.json")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results/synthgrid"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/reader-bench"))
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cache-mb", type=float, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    rows = []
    for scale in args.scales:
        corpus = scaled_corpus(args.results, args.work / f"x{scale}", scale)
        configs = [("lazy", w) for w in args.workers] + [("whole-store", 0)]
        for reader, workers in configs:
            run = args.work / f"run-x{scale}-{reader}-{workers}"
            shutil.rmtree(run, ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN), str(corpus), str(run),
                                  "lazy" if reader == "lazy" else "eager", str(workers), str(args.steps),
                                  str(args.cache_mb), str(args.threads)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            row = {"scale": scale, "reader": reader, "workers": workers,
                   **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next(r["steps_per_s"] for r in rows if r["reader"] == "whole-store" and r["scale"] == min(args.scales))
    print("\n| corpus | utterances | reader | workers | peak RSS (MB) | with workers (MB) | Arrow peak (MB) | "
          "steps/s | vs whole-store 1x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']}x | {r['utterances']} | {r['reader']} | {r['workers']} | {r['rss_mb']:.0f} | "
              f"{r['tree_rss_mb']:.0f} | {r['arrow_mb']:.0f} | {r['steps_per_s']:.2f} | "
              f"{r['steps_per_s'] / base:.2f} |")


if __name__ == "__main__":
    main()
