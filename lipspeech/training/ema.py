"""An exponential moving average of a network's weights (train key ``ema_decay``).

Validation, ``best.pt`` and inference use the averaged weights: late in training the
raw weights move with every batch's noise, their average sits nearer the bottom of the
valley. The raw weights stay the ones the optimiser updates and the ones a resumed run
continues from.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """A frozen copy of ``model`` whose parameters follow ``model``'s by an exponential average.

    After ``n`` updates the next one uses the rate ``d = min(decay, (1 + n) / (10 + n))``:
    ``avg <- d * avg + (1 - d) * weights`` (the warm-up keeps the random initial weights
    from lingering for ``1 / (1 - decay)`` steps). Buffers (batch-norm statistics) are copied,
    not averaged.

    Args:
        model: the network being trained (its state at construction starts the average).
        decay: the long-run rate, in [0, 1).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def rate(self) -> float:
        """The rate the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimiser step)."""
        d = self.rate()
        averaged = list(self.model.parameters())
        current = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - d)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
