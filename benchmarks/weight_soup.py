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

from lipspeech.core.config import config_hash, load_config
from lipspeech.training.bundle import load_model
from lipspeech.training.stage import corpus_stores
from lipspeech.training.stores import VIDEO_STORES, StoreDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_hybrid import score, synthesis_parser  # noqa: E402


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
    ap = synthesis_parser(__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="the experiments whose weights to average")
    ap.add_argument("--chunk", type=int, help="decode a streaming model in chunks of this many frames")
    ap.add_argument("--compare", nargs="*", default=[], help="eval systems to print paired differences from")
    args = ap.parse_args()
    torch.set_num_threads(2)
    R = args.results
    bundles = [load_model(R / "models" / m / "ckpt" / "best.pt", "cpu", weights="average") for m in args.models]
    if any(b.model_cfg != bundles[0].model_cfg for b in bundles[1:]):
        ap.error("--models must share one model config (one architecture and streaming setting)")
    if args.chunk is not None and bundles[0].model.streaming is None:
        ap.error(f"--chunk: {args.models[0]} is an offline model")
    model = bundles[0].model
    model.load_state_dict(average_states([b.model.state_dict() for b in bundles]))
    name = f"soup_{args.models[0]}_{len(args.models)}" + (f"_c{args.chunk}" if args.chunk is not None else "")
    out = R / "hybrids" / name
    out.mkdir(parents=True, exist_ok=True)
    data = StoreDataset(corpus_stores(R, False), "test", VIDEO_STORES, bundles[0].speakers)
    key = config_hash({"models": args.models, "chunk": args.chunk}, {"temperature": args.temperature})
    score(model, data, load_config("config.yaml", *args.config), R, out, name, key, args.chunk, args.temperature,
          bundles[0].model_cfg["n_mels"], {"models": args.models}, args.compare)


if __name__ == "__main__":
    main()
