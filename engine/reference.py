"""The notebook's per-sample data pipeline: torchvision transforms on one image at a time in
DataLoader workers. The engine does not train with it; it is the yardstick that `make bench`
and the augmentation tests hold the batched pipeline in `engine.data` against."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from engine.config import TrainConfig


class CutoutOne(torch.nn.Module):
    """One size x size square of zeros per image, centred anywhere, clipped at the borders."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return image
        h, w = image.shape[-2:]
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        top, left = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        image = image.clone()
        image[..., top:cy - self.size // 2 + self.size, left:cx - self.size // 2 + self.size] = 0
        return image


def reference_transform(c: TrainConfig, mean, std) -> T.Compose:
    steps = [
        T.ToImage(),
        T.RandomApply([T.ColorJitter(contrast=c.contrast, saturation=c.saturation, hue=c.hue)], p=c.jitter_p),
        T.RandomGrayscale(p=c.grey_p),
        T.RandomCrop(32, padding=c.crop_padding),
    ]
    if c.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std)), CutoutOne(c.cutout)]
    return T.Compose(steps)


class PerImageDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(torch.from_numpy(self.images[i]).permute(2, 0, 1)), int(self.labels[i])


def reference_loader(images: np.ndarray, labels: np.ndarray, c: TrainConfig, mean, std,
                     workers: int | None = None) -> DataLoader:
    workers = os.cpu_count() if workers is None else workers
    return DataLoader(PerImageDataset(images, labels, reference_transform(c, mean, std)),
                      batch_size=c.batch_size, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0)
