"""The LR range test, run by torch-lr-finder on the engine's own batched data path.

The engine feeds the library through its documented extension point (a `TrainDataLoaderIter`
subclass), which is also where it counts progress and honours a stop request, and reads the
outcome from the library's `history`. The same point hands the steps done so far to `on_steps`
(in batches), so a live page can draw the test as it runs. The library restores the model and
optimizer afterwards (it caches their state), so training starts from the weights it would have
had without the test."""

from __future__ import annotations

import contextlib
import io
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch_lr_finder import LRFinder, TrainDataLoaderIter
from tqdm import tqdm

SKIP_START = 10  # the first and last points are noise; torch-lr-finder's plot() skips the same
SKIP_END = 5
SMOOTH_F = 0.05  # the library's smoothing factor and divergence threshold, passed explicitly
DIVERGE_TH = 5
STEPS_EVERY = 10  # steps handed to `on_steps` at a time: one append (and one fsync) per batch, not per step


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


class _StepLog:
    """Each step's row (`step` from 1, the `lr` it used, its raw `loss` or None when not finite),
    handed to `on_steps` every STEPS_EVERY steps and at the end. The lr is read from the
    optimizer when the step's batch is drawn (the library sets it after each step); the loss
    is the recorder's entry for that step."""

    def __init__(self, optimizer: torch.optim.Optimizer, recorder: _RecordingLoss,
                 on_steps: Callable[[list[dict]], None]):
        self.optimizer, self.recorder, self.on_steps = optimizer, recorder, on_steps
        self.lrs: list[float] = []
        self.sent = 0

    def drawn(self) -> None:
        self.lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        if len(self.lrs) - 1 - self.sent >= STEPS_EVERY:  # the steps before this one are done
            self.flush(len(self.lrs) - 1)

    def flush(self, done: int) -> None:
        """Hand over the rows of steps sent+1..done (one device sync for the batch)."""
        if done <= self.sent:
            return
        losses = torch.stack(self.recorder.raw[self.sent:done]).float().cpu().tolist()
        self.on_steps([{"step": i + 1, "lr": self.lrs[i], "loss": loss if math.isfinite(loss) else None}
                       for i, loss in zip(range(self.sent, done), losses)])
        self.sent = done


class _Batches(TrainDataLoaderIter):
    """Endless batches for the library; every batch drawn is one step of our own progress bar,
    of the step log, and a safe point to stop at."""

    def __init__(self, batches, bar: tqdm, check_stop: Callable[[], None] | None, log: _StepLog | None):
        super().__init__(batches)
        self.bar, self.check_stop, self.log = bar, check_stop, log

    def __next__(self):
        if self.check_stop is not None:
            self.check_stop()
        self.bar.update()
        if self.log is not None:
            self.log.drawn()
        return super().__next__()


SUGGESTIONS = {  # config `lr_suggestion` -> what it is, as the CLI and lr_finder.json name it
    "steepest": "steepest descent of the smoothed loss",
    "valley": "fast.ai's valley (half way down the longest descent)",
    "minimum": "LR of the smoothed loss's minimum / 10",
}
FLAT_BELOW = 0.05  # the smoothed loss moved by less than this share of its start: no signal
NOISY_ABOVE = 0.25  # median |raw - smoothed| over the median smoothed loss: too noisy to read


@dataclass
class RangeTestResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    suggestion_index: int
    diverged: bool
    method: str = "steepest"  # the key of SUGGESTIONS that chose `suggestion`
    suggestions: dict[str, int] = field(default_factory=dict)  # every method's index into `lrs`
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "lr": self.lrs,
            "loss": self.losses,
            "smoothed_loss": self.smoothed,
            "suggested_lr": self.suggestion,
            "suggestion_index": self.suggestion_index,
            "method": SUGGESTIONS[self.method],
            "diverged": self.diverged,
            "suggestions": {name: {"lr": self.lrs[i] / (10 if name == "minimum" else 1), "index": i}
                            for name, i in self.suggestions.items()},
            "warnings": self.warnings,
        }


def steepest_descent(lrs: list[float], smoothed: list[float]) -> int:
    """Index of the most negative slope of the smoothed loss, ignoring the noisy ends."""
    start, end = SKIP_START, len(smoothed) - SKIP_END
    if end - start < 3:  # too short to trim: use the whole curve
        start, end = 0, len(smoothed)
    window = np.asarray(smoothed[start:end], dtype=np.float64)
    return start + int(np.gradient(window).argmin())


def valley(smoothed: list[float]) -> int:
    """fast.ai's `valley`: the longest run of decreasing losses (a longest decreasing
    subsequence), and the point half way down it."""
    n = len(smoothed)
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    sections = (end - start) / 3
    return min(start + int(sections) + int(sections / 2), n - 1)


def minimum(smoothed: list[float]) -> int:
    """Index of the smoothed loss's minimum (its LR / 10 is the suggestion), ignoring the noisy ends."""
    start, end = SKIP_START, len(smoothed) - SKIP_END
    if end - start < 3:
        start, end = 0, len(smoothed)
    return start + int(np.argmin(smoothed[start:end]))


