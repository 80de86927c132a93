"""Writing a run folder: `RunWriter` has one method per file of the run format.

Nothing is ever half-written under a final name (engine/safe_io.py), and the writer holds an
exclusive lock on `.lock` for its lifetime. Import it from engine.runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.run_layout import (
    CHECKPOINTS_DIR,
    CONFIG_JSON,
    DATASET_JSON,
    ENVIRONMENT_JSON,
    EPOCHS_JSONL,
    FORMAT_VERSION,
    LOCK_FILE,
    LR_FINDER_JSON,
    LR_FINDER_STEPS_JSONL,
    MODEL_SUMMARY_JSON,
    MODEL_SUMMARY_TXT,
    PREDICTION_TAGS,
    PREDICTIONS_DIR,
    RUN_JSON,
    STATUSES,
    STEPS_JSONL,
    TEST_IMAGES_NPY,
    TRAIN_SAMPLES_NPZ,
    Status,
    checkpoint_path,
    new_run_id,
    prediction_path,
    resume_state_path,
)
from engine.run_reader import EPOCHS_CAP, STEPS_CAP, read_meta
from engine.run_validate import PREDICTION_KEYS
from engine.safe_io import (
    append_jsonl,
    atomic_save,
    atomic_write_bytes,
    atomic_write_json,
    is_temporary,
    parse_jsonl,
    read_bytes,
    to_strict_json,
    utc_now,
)

LOCK_PATIENCE_S = 2.0  # a reader's lock probe lasts microseconds; a writer waits this long for it
LOCK_RETRY_S = 0.02


class RunFormatError(Exception):
    """A run folder or run id that cannot be used; the message says why and what to do."""


def writer_alive(path: Path) -> bool:
    """True when some process holds the run's lock, i.e. its writer is still running."""
    lock = Path(path) / LOCK_FILE
    if not lock.exists():
        return False
    try:
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False




def take_lock(run_dir: Path, patience: float = LOCK_PATIENCE_S, wait: Callable[[float], Any] = time.sleep):
    """Take a run's exclusive lock and return its open handle (closing it releases the lock). A
    reader's shared probe (`writer_alive`) holds it for an instant, so retry for `patience`
    seconds before deciding another process holds it, then refuse."""
    handle = open(Path(run_dir) / LOCK_FILE, "a+")
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise RunFormatError(f"run {Path(run_dir).name} is being written by another process; "
                                     "wait for it or stop it") from None
            wait(LOCK_RETRY_S)


@contextlib.contextmanager
def held_lock(run_dir: Path, patience: float = LOCK_PATIENCE_S) -> Iterator[None]:
    """Hold a run's lock for a moment (to move the run): no writer can start meanwhile."""
    handle = take_lock(run_dir, patience)
    try:
        yield
    finally:
        handle.close()


