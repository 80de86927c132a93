"""Datasets (engine/datasets.py) as uint8 tensors on the training device, and augmentation applied
to whole batches there. Every random draw in the augmentation is per image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from engine.config import TrainConfig
from engine.datasets import ImageDataset
from engine.profiling import label

# ---------------------------------------------------------------- batched augmentation


def to_device_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 numpy -> (N, C, H, W) uint8 tensor on the device."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # a memory-mapped run file: copy rather than alias it
        images = images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float batch -> normalised float batch."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6,
                    torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h % 1.0, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v[:, None] - v[:, None] * s[:, None] * weight


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its own shift (a fraction of the colour wheel)."""
    hsv = _rgb_to_hsv(x)
    hsv = torch.cat([(hsv[:, :1] + shift.view(-1, 1, 1, 1)) % 1.0, hsv[:, 1:]], 1)
    return _hsv_to_rgb(hsv)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _per_image(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def colour_jitter(x: torch.Tensor, c: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """ColorJitter(contrast, saturation, hue) applied with probability jitter_p, then
    RandomGrayscale(grey_p); each image draws its own factors. Input/output in [0, 1]."""
    n, dev = x.shape[0], x.device
    jittered = x
    if c.contrast > 0:
        factor = _per_image(_uniform(n, 1 - c.contrast, 1 + c.contrast, gen, dev))
        mean = grayscale(jittered).mean((1, 2, 3), keepdim=True)
        jittered = (factor * jittered + (1 - factor) * mean).clamp_(0, 1)
    if c.saturation > 0:
        factor = _per_image(_uniform(n, 1 - c.saturation, 1 + c.saturation, gen, dev))
        jittered = (factor * jittered + (1 - factor) * grayscale(jittered)).clamp_(0, 1)
    if c.hue > 0:
        jittered = adjust_hue(jittered, _uniform(n, -c.hue, c.hue, gen, dev))
    apply = _per_image(torch.rand(n, generator=gen, device=dev) < c.jitter_p)
    x = torch.where(apply, jittered, x)
    if c.grey_p > 0:
        grey = _per_image(torch.rand(n, generator=gen, device=dev) < c.grey_p)
        x = torch.where(grey, grayscale(x).expand_as(x), x)
    return x


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding`, then cut a window of the original size at a per-image offset."""
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = _per_image(torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5)
    return torch.where(flip, x.flip(3), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero (the dataset mean, after normalisation) one size x size square per image, centred
    anywhere in the image and clipped at its borders."""
    if size == 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1), generator=gen, device=x.device)
    cx = torch.randint(0, w, (n, 1), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device)[None]
    xs = torch.arange(w, device=x.device)[None]
    in_y = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)
    in_x = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)
    hole = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return x.masked_fill(hole, 0.0)


def augment(x: torch.Tensor, c: TrainConfig, mean: torch.Tensor, std: torch.Tensor,
            gen: torch.Generator) -> torch.Tensor:
    """The recipe's train transform on a uint8 batch: jitter, grey, crop, flip, normalise, cutout."""
    x = x.float().div_(255)
    if c.jitter_p > 0 or c.grey_p > 0:
        x = colour_jitter(x, c, gen)
    x = random_crop(x, c.crop_padding, gen)
    if c.hflip:
        x = random_flip(x, gen)
    x = normalize(x, mean, std)
    return cutout(x, c.cutout, gen)


@dataclass
class PlacedData:
    """A dataset's tensors on the training device: this process's training batches and its
    contiguous shard of the test set (`test_first` is the shard's first index)."""

    batches: TrainBatches
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_first: int


def shard_bounds(images: int, rank: int, world_size: int) -> tuple[int, int]:
    """[first, end) of the contiguous share of `images` one process evaluates (the last may be short)."""
    shard = -(-images // world_size)
    first = min(rank * shard, images)
    return first, min(first + shard, images)


def place_on_device(data: ImageDataset, config: TrainConfig, device: torch.device, rank: int = 0,
                    world_size: int = 1) -> PlacedData:
    """Move a dataset to the device once, as uint8: augmentation then runs there per batch."""
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    train_x, train_y = to_device_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    first, end = shard_bounds(len(data.y_test), rank, world_size)
    test_x = to_device_tensor(data.x_test[first:end], device)
    test_y = torch.from_numpy(data.y_test[first:end]).to(device)
    return PlacedData(TrainBatches(train_x, train_y, config, mean, std, rank, world_size), test_x, test_y, first)


def train_samples(data: ImageDataset, config: TrainConfig, count: int = 32) -> tuple[np.ndarray, ...]:
    """(originals, augmented, labels) of a few training images: what the model sees, a fixed draw."""
    n = min(count, len(data.y_train))
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    x = augment(to_device_tensor(data.x_train[:n], torch.device("cpu")), config, mean, std,
                torch.Generator().manual_seed(0))
    x = x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    augmented = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return data.x_train[:n], augmented, data.y_train[:n]


def batches_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Steps in one epoch of `TrainBatches` (the last, partial batch included), known before
    any tensor is placed: resume checks a saved step count against it."""
    per_process = -(-images // world_size)  # DistributedSampler pads every shard to this size
    return -(-per_process // max(batch_size // world_size, 1))


def steps_per_epoch(config: TrainConfig, train_images: int, world_size: int) -> int:
    """Steps in one epoch of the run: whole passes over the data, or `max_steps` when smaller."""
    steps = batches_per_epoch(train_images, config.batch_size, world_size)
    return min(config.max_steps, steps) if config.max_steps else steps


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Augmentation draws are a function of (seed, epoch, rank), so a resumed run redraws
    exactly what the uninterrupted run would have."""
    return seed * 1_000_003 + epoch * 1_009 + rank


class TrainBatches:
    """Shuffled, augmented batches drawn from a uint8 tensor that already sits on the device.

    The order comes from torch's DistributedSampler (one shard per process under torchrun, the
    whole set otherwise), reshuffled by `set_epoch` as in any PyTorch training loop."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                 mean: torch.Tensor, std: torch.Tensor, rank: int = 0, world_size: int = 1):
        from torch.utils.data import DistributedSampler

        self.images, self.labels, self.config = images, labels, config
        self.mean, self.std, self.rank = mean, std, rank
        self.batch_size = max(config.batch_size // world_size, 1)
        self.sampler = DistributedSampler(range(len(labels)), num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=config.seed)
        self.gen = torch.Generator(device=images.device)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.gen.manual_seed(epoch_seed(self.config.seed, epoch, self.rank))

    def __len__(self) -> int:
        return batches_per_epoch(len(self.labels), self.config.batch_size, self.sampler.num_replicas)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.indexed():
            yield x, y

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(dataset indices, images, labels) per batch: the indices let the training dynamics
        (engine/dynamics.py) say which image each value belongs to, on every process."""
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            with label("augment"):
                x = augment(self.images[idx], self.config, self.mean, self.std, self.gen)
            yield idx, x, self.labels[idx]
