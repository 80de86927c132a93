"""ResNet18, CIFAR variant: a 3x3 stride-1 stem and no max-pool, so 32x32 inputs keep their
detail; at width 64 it has exactly 11,173,962 parameters. Stages are `layer1`..`layer4`,
the names Grad-CAM targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = [width, width * 2, width * 4, width * 8]
        self.layer1 = self._stage(width, widths[0], stride=1)
        self.layer2 = self._stage(widths[0], widths[1], stride=2)
        self.layer3 = self._stage(widths[1], widths[2], stride=2)
        self.layer4 = self._stage(widths[2], widths[3], stride=2)
        self.linear = nn.Linear(widths[3], num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_channels, out_channels, stride),
            BasicBlock(out_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4).flatten(1)
        return self.linear(out)


def create_model(num_classes: int = 10, width: int = 64) -> ResNet18:
    return ResNet18(num_classes=num_classes, width=width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_summary(model: nn.Module, batch_size: int, device: torch.device | str = "cpu") -> tuple[dict, str]:
    """Per-layer shapes and parameters from torchinfo, as JSON-ready rows and as its text table."""
    from torchinfo import summary

    stats = summary(model, input_size=(batch_size, 3, 32, 32), device=device, verbose=0,
                    col_names=("output_size", "num_params", "mult_adds"), depth=3)
    layers = [
        {
            "name": layer.var_name,
            "type": layer.class_name,
            "depth": layer.depth,
            "output_shape": list(layer.output_size) if layer.output_size else None,
            "params": int(layer.num_params),
            "mult_adds": int(layer.macs),
        }
        for layer in stats.summary_list
    ]
    data = {
        "input_shape": [batch_size, 3, 32, 32],
        "total_params": int(stats.total_params),
        "trainable_params": int(stats.trainable_params),
        "total_mult_adds": int(stats.total_mult_adds),
        "layers": layers,
    }
    return data, str(stats)
