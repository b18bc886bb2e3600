"""Model size and CPU training-step time of the LTBS presets.

1. Parameter counts of the ``paper`` and ``tiny`` presets, per component
   (front-end, encoder, variance adaptor, decoder, post-net).
2. Time per training step (forward, backward, clip, AdamW) of ``tiny`` on the
   CPU, for GRID-length utterances (75 frames = 3 s) and for short ones.
   Optionally (``--paper``) one step of ``paper`` as well (slow on a CPU).

Inputs are synthetic (:func:`lipspeech.training.data.synthetic_utterances`);
the numbers depend only on shapes.

    python benchmarks/model_size.py [--batch-size 4] [--steps 5] [--threads N] [--paper]
"""

from __future__ import annotations

import argparse
import time

import torch

from lipspeech.models import build_model, collate, count_parameters, model_config
from lipspeech.training.config import train_config
from lipspeech.training.data import synthetic_utterances
from lipspeech.training.trainer import make_optimizer

PARTS = ("frontend", "visual_proj", "encoder", "adaptor", "upsampler", "decoder", "mel_proj", "postnet")


def parameter_table() -> None:
    models = {name: build_model(model_config(name)) for name in ("paper", "tiny")}
    print(f"{'component':<14}" + "".join(f"{name:>16}" for name in models))
    for part in PARTS:
        counts = []
        for model in models.values():
            module = getattr(model, part, None)
            counts.append(count_parameters(module) if module is not None else 0)
        print(f"{part:<14}" + "".join(f"{c:>16,}" for c in counts))
    print(f"{'total':<14}" + "".join(f"{count_parameters(m):>16,}" for m in models.values()))


def step_time(preset: str, batch_size: int, frames: int, steps: int, warmup: int = 1) -> float:
    """Median seconds per training step."""
    torch.manual_seed(0)
    cfg = model_config(preset)
    model = build_model(cfg).train()
    optimizer = make_optimizer(model, train_config())
    batch = collate(synthetic_utterances(batch_size, frames, seed=0, n_mels=cfg["n_mels"], n_units=cfg["n_units"]))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = model(batch).losses["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--paper", action="store_true", help="also time one step of the paper preset")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    parameter_table()
    print()
    for frames in (75, 20):
        t = step_time("tiny", args.batch_size, frames, args.steps)
        print(f"tiny  training step, batch {args.batch_size} x {frames} frames ({frames / 25:.1f} s): {t * 1000:.0f} ms")
    if args.paper:
        t = step_time("paper", args.batch_size, 75, 1)
        print(f"paper training step, batch {args.batch_size} x 75 frames (3.0 s): {t * 1000:.0f} ms")


if __name__ == "__main__":
    main()
