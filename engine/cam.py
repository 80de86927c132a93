"""Grad-CAM maps for a run's checkpoint, via the grad-cam package: the engine can explain its
models without the dashboard. No Streamlit, no caching (the dashboard caches).

The model is the engine's ResNet18 (stages `layer1`..`layer4`); images arrive raw, uint8
(N, H, W, 3), and are normalised here the way the engine normalised them for training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and grad-cam load on first use: listing the choices stays instant
    import torch

    from engine import runs

# The grad-cam class of each method, imported on first use.
METHODS = {
    "GradCAM": "GradCAM",
    "GradCAM++": "GradCAMPlusPlus",
    "EigenCAM": "EigenCAM",
    "LayerCAM": "LayerCAM",
    "XGradCAM": "XGradCAM",
    "HiResCAM": "HiResCAM",
}
# Methods that map a layer's main component whatever the class: they take no target class.
CLASS_AGNOSTIC = frozenset({"EigenCAM"})
LAYERS = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_LAYER = "layer3"  # 8x8 at 32x32 input: finer than layer4's 4x4, still class-specific


def _normalised_batch(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    import torch

    from engine.data import normalize

    # A contiguous NCHW copy: a permuted (channels-last) view crashes CPU conv backward at small widths.
    batch = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()
    return normalize(batch, torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))


def load_model(run: runs.Run, tag: str = "final") -> torch.nn.Module:
    """The run's model with its `tag` checkpoint, in eval mode, through the one checked loader.
    A checkpoint that does not fit the run's config raises CheckpointError in one short line."""
    from engine.checkpoint import CheckpointError, load_weights
    from engine.model import create_model

    path = run.checkpoint_path(tag)
    if path is None:
        raise CheckpointError(f"run {run.id} has no {tag} checkpoint")
    width, classes = run.width, run.num_classes or len(run.class_names)
    if not width or not classes:
        raise CheckpointError(f"run {run.id} records no model width or class count (config.json, dataset.json)")
    try:
        return load_weights(create_model(classes, int(width)), Path(path)).eval()
    except CheckpointError as exc:
        if "does not fit" not in str(exc):
            raise
        raise CheckpointError(f"the {tag} checkpoint does not fit a width-{width} ResNet18 with {classes} classes, "
                              f"as config.json records: it was saved from a model of another width or class "
                              f"count, or config.json was edited") from None


def compute_cams(model: torch.nn.Module, images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 method: str = "GradCAM", layer: str = DEFAULT_LAYER,
                 targets: Sequence[int] | None = None) -> np.ndarray:
    """Class-activation maps for uint8 images (N, H, W, C): float32 (N, H, W), each scaled to [0, 1].

    `targets` are the classes to explain, one per image; None explains the predicted class. A
    method in CLASS_AGNOSTIC uses no class, so it ignores `targets`."""
    if method not in METHODS:
        raise ValueError(f"unknown Grad-CAM method {method!r}; choose one of {', '.join(METHODS)}")
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = _normalised_batch(images, mean, std)
    cam_targets = None if targets is None or method in CLASS_AGNOSTIC else [ClassifierOutputTarget(int(t))
                                                                            for t in targets]
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
        with getattr(pytorch_grad_cam, METHODS[method])(model=model, target_layers=[target_layer]) as cam:
            maps = cam(input_tensor=x, targets=cam_targets)
    finally:
        for p, flag in trainable:
            p.requires_grad_(flag)
    return np.clip(np.nan_to_num(maps.astype(np.float32)), 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The map as a jet heat map over the image (uint8 H, W, 3); opacity 0 shows the image alone."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1.0 - opacity)


def probabilities(model: torch.nn.Module, images: np.ndarray, mean: Sequence[float],
                  std: Sequence[float], tta_flip: bool = False) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images, through the engine's one `predict`;
    `tta_flip` as the run's config has it, so they are the probabilities the run records."""
    import torch

    from engine.evaluate import predict

    x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()
    dump = predict(model, x, torch.zeros(len(x), dtype=torch.long), torch.tensor(mean, dtype=torch.float32),
                   torch.tensor(std, dtype=torch.float32), batch_size=256, tta_flip=tta_flip)
    return dump["probs"]
