"""The LR range test, run by torch-lr-finder on the engine's own batched data path.

The model and optimizer are restored afterwards (the library caches their state), so training
starts from the same initial weights it would have had without the test."""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch
import torch_lr_finder.lr_finder
from torch import nn
from torch_lr_finder import LRFinder, TrainDataLoaderIter
from tqdm import tqdm

SKIP_START = 10  # the first and last points are noise; torch-lr-finder's plot() skips the same
SKIP_END = 5


class _RecordingLoss(nn.Module):
    """Wraps the criterion to keep each step's raw loss: the library stores only the smoothed one."""

    def __init__(self, criterion: nn.Module):
        super().__init__()
        self.criterion = criterion
        self.raw: list[torch.Tensor] = []

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(outputs.float(), labels)
        self.raw.append(loss.detach())
        return loss


@dataclass
class RangeTestResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    suggestion_index: int
    diverged: bool

    def to_dict(self) -> dict:
        return {
            "lr": self.lrs,
            "loss": self.losses,
            "smoothed_loss": self.smoothed,
            "suggested_lr": self.suggestion,
            "suggestion_index": self.suggestion_index,
            "method": "steepest descent of the smoothed loss",
            "diverged": self.diverged,
        }


def steepest_descent(lrs: list[float], smoothed: list[float]) -> int:
    """Index of the most negative slope of the smoothed loss, ignoring the noisy ends."""
    start, end = SKIP_START, len(smoothed) - SKIP_END
    if end - start < 3:  # too short to trim: use the whole curve
        start, end = 0, len(smoothed)
    window = np.asarray(smoothed[start:end], dtype=np.float64)
    return start + int(np.gradient(window).argmin())


def range_test(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               batches, device: torch.device, start_lr: float, end_lr: float, num_iter: int,
               autocast_dtype: torch.dtype | None = None, quiet: bool = False) -> RangeTestResult:
    """Exponential sweep from start_lr to end_lr; returns the curve and its suggestion."""
    for group in optimizer.param_groups:
        group["lr"] = start_lr
    recorder = _RecordingLoss(criterion)
    amp = {}
    if autocast_dtype is not None:
        amp = dict(amp_backend="torch", amp_config={"device_type": device.type, "dtype": autocast_dtype},
                   grad_scaler=torch.amp.GradScaler(device.type, enabled=False))
    finder = LRFinder(model, optimizer, recorder, device=device, **amp)
    chatter = io.StringIO()  # the library prints hints meant for notebooks
    # The library's own progress bar has no label and no off switch: give it both.
    bar = functools.partial(tqdm, desc="LR range test", unit="step", disable=quiet, leave=False)
    with contextlib.redirect_stdout(chatter), mock.patch.object(torch_lr_finder.lr_finder, "tqdm", bar):
        finder.range_test(TrainDataLoaderIter(batches), end_lr=end_lr, num_iter=num_iter,
                          step_mode="exp", smooth_f=0.05, diverge_th=5)
    finder.reset()
    lrs = [float(v) for v in finder.history["lr"]]
    smoothed = [float(v) for v in finder.history["loss"]]
    raw = [float(v) for v in torch.stack(recorder.raw).cpu()][: len(lrs)]
    index = steepest_descent(lrs, smoothed)
    return RangeTestResult(lrs, raw, smoothed, lrs[index], index, "diverged" in chatter.getvalue())
