"""Several training runs of one recipe averaged weight by weight (a "soup"), scored as one model.

    python benchmarks/weight_soup.py --results results/synthgrid_grid \\
        --config configs/gridscale.yaml configs/gridscale_streaming.yaml \\
        --models ltbs_stream_dla2_more3 ltbs_stream_dla2_more3_seed2 ltbs_stream_dla2_more3_seed3 --chunk 1

Run from the repository root (it reads ``config.yaml`` and the ``--config`` files after it, as the
workflow does). ``--models`` names trained experiments of one architecture, normally the same recipe
with other training seeds started from the same weights (so they lie in one basin, where an average of
weights is itself a good model). Each one's averaged (EMA) weights, what its validation chose, are
averaged again uniformly over the runs, batch-norm statistics included, and the result decodes the test
split (in chunks of ``--chunk`` for a streaming model) and is vocoded and evaluated as any system, into
``<results>/hybrids/soup_<first model>_<n>`` (``_c<chunk>`` for chunks). It answers whether a
streaming model gains more than its offline control from averaging away its training noise: a soup of
n runs has n times the last phase's training compute, so compare it with the offline model's soup.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lipspeech.training.bundle import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_hybrid import model_parser, score_bundle  # noqa: E402


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of ``states`` (state dicts of one architecture), tensor by tensor; integer
    tensors (batch-norm's batch counters) are the first state's.

    Raises:
        ValueError: no states, or states whose names or shapes differ.
    """
    if not states:
        raise ValueError("no weights to average")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.keys() != first.keys():
            raise ValueError(f"model {i} has other tensors than model 0: {sorted(set(s) ^ set(first))[:3]}")
        bad = [k for k in first if s[k].shape != first[k].shape]
        if bad:
            raise ValueError(f"model {i} differs from model 0 in shape at {bad[0]}: "
                             f"{tuple(s[bad[0]].shape)} against {tuple(first[bad[0]].shape)}")
    return {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if torch.is_floating_point(v)
            else v.clone() for k, v in first.items()}


def main() -> None:
    ap = model_parser(__doc__, several=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    bundles = [load_model(args.results / "models" / m / "ckpt" / "best.pt", "cpu", weights="average")
               for m in args.models]
    if any(b.model_cfg != bundles[0].model_cfg for b in bundles[1:]):
        ap.error("--models must share one model config (one architecture and streaming setting)")
    model = bundles[0].model
    model.load_state_dict(average_states([b.model.state_dict() for b in bundles]))
    name = f"soup_{args.models[0]}_{len(args.models)}" + (f"_c{args.chunk}" if args.chunk is not None else "")
    score_bundle(ap, args, args.models, bundles[0], model, name, {"models": args.models})


if __name__ == "__main__":
    main()
