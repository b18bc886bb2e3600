"""Does a model's speech depend on where in the clip a word falls? Each clip delayed by still frames, scored.

    python benchmarks/time_shift.py --results results/synthgrid_grid \\
        --config configs/gridscale.yaml configs/gridscale_streaming.yaml --model ltbs_init_more3 --frames 10

Run from the repository root (it reads ``config.yaml`` and the ``--config`` files after it, as the
workflow does). Each test clip gets ``--frames`` copies of its first frame put before it (a GRID clip
opens on the speaker's still face, so this is more of the same opening), the model synthesises the
longer clip, and the mel frames of the added video frames are cut off again: the same speech, each word
``--frames`` x 40 ms later in the model's input. An offline model with absolute positions sees the change;
a streaming model (relative positions, a window of memory) should not, past its first second. The mels
are vocoded and evaluated as any system (``<results>/hybrids/shift<frames>_<model>``) and the paired
differences from ``--compare`` systems' eval tables are printed; ``voice_halves.py`` reads the result as
``hybrids/shift<frames>_<model>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lipspeech.core.timing import MEL_PER_FRAME
from lipspeech.models.ltbs import LTBSModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_hybrid import model_parser, score_model  # noqa: E402


class Shifted(torch.nn.Module):
    """``model`` whose input clips begin with ``frames`` extra copies of their first frame, and whose output
    mels lose the frames those copies made."""

    def __init__(self, model: LTBSModel, frames: int):
        super().__init__()
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        self.model, self.frames = model, frames

    def infer(self, video: torch.Tensor, video_lengths: torch.Tensor, *args, **kwargs
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's :meth:`~lipspeech.models.ltbs.LTBSModel.infer` on the delayed clips (B, frames + T, ...),
        its mels (B, 4T, n_mels) from the first frame of the original clip on."""
        k = self.frames
        still = video[:, :1].expand(-1, k, *video.shape[2:])
        coarse, post = self.model.infer(torch.cat([still, video], 1), video_lengths + k, *args, **kwargs)
        cut = k * MEL_PER_FRAME
        return coarse[:, cut:], post[:, cut:]


def main() -> None:
    ap = model_parser(__doc__)
    ap.add_argument("--frames", type=int, default=10, help="still frames to put before each clip (40 ms each)")
    args = ap.parse_args()
    if args.frames < 0:
        ap.error("--frames must be >= 0")
    name = f"shift{args.frames}_{args.model}" + (f"_c{args.chunk}" if args.chunk is not None else "")
    score_model(ap, args, lambda model: Shifted(model, args.frames), name, {"frames": args.frames})


if __name__ == "__main__":
    main()
