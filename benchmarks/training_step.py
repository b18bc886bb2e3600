"""Time of a CPU training step (the demo's model), and where it goes.

    python benchmarks/training_step.py --results results/synthgrid [--steps 40] [--threads 2]
        [--preset small] [--model '{"frontend_channels": [16, 32, 64, 128]}']
        [--train '{"deterministic": false}'] [--profile]

Trains ``--steps`` steps of the ``--preset`` model (batch 8, as the demo) through
:func:`lipspeech.training.trainer.train` on the train split of a finished corpus
(``make demo`` first), with no validation, and prints the milliseconds per step of the
steps after the first five (the first ones warm up oneDNN and the reader). The
reader is the one the stage uses, with its cache (the demo's corpus is decoded once).
With ``--profile`` it also prints torch's profile of six more steps of the run
(checkpointing at their end included), the operators by their own time. To compare
two checkouts in one run (machines here differ 2x in speed), run the script of one
checkout with ``PYTHONPATH`` set to the other.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lipspeech.models.presets import model_config
from lipspeech.training.config import train_config
from lipspeech.training.stores import TRAIN_STORES, CorpusStores, StoreDataset
from lipspeech.training.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/synthgrid", help="a corpus's results folder (after make demo)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--model", default="{}", help="model-key overrides of the preset, JSON")
    ap.add_argument("--train", default="{}", help="train-section overrides, JSON")
    ap.add_argument("--profile", action="store_true", help="also print the operator profile of six steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    corpus = CorpusStores.from_results(args.results)
    data = StoreDataset(corpus, "train", TRAIN_STORES)
    mcfg = model_config(args.preset, json.loads(args.model))
    tcfg = train_config({"max_steps": args.steps, "val_every": 10 * args.steps, "threads": args.threads,
                         "progress": False, "tensorboard": False, **json.loads(args.train)})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train(mcfg, tcfg, data, None, run, stop_at_step=5)
        started = time.perf_counter()
        result = train(mcfg, tcfg, data, None, run, resume=True)
        seconds = time.perf_counter() - started
        last = [h for h in result.history if h["split"] == "train"][-1]
        print(f"{args.preset}, batch {tcfg['batch_size']}, {args.threads} threads: "
              f"{seconds / (args.steps - 5) * 1000:.0f} ms/step over steps 6-{args.steps} "
              f"(loss at step {last['step']}: {last['total']:.4f})")
        if args.profile:  # six more steps of the same run, under the profiler
            from torch.profiler import ProfilerActivity, profile

            more = {**tcfg, "max_steps": args.steps + 6}
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train(mcfg, more, data, None, run, resume=True)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=40))


if __name__ == "__main__":
    main()
