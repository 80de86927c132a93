"""The machine and process a run executes on: which device, seeds and generator states, what
the run records about its environment, and the stop request that Ctrl-C or SIGTERM sets.

The training loop and the bench both start from here, so they pick devices and time work alike."""

from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch
import torchvision
from tqdm import tqdm

from engine import distributed
from engine.config import TrainConfig, fit_batch_to_dataset
from engine.datasets import ImageDataset, load_dataset
from engine.distributed import World
from engine.training_plan import plan_training

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pick_device(choice: str, world: World | None = None) -> torch.device:
    """`auto` prefers CUDA (this process's local rank under torchrun), then MPS, then the CPU."""
    local_rank = world.local_rank if world else 0
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available; use --device auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it measures that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA when the config asks for it; full precision everywhere else."""
    return torch.bfloat16 if amp and device.type == "cuda" else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, world: World) -> dict:
    """What environment.json records: enough to tell two runs' machines and code apart."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "world_size": world.size,
        "git_commit": git_commit(),
        "command": sys.argv,
    }


def rng_states() -> dict:
    """Python, numpy, torch and CUDA generator states, as tensors a weights-only load accepts."""
    _, numpy_key, numpy_pos, _, _ = np.random.get_state()
    return {
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        "numpy_key": torch.from_numpy(numpy_key.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict) -> None:
    random.setstate((3, tuple(int(v) for v in states["python"]), None))
    np.random.set_state(("MT19937", states["numpy_key"].numpy().astype(np.uint32), states["numpy_pos"], 0, 0.0))
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------- a run's process


def prepare_run(config: TrainConfig, data: ImageDataset | None, quiet: bool = False, fit_batch: bool = True,
             ) -> tuple[TrainConfig, World, torch.device, ImageDataset]:
    """The process, device and data of a run, and everything that can refuse it, done before a
    run folder exists; the config comes back
    with what the dataset decides (the batch size under `min_steps_per_epoch`). A resumed run keeps
    the batch its config.json recorded (`fit_batch=False`): its schedule was built for it."""
    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    distributed.check_world(world, device.type)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, config.deterministic)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir)
    data = data.subset(config.train_subset, config.test_subset)
    if fit_batch:
        config, note = fit_batch_to_dataset(config, len(data.y_train), world.size)
        if note and world.is_main and not quiet:
            tqdm.write(note)
    if config.batch_size > len(data.y_train):
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(data.y_train)} training "
                         "images; lower --batch-size or raise --train-subset")
    total_steps = plan_training(config, len(data.y_train), world.size).total_steps
    if config.resolved_pct_start() * total_steps <= 1:
        raise ValueError(f"the run has only {total_steps} optimizer steps, too few for OneCycle's warm-up "
                         f"(pct_start {config.resolved_pct_start():.2g} x {total_steps} steps must exceed 1); "
                         "raise --epochs, --max-steps or --train-subset, or lower --batch-size")
    if config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it")
    if len(data.y_test) < world.size:
        raise ValueError(f"{len(data.y_test)} test images cannot be shared by {world.size} processes")
    if config.batch_size % world.size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world.size} processes; "
                         "use a multiple of the process count")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return config, world, device, data


# ---------------------------------------------------------------- stopping on request


class Stopped(Exception):
    """Raised by the loop itself at a safe point, once a stop was requested."""


class StopRequest:
    """Ctrl-C or SIGTERM only sets `requested`; the loop calls `check()` at safe points (after a
    step, between evaluation batches, after a write) and ends there. Raising from the handler
    could land in the middle of a write; a second signal does stop at once (KeyboardInterrupt).

    Used as a context manager around a run; outside the main thread it installs nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.requested = False
        self.announce = announce
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice: stopping at once")
        self.requested = True
        if self.announce:  # os.write, not print: a print here could re-enter one in progress
            os.write(2, b"\nstop requested: finishing the current step (press Ctrl-C again to stop at once)\n")

    def check(self) -> None:
        if self.requested:
            raise Stopped("stopped by the user (Ctrl-C or SIGTERM)")
