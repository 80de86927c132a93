"""Loading weights and resume state without ever executing what a file contains, and checking
them against the model they are for before anything uses them.

Weights are safetensors (a header and raw tensors: nothing to run). The resume state holds
optimizer and scheduler dicts, so it is a torch file, loaded only with `weights_only=True`
and no fallback: a pickle payload is refused, never run."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import commands
from engine.device import restore_rng_states, rng_states
from engine.safe_io import atomic_save

RESUME_KEYS = ("epoch", "step", "best_acc", "max_lr", "model", "optimizer", "scheduler", "ema", "rng")
RNG_KEYS = ("python", "numpy_key", "numpy_pos", "torch", "cuda")


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


def mismatches(expected: dict[str, torch.Tensor], found: Any) -> list[str]:
    """What keeps `found` from loading where `expected` (a fresh state dict) is: missing and
    unexpected keys, wrong shapes, and values that are not tensors. Empty when it fits."""
    if not isinstance(found, dict):
        return [f"a {type(found).__name__} where a state dict belongs"]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: {tuple(found[k].shape) if isinstance(found[k], torch.Tensor) else type(found[k]).__name__} "
             f"vs {tuple(v.shape)}" for k, v in expected.items()
             if k in found and (not isinstance(found[k], torch.Tensor) or found[k].shape != v.shape)]
    details = []
    if missing:
        details.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected:
        details.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if wrong:
        details.append(f"wrong shapes {wrong[:3]}{'...' if len(wrong) > 3 else ''}")
    return details


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load safetensors weights into `model` after checking every key and shape: the one loader
    of model weights (training, dashboard and Grad-CAM alike)."""
    state = read_weights(path)
    details = mismatches(model.state_dict(), state)
    if details:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(details)}")
    model.load_state_dict(state, strict=True)
    return model


def resume_state(epoch: int, step: int, best_acc: float, max_lr: float, model: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, ema: Any) -> dict:
    """Everything a run needs to continue after `epoch` exactly as if it had never stopped."""
    return {"epoch": epoch, "step": step, "best_acc": best_acc, "max_lr": max_lr,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else {}, "rng": rng_states()}


def restore_resume_state(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                         ema: Any) -> tuple[int, int, float]:
    """Put a checked state back (`check_resume_state` ran before the run was touched), the
    generators last, so the next epoch draws what the uninterrupted run drew. Returns
    (epoch, step, best_acc)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    restore_rng_states(state["rng"])
    return int(state["epoch"]), int(state["step"]), float(state["best_acc"])


def save_resume_state(path: Path, state: dict) -> None:
    atomic_save(Path(path), lambda tmp: torch.save(state, tmp))


def load_resume_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run has no completed epoch to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"resume state {path} was refused: {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"resume state {path} was refused: it holds a {type(state).__name__}, not a dict")
    return state


def check_resume_state(state: dict, model: nn.Module, epochs: int, steps_per_epoch: int,
                       ema: bool, path: Path) -> None:
    """Refuse a resume state that does not fit the run, before anything of the run changes:
    every key present, every tensor shaped as in `model` (fresh, of the run's width and
    classes), the epoch within 0..epochs and the step count that epoch implies."""
    problems = [f"missing {k!r}" for k in RESUME_KEYS if k not in state]
    if not problems:
        problems = _resume_problems(state, model, epochs, steps_per_epoch, ema)
    if problems:
        raise CheckpointError(
            f"resume state {path} does not fit this run ({'; '.join(problems)}), so the run was left "
            "untouched; put back the run's own resume.pt, or train a new run with its config.json "
            f"(`{commands.command('train', '--config', 'FILE.toml')}`)")


def _resume_problems(state: dict, model: nn.Module, epochs: int, steps_per_epoch: int, ema: bool) -> list[str]:
    problems = []
    epoch, step = state["epoch"], state["step"]
    if not _is_int(epoch) or not 0 <= int(epoch) <= epochs:
        problems.append(f"epoch {epoch!r} is outside 0..{epochs}")
    elif not _is_int(step) or int(step) != int(epoch) * steps_per_epoch:
        problems.append(f"step {step!r} is not epoch {int(epoch)} x {steps_per_epoch} steps per epoch")
    for key in ("best_acc", "max_lr"):
        if not isinstance(state[key], (int, float)) or not math.isfinite(state[key]):
            problems.append(f"{key} {state[key]!r} is not a finite number")
    problems += [f"model: {d}" for d in mismatches(model.state_dict(), state["model"])]
    if ema:
        module = state["ema"].get("module") if isinstance(state["ema"], dict) else None
        problems += [f"ema: {d}" for d in mismatches(model.state_dict(), module)]
    problems += _optimizer_problems(state["optimizer"], [p.shape for p in model.parameters()])
    scheduler = state["scheduler"]
    if not isinstance(scheduler, dict) or scheduler.get("total_steps") != epochs * steps_per_epoch:
        problems.append(f"scheduler is not a OneCycle schedule of {epochs * steps_per_epoch} steps")
    if not isinstance(state["rng"], dict) or any(k not in state["rng"] for k in RNG_KEYS):
        problems.append(f"rng lacks one of {list(RNG_KEYS)}")
    return problems


def _optimizer_problems(optimizer: Any, shapes: list[torch.Size]) -> list[str]:
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
        return ["optimizer is not an optimizer state"]
    ids = [i for group in optimizer["param_groups"] if isinstance(group, dict) for i in group.get("params", [])]
    if len(ids) != len(shapes):
        return [f"optimizer holds {len(ids)} parameters, the model {len(shapes)}"]
    per_param = optimizer.get("state") if isinstance(optimizer.get("state"), dict) else {}
    for position, (param_id, shape) in enumerate(zip(ids, shapes)):
        entry = per_param.get(param_id)
        buffer = entry.get("momentum_buffer") if isinstance(entry, dict) else None
        if isinstance(buffer, torch.Tensor) and buffer.shape != shape:
            return [f"optimizer momentum of parameter {position}: {tuple(buffer.shape)} vs {tuple(shape)}"]
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