class RunWriter:
    """Owns one run folder for the lifetime of a training process: one method per file.

    Holds an exclusive lock on `.lock` so two processes never write one run, and so a reader
    can tell a live run from one whose process vanished."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self._lock_handle = None

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, runs_dir: Path, name: str, epochs_planned: int, sweep: dict | None = None) -> RunWriter:
        """A new run folder; `sweep` (a trial's place in its sweep, engine/sweep_plan.py) goes into run.json."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id(name)
        path = runs_dir / run_id
        path.mkdir()
        (path / PREDICTIONS_DIR).mkdir()
        (path / CHECKPOINTS_DIR).mkdir()
        meta = {"format_version": FORMAT_VERSION, "id": run_id, "name": name or run_id, "status": Status.RUNNING,
                "created": utc_now(), "finished": None, "error": None, "epochs_planned": epochs_planned,
                "host": socket.gethostname(), "pid": os.getpid()}
        if sweep is not None:
            meta["sweep"] = sweep
        writer = cls(path, meta)
        writer.lock()
        writer.write_meta()
        writer.update_summary()
        return writer

    @classmethod
    def reopen(cls, run_dir: Path) -> RunWriter:
        """Take over an existing run (resume): refuses when another process holds it."""
        path = Path(run_dir)
        meta, problems = read_meta(path)
        if meta is None:
            raise RunFormatError(f"run {path.name} cannot be reopened: {problems[0]}")
        writer = cls(path, meta)
        writer.lock()
        for leftover in path.rglob(".*"):  # temporary files of a writer that was killed
            if leftover.is_file() and is_temporary(leftover.name):
                leftover.unlink(missing_ok=True)
        meta.update(status=Status.RUNNING, finished=None, error=None, pid=os.getpid(),
                    host=socket.gethostname(), resumed=meta.get("resumed", 0) + 1)
        writer.write_meta()
        writer.update_summary()
        return writer

    def lock(self, patience: float = LOCK_PATIENCE_S, wait: Callable[[float], Any] = time.sleep) -> None:
        """Take the run's exclusive lock (see `take_lock`)."""
        self._lock_handle = take_lock(self.path, patience, wait)

    def release(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def write_meta(self) -> None:
        atomic_write_json(self.path / RUN_JSON, self.meta)

    def write_plan(self, plan: dict) -> None:
        """The training plan (engine/training_plan.py) into run.json, once the max LR is decided."""
        self.meta["plan"] = plan
        self.write_meta()
        self.update_summary()

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.path / CONFIG_JSON, config)

    def write_environment(self, environment: dict) -> None:
        atomic_write_json(self.path / ENVIRONMENT_JSON, environment)

    def write_dataset(self, dataset: dict) -> None:
        atomic_write_json(self.path / DATASET_JSON, dataset)

    def write_model_summary(self, summary: dict, text: str) -> None:
        atomic_write_json(self.path / MODEL_SUMMARY_JSON, summary)
        atomic_write_bytes(self.path / MODEL_SUMMARY_TXT, text.encode())

    def write_lr_finder(self, result: dict) -> None:
        atomic_write_json(self.path / LR_FINDER_JSON, result)

    def append_lr_finder_steps(self, rows: list[dict]) -> None:
        """Range-test progress rows (step, lr, loss), appended while the test runs; the final
        curve is lr_finder.json."""
        append_jsonl(self.path / LR_FINDER_STEPS_JSONL, rows)

    def write_test_images(self, images: np.ndarray) -> None:
        """Raw uint8 (N, H, W, C) test images in dump order, so a run shows them without its dataset."""
        _save_npy(self.path / TEST_IMAGES_NPY, _uint8_images(images, "test images"))

    def write_train_samples(self, images: np.ndarray, augmented: np.ndarray, labels: np.ndarray) -> None:
        arrays = {"images": _uint8_images(images, "train samples"),
                  "augmented": _uint8_images(augmented, "augmented samples"), "labels": np.asarray(labels)}
        atomic_save(self.path / TRAIN_SAMPLES_NPZ, lambda tmp: np.savez(tmp, **arrays))

    def append_epoch(self, row: dict) -> None:
        append_jsonl(self.path / EPOCHS_JSONL, [row])
        self.update_summary()

    def append_steps(self, rows: list[dict]) -> None:
        append_jsonl(self.path / STEPS_JSONL, rows)

    def write_predictions(self, tag: str, arrays: dict[str, np.ndarray]) -> None:
        missing = set(PREDICTION_KEYS) - set(arrays)
        if tag not in PREDICTION_TAGS or missing:
            raise ValueError(f"prediction dump {tag!r}: tag must be one of {PREDICTION_TAGS}; lacks {sorted(missing)}")
        arrays = {k: arrays[k] for k in PREDICTION_KEYS}
        atomic_save(prediction_path(self.path, tag), lambda tmp: np.savez(tmp, **arrays))

    def write_dynamics_labels(self, arrays: dict[str, np.ndarray]) -> None:
        """dynamics/labels.npz (engine/dynamics.py `label_arrays`), at the run's start."""
        from engine import dynamics  # it imports torch, which a reader of runs does not need

        dynamics.write_labels(self.path, arrays)

    def write_dynamics_epoch(self, epoch: int, arrays: dict[str, np.ndarray]) -> None:
        """One epoch's training dynamics (engine/dynamics.py `epoch_arrays`), before its row."""
        from engine import dynamics

        dynamics.write_epoch(self.path, epoch, arrays)

    def checkpoint_path(self, tag: str) -> Path:
        return checkpoint_path(self.path, tag)

    def write_checkpoint(self, tag: str, state_dict: dict, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        atomic_save(self.checkpoint_path(tag), lambda tmp: save_file(tensors, str(tmp), metadata))

    @property
    def resume_state_path(self) -> Path:
        return resume_state_path(self.path)

    def write_resume_state(self, state: dict) -> None:
        """The torch file `resume` needs (tensors and plain containers only), saved atomically."""
        from engine.checkpoint import save_resume_state

        save_resume_state(self.resume_state_path, state)

    def truncate_after(self, epoch: int, step: int) -> None:
        """Drop metric rows and dynamics epochs past a resume point, so resumed epochs replace them,
        never repeat."""
        for name, key, last, cap in ((EPOCHS_JSONL, "epoch", epoch, EPOCHS_CAP),
                                     (STEPS_JSONL, "step", step, STEPS_CAP)):
            path = self.path / name
            if not path.exists():
                continue
            rows, _, _ = parse_jsonl(read_bytes(path, cap))
            kept = [r for r in rows if isinstance(r, dict) and type(r.get(key)) is int and r[key] <= last]
            atomic_write_bytes(path, "".join(to_strict_json(r) + "\n" for r in kept).encode())
        from engine import dynamics

        dynamics.drop_epochs_after(self.path, epoch)
        self.update_summary()

    def finish(self, status: str, error: str | None = None) -> None:
        if status not in STATUSES or status == Status.RUNNING:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES[1:])}")
        self.meta.update(status=Status(status), finished=utc_now(), error=error)
        self.write_meta()
        self.update_summary()  # before the lock goes, so no reader takes the run for a killed one
        self.release()

    def update_summary(self) -> None:
        """Rewrite summary.json from the run's files (at creation, at each epoch's end and at each
        status change). It is derived: when this write fails, readers rebuild it, so a full disk
        here never fails the training."""
        from engine.run_summary import write_summary  # run_summary reads through engine.runs, which imports us

        try:
            write_summary(self.path)
        except OSError:
            pass


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_save(path, lambda tmp: np.save(tmp, array, allow_pickle=False))


def _uint8_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{what} must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    return images
