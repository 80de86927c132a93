"""Loading weights and resume state without ever executing what a file contains.

Weights are safetensors (a header and raw tensors: nothing to run). The resume state holds
optimizer and scheduler dicts, so it is a torch file, loaded only with `weights_only=True`
and no fallback: a pickle payload is refused, never run."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from engine import runs


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a valid safetensors file ({exc}); it was refused unread. "
            "Only safetensors weights are loaded, so a pickled (.pth) file cannot run code here."
        ) from None


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load safetensors weights into `model` after checking every key and shape."""
    state = read_weights(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            details.append(f"wrong shapes {wrong[:3]}")
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(details)}")
    model.load_state_dict(state, strict=True)
    return model


def load_run_model(run: runs.Run, tag: str = "final", device: str | torch.device = "cpu") -> nn.Module:
    """The model of a run, from its `tag` checkpoint, in eval mode."""
    from engine.model import create_model

    path = run.checkpoint_path(tag)
    if path is None:
        raise CheckpointError(f"run {run.id} has no {tag} checkpoint")
    width = int((run.config or {}).get("width", 64))
    model = create_model(len(run.class_names) or 10, width)
    return load_weights(model, path).to(device).eval()


def save_resume_state(path: Path, state: dict) -> None:
    runs.atomic_save(Path(path), lambda tmp: torch.save(state, tmp))


def load_resume_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run has no completed epoch to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"resume state {path} was refused: {first}") from None