def suggest(lrs: list[float], raw: list[float], smoothed: list[float]) -> dict[str, int]:
    """Every method's index into the curve: steepest, valley, minimum (whose LR is divided by 10)."""
    return {"steepest": steepest_descent(lrs, smoothed), "valley": valley(smoothed), "minimum": minimum(smoothed)}


def curve_warnings(raw: list[float], smoothed: list[float], was_diverged: bool) -> list[str]:
    """What makes a curve untrustworthy, each with what to change."""
    found = []
    finite = [v for v in smoothed if math.isfinite(v)]
    best = minimum(smoothed)
    if finite and (max(finite[:max(len(finite) // 4, 1)]) - min(finite)) < FLAT_BELOW * abs(finite[0]):
        found.append("flat: the loss barely fell over the sweep; widen it (a higher --lr-finder-end) or give it "
                     "more steps (--lr-finder-iters)")
    pairs = [(r, m) for r, m in zip(raw, smoothed) if math.isfinite(r) and math.isfinite(m)]
    if pairs and np.median([abs(r - m) for r, m in pairs]) > NOISY_ABOVE * np.median([m for _, m in pairs]):
        found.append("noisy: the raw loss jumps far around its smoothed curve; raise --lr-finder-iters or the "
                     "batch size")
    if found:  # a flat or noisy curve's minimum says nothing of where the loss turns
        pass
    elif best <= min(SKIP_START, len(smoothed) // 10) + 2:
        found.append("diverged before the minimum: the loss rose from the sweep's start; lower --lr-finder-start")
    elif not was_diverged and best >= len(smoothed) - SKIP_END - 3:
        found.append("no minimum: the loss still fell at the sweep's end; raise --lr-finder-end")
    return found


def diverged(smoothed: list[float]) -> bool:
    """The library's own stopping rule, read back from its history: the last smoothed loss
    exceeds DIVERGE_TH times the best one seen."""
    return bool(smoothed) and smoothed[-1] > DIVERGE_TH * min(smoothed)


def range_test(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               batches, device: torch.device, start_lr: float, end_lr: float, num_iter: int,
               autocast_dtype: torch.dtype | None = None, quiet: bool = False,
               check_stop: Callable[[], None] | None = None,
               on_steps: Callable[[list[dict]], None] | None = None, method: str = "steepest"
               ) -> RangeTestResult:
    """Exponential sweep from start_lr to end_lr; returns the curve and its suggestion. The model
    and optimizer are restored even when `check_stop` raises. `on_steps` receives the rows of
    the steps done so far, a batch at a time, while the test runs (see `_StepLog`). `method`
    (a key of SUGGESTIONS) picks the suggestion; all of them are in the result."""
    recorder = _RecordingLoss(criterion)
    amp = {}
    if autocast_dtype is not None:
        amp = dict(amp_backend="torch", amp_config={"device_type": device.type, "dtype": autocast_dtype},
                   grad_scaler=torch.amp.GradScaler(device.type, enabled=False))
    finder = LRFinder(model, optimizer, recorder, device=device, **amp)
    # The library prints notebook hints and draws an unlabelled bar with no off switch; both go to
    # a discarded buffer (Python warnings are caught apart and shown afterwards), and our own bar (on
    # the real stderr, off when it is not a terminal) counts.
    bar = tqdm(total=num_iter, desc="LR range test", unit="step", leave=False, file=sys.stderr,
               disable=True if quiet else None)
    discarded = io.StringIO()
    log = _StepLog(optimizer, recorder, on_steps) if on_steps is not None else None
    try:
        with warnings.catch_warnings(record=True) as caught:  # kept, not lost with the library's output
            with contextlib.redirect_stdout(discarded), contextlib.redirect_stderr(discarded):
                finder.range_test(_Batches(batches, bar, check_stop, log), start_lr=start_lr, end_lr=end_lr,
                                  num_iter=num_iter, step_mode="exp", smooth_f=SMOOTH_F, diverge_th=DIVERGE_TH)
    finally:
        bar.close()
        finder.reset()
        for warning in caught:  # shown now, on the real stderr (or wherever the caller's filters send them)
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    lrs = [float(v) for v in finder.history["lr"]]
    if log is not None:  # the last steps (after a divergence, the library draws no further batch)
        log.flush(len(lrs))
    smoothed = [float(v) for v in finder.history["loss"]]
    raw = [float(v) for v in torch.stack(recorder.raw).cpu()][: len(lrs)]
    suggestions = suggest(lrs, raw, smoothed)
    index = suggestions[method]
    lr = lrs[index] / (10 if method == "minimum" else 1)
    return RangeTestResult(lrs, raw, smoothed, lr, index, diverged(smoothed), method, suggestions,
                           curve_warnings(raw, smoothed, diverged(smoothed)))
