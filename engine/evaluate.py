"""Evaluation: the prediction dump of a model on a set of images, and its accuracy.

The only definitions of both: the training loop, the bench and Grad-CAM use these, so a run's
recorded accuracy and any later re-evaluation of its checkpoint agree."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.data import normalize


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
            tta_flip: bool = False, progress: bool = False, index_offset: int = 0,
            check_stop: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """The prediction dump for a uint8 image tensor: per image index, label, prediction,
    confidence, class probabilities and loss. `check_stop` is called between batches and may
    raise to abandon the evaluation (a stop request)."""
    model.eval()
    probs_out, loss_out = [], []
    device = images.device
    for start in tqdm(range(0, len(labels), batch_size), desc="evaluate", leave=False,
                      disable=None if progress else True, unit="batch"):
        if check_stop is not None:
            check_stop()
        x = normalize(images[start:start + batch_size], mean, std)
        y = labels[start:start + batch_size]
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x).float()
            if tta_flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        probs_out.append(logits.softmax(1))
        loss_out.append(F.cross_entropy(logits, y, reduction="none"))
    probs = torch.cat(probs_out).cpu().numpy().astype(np.float32)
    label = labels.cpu().numpy().astype(np.int64)
    return {
        "index": np.arange(index_offset, index_offset + len(label), dtype=np.int64),
        "label": label,
        "pred": probs.argmax(1).astype(np.int64),
        "confidence": probs.max(1),
        "probs": probs,
        "loss": torch.cat(loss_out).cpu().numpy().astype(np.float32),
    }


def accuracy(dump: dict[str, np.ndarray]) -> float:
    """The share of images whose prediction is their label (NaN for an empty dump)."""
    return float((dump["pred"] == dump["label"]).mean()) if len(dump["label"]) else float("nan")
