"""The batched augmentation draws from the same distributions as the per-sample torchvision
pipeline it replaces (engine.reference), compared image statistic by image statistic."""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from engine.config import build_config
from engine.data import augment
from engine.reference import reference_transform

REPEATS = 8


@pytest.fixture(scope="module")
def both_pipelines(sample):
    torch.manual_seed(0)
    config = build_config({"dataset": "cifar10"})
    mean, std = torch.tensor(sample.mean), torch.tensor(sample.std)
    images = np.repeat(sample.x_train[:300], REPEATS, axis=0)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ours = torch.cat([augment(chunk, config, mean, std, torch.Generator().manual_seed(i))
                      for i, chunk in enumerate(batch.split(600))])
    transform = reference_transform(config, sample.mean, sample.std)
    theirs = torch.stack([transform(image) for image in batch])
    return ours, theirs, mean, std


def image_stats(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> dict[str, np.ndarray]:
    pixels = x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    zero = (x == 0).all(1)  # cutout
    black = (pixels.abs() < 1e-6).all(1)  # crop padding
    return {
        "mean": pixels.mean((1, 2, 3)).numpy(),
        "std": pixels.std((1, 2, 3)).numpy(),
        "saturation": (pixels.amax(1) - pixels.amin(1)).mean((1, 2)).numpy(),
        "cutout_area": zero.flatten(1).float().mean(1).numpy(),
        "padding_rows": black.all(2).float().sum(1).numpy(),
        "padding_cols": black.all(1).float().sum(1).numpy(),
    }


@pytest.mark.parametrize("statistic", ["mean", "std", "saturation", "cutout_area", "padding_rows", "padding_cols"])
def test_per_image_statistics_have_the_same_distribution(both_pipelines, statistic):
    ours, theirs, mean, std = both_pipelines
    a, b = image_stats(ours, mean, std)[statistic], image_stats(theirs, mean, std)[statistic]
    result = ks_2samp(a, b)
    assert result.pvalue > 0.001, (statistic, a.mean(), b.mean(), result)


def test_grey_rates_match(both_pipelines):
    ours, theirs, mean, std = both_pipelines

    def grey_rate(x):
        pixels = x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
        difference = (pixels[:, 0] - pixels[:, 1]).abs().masked_fill((x == 0).all(1), 0)  # cutout is the mean
        return (difference.amax((1, 2)) < 1e-3).float().mean().item()

    assert abs(grey_rate(ours) - 0.2) < 0.03 and abs(grey_rate(theirs) - 0.2) < 0.03
