"""Named ranges of the training loop for torch.profiler (`bench/gpu_recipe.py` groups a profile by them).

A range costs about half a microsecond when no profiler listens (a bare `record_function`
costs ten times that), so the loop can mark every step."""

from __future__ import annotations

import contextlib

import torch

PREFIX = "engine: "  # every range the engine marks starts with this; a profile reader selects on it


def label(name: str) -> contextlib.AbstractContextManager:
    """`with label("forward"):` marks the block as `engine: forward` while a profiler records."""
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(PREFIX + name)
    return contextlib.nullcontext()
