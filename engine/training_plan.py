"""The training plan: how many steps a run takes and at what learning rate, decided once.

The loop, the resume check and the run's run.json (`plan`) all read these numbers from one
`TrainingPlan`, so the dashboard never derives steps per epoch with a formula of its own (which
under torchrun would have to know the process count)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.config import TrainConfig
from engine.data import steps_per_epoch


@dataclass(frozen=True)
class TrainingPlan:
    batch_size: int  # global, after `fit_batch_to_dataset` (what config.json records)
    processes: int  # torchrun's world size (1 without it); each takes batch_size / processes
    steps_per_epoch: int  # optimizer steps, counted once for all processes
    epochs: int
    total_steps: int
    warmup_steps: int  # OneCycle's rising phase: pct_start x total_steps, rounded down
    max_lr: float | None = None  # None until the range test (or --lr) decided it

    def with_max_lr(self, max_lr: float) -> TrainingPlan:
        return dataclasses.replace(self, max_lr=float(max_lr))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_training(config: TrainConfig, train_images: int, processes: int, max_lr: float | None = None
                  ) -> TrainingPlan:
    """The plan of a run whose config already holds the fitted batch size."""
    per_epoch = steps_per_epoch(config, train_images, processes)
    total = config.epochs * per_epoch
    return TrainingPlan(batch_size=config.batch_size, processes=processes, steps_per_epoch=per_epoch,
                        epochs=config.epochs, total_steps=total,
                        warmup_steps=int(config.resolved_pct_start() * total),
                        max_lr=None if max_lr is None else float(max_lr))
