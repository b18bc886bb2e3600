"""The units' posteriors embedded instead of their argmax: does a softer unit choice bring the voice nearer?

    python benchmarks/soft_units.py --results results/synthgrid --model ltbs_stream_dla2_more --chunk 1 \\
        --compare ltbs_stream_dla2_more_c1 ltbs_init_more

Run from the repository root (it reads ``config.yaml`` and the ``--config`` files after it, as the
workflow does). At inference the model embeds the argmax of each predicted unit; here each unit's
embedding is instead the mean of the unit embeddings weighted by the predicted posterior,
``softmax(logits / tau)`` (``--tau``; 0: the argmax, the model's own synthesis). Nothing is trained and
the latency is the model's. The test split is decoded (in chunks of ``--chunk`` frames for a streaming
model, whole clips otherwise), vocoded and evaluated as any system
(``<results>/hybrids/soft_units_<model>_tau<tau>``), and its paired differences from the ``--compare``
systems' eval tables are printed.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from lipspeech.core.timing import UNITS_PER_FRAME
from lipspeech.models.ltbs import LTBSModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_hybrid import model_parser, score_model  # noqa: E402


class SoftUnits(torch.nn.Module):
    """``model`` whose variance adaptor embeds the unit posteriors at temperature ``tau`` (0: the argmax)."""

    def __init__(self, model: LTBSModel, tau: float):
        super().__init__()
        if model.adaptor.linguistic is None:
            raise ValueError("the model has no linguistic predictor: there are no units to embed")
        self.model, self.tau = model, tau

    def embed(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 2T, n_units) unit logits -> (B, T, D): each unit's posterior-weighted embedding, projected as the
        adaptor projects a frame's two unit embeddings."""
        ad = self.model.adaptor
        b, t2, _ = logits.shape
        soft = F.softmax(logits / self.tau, -1) @ ad.unit_embed.weight
        return ad.unit_proj(soft.view(b, t2 // UNITS_PER_FRAME, -1))

    def infer(self, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own :meth:`~lipspeech.models.ltbs.LTBSModel.infer`, its adaptor embedding with :meth:`embed`."""
        if self.tau <= 0:  # the argmax: the adaptor's own embedding
            return self.model.infer(*args, **kwargs)
        adaptor = self.model.adaptor
        adaptor.forward = functools.partial(type(adaptor).forward, adaptor, embed_logits=self.embed)
        try:
            return self.model.infer(*args, **kwargs)
        finally:
            del adaptor.forward


def main() -> None:
    ap = model_parser(__doc__)
    ap.add_argument("--tau", type=float, default=1.0, help="the posteriors' temperature (0: the argmax)")
    args = ap.parse_args()
    score_model(ap, args, lambda model: SoftUnits(model, args.tau), f"soft_units_{args.model}_tau{args.tau:g}",
                {"tau": args.tau})


if __name__ == "__main__":
    main()
