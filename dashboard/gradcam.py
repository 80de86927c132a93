"""Grad-CAM maps for a run's model, via the grad-cam package. Pure: no Streamlit, no caching.

The model is the engine's ResNet18 (stages `layer1`..`layer4`); images arrive raw, uint8
(N, H, W, 3), and are normalised here the way the engine normalised them for training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from engine.data import normalize
from engine.model import create_model

METHODS = {
    "GradCAM": GradCAM,
    "GradCAM++": GradCAMPlusPlus,
    "EigenCAM": EigenCAM,
    "LayerCAM": LayerCAM,
    "XGradCAM": XGradCAM,
    "HiResCAM": HiResCAM,
}
LAYERS = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_LAYER = "layer3"  # 8x8 at 32x32 input: finer than layer4's 4x4, still class-specific


def _normalised_batch(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    # A contiguous NCHW copy: a permuted (channels-last) view crashes CPU conv backward at small widths.
    batch = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()
    return normalize(batch, torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))


def load_model(checkpoint: Path, num_classes: int, width: int) -> torch.nn.Module:
    """The engine's model with a run's checkpoint weights, in eval mode (strict: a mismatch raises)."""
    from safetensors.torch import load_file

    model = create_model(num_classes, width)
    model.load_state_dict(load_file(str(checkpoint)), strict=True)
    return model.eval()


def compute_cams(model: torch.nn.Module, images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 method: str = "GradCAM", layer: str = DEFAULT_LAYER,
                 targets: Sequence[int] | None = None) -> np.ndarray:
    """Class-activation maps for uint8 images (N, H, W, C): float32 (N, H, W), each scaled to [0, 1].

    `targets` are the classes to explain, one per image; None explains the predicted class."""
    if method not in METHODS:
        raise ValueError(f"unknown Grad-CAM method {method!r}; choose one of {', '.join(METHODS)}")
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    x = _normalised_batch(images, mean, std)
    cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
    target_layer = getattr(model, layer)
    # Only the target layer's output needs a gradient: freezing every other parameter stops the
    # backward pass there and skips weight gradients (about 40% less work at layer3).
    trainable = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in trainable:
        p.requires_grad_(False)
    for p in target_layer.parameters():
        p.requires_grad_(True)
    try:
        # The context manager removes the hooks it puts on the model, which is shared between sessions.
        with METHODS[method](model=model, target_layers=[target_layer]) as cam:
            maps = cam(input_tensor=x, targets=cam_targets)
    finally:
        for p, flag in trainable:
            p.requires_grad_(flag)
    return np.clip(np.nan_to_num(maps.astype(np.float32)), 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The map as a jet heat map over the image (uint8 H, W, 3); opacity 0 shows the image alone."""
    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1.0 - opacity)


def predict(model: torch.nn.Module, images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images, for targets and captions."""
    x = _normalised_batch(images, mean, std)
    with torch.no_grad():
        return model(x).softmax(1).numpy()
