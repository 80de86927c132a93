"""An exponential moving average of a model's weights (and BatchNorm statistics), evaluated
in place of the raw weights when `ema_decay` > 0."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """The decay ramps up as (1 + n) / (10 + n) towards `decay`, so a short run does not keep
    averaging in the untrained weights of its first steps. The step count lives on the host:
    updating costs no device-to-host synchronisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def _pairs(self, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ours = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        return list(zip(ours, theirs, strict=True))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        pairs = self._pairs(model)
        floats = [(a, b.detach()) for a, b in pairs if a.is_floating_point()]
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], weight)
        for a, b in pairs:
            if not a.is_floating_point():  # BatchNorm's batch counter
                a.copy_(b)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
