"""Runs survive anything: kills, Ctrl-C, NaN, a second writer, a reader polling a live run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_post_hook

from engine import runs
from engine.checkpoint import load_weights
from engine.model import ResNet18, create_model
from engine.train import TrainingFailed, train
from tests.conftest import PROJECT_ROOT, tiny_config
from tests.runs_for_tests import start_training, wait_for


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def steps_written(runs_dir: Path, name: str = runs.STEPS_JSONL) -> int:
    """Lines in the (single) run's file under runs_dir; 0 before the run folder exists."""
    if not runs_dir.is_dir():
        return 0
    return max((lines_in(p / name) for p in runs_dir.iterdir()), default=0)


def only_run(runs_dir: Path) -> Path:
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return run


def complete_rows(data: bytes) -> bytes:
    """The whole lines of a JSON-lines file: the rows a reader counts as written."""
    return data[: data.rfind(b"\n") + 1]


@pytest.mark.parametrize("epochs_done, extra_steps", [(0, 3), (1, 1), (2, 0), (2, 4)])
def test_sigkill_at_any_moment_keeps_every_completed_epoch(tmp_path, sample, epochs_done, extra_steps):
    """8 steps per epoch. Wait until `epochs_done` epochs are recorded and `extra_steps` more steps
    are logged, note the epoch rows on disk, kill: every row seen before the kill is still there,
    byte for byte, and each recorded epoch's best files load."""
    proc = start_training(tmp_path, "--epochs", "6")
    wait_for(lambda: steps_written(tmp_path, runs.EPOCHS_JSONL) >= epochs_done
             and steps_written(tmp_path) >= 8 * epochs_done + extra_steps, proc=proc,
             what=f"{epochs_done} epochs and {8 * epochs_done + extra_steps} steps written")
    run_dir = only_run(tmp_path)
    seen = complete_rows((run_dir / runs.EPOCHS_JSONL).read_bytes()) if epochs_done else b""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert seen.count(b"\n") >= epochs_done
    run = runs.load_run(run_dir)
    assert run.status == "interrupted"  # not "running" forever: nobody holds the lock
    epochs_file = run_dir / runs.EPOCHS_JSONL
    assert (epochs_file.read_bytes() if epochs_file.exists() else b"").startswith(seen)
    assert [e["epoch"] for e in run.epochs] == list(range(1, len(run.epochs) + 1))
    assert len(run.epochs) >= seen.count(b"\n")
    for path in run.path.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert path.stat().st_size > 0, f"{path.name} is empty"
    if run.epochs:
        load_weights(create_model(10, 4), run.checkpoint_path("best"))
        dump = run.predictions("best")
        assert dump is not None and len(dump["label"]) == 128


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, sample):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    flags = ("--epochs", "3", "--deterministic", "--seed", "7")
    reference = start_training(whole, *flags)
    assert reference.wait(timeout=300) == 0
    proc = start_training(broken, *flags)
    wait_for(lambda: steps_written(broken) >= 19, proc=proc, what="19 steps written")  # in epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run_dir = only_run(broken)
    assert runs.load_run(run_dir).status == "interrupted"
    resumed = subprocess.run([sys.executable, "-m", "engine", "resume", run_dir.name, "--runs-dir", str(broken)],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = runs.load_run(only_run(whole)), runs.load_run(run_dir)
    assert b.status == "completed" and b.meta["resumed"] == 1
    assert [e["epoch"] for e in b.epochs] == [1, 2, 3]  # replaced, never duplicated
    assert [s["step"] for s in b.steps()] == list(range(1, 25))
    for row_a, row_b in zip(a.epochs, b.epochs, strict=True):
        for key in ("step", "lr_start", "lr_end", "train_loss", "train_acc", "test_loss", "test_acc"):
            assert row_a[key] == row_b[key], key
    weights_a, weights_b = load_file(a.checkpoint_path("final")), load_file(b.checkpoint_path("final"))
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert (weights_a[key] == weights_b[key]).all(), key


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_record_an_interrupted_run(tmp_path, sample, sig):
    """The command line end to end: after the first recorded epoch, a signal stops the run at
    its next step (200 epochs are planned, so it cannot finish first), with exit code 130, the
    recorded epochs untouched, and the command that continues it printed."""
    proc = start_training(tmp_path, "--epochs", "200")
    wait_for(lambda: steps_written(tmp_path, runs.EPOCHS_JSONL) >= 1, proc=proc, what="the first epoch written")
    run_dir = only_run(tmp_path)
    seen = complete_rows((run_dir / runs.EPOCHS_JSONL).read_bytes())
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    assert "stop requested" in proc.stderr.read().decode()
    run = runs.load_run(run_dir)
    assert run.status == "interrupted" and run.meta["finished"]
    assert "stopped by the user" in run.meta["error"]
    assert (run_dir / runs.EPOCHS_JSONL).read_bytes().startswith(seen) and len(run.epochs) >= 1
    assert [e["epoch"] for e in run.epochs] == list(range(1, len(run.epochs) + 1))
    assert run.warnings == []


def test_a_nan_loss_fails_the_run_with_the_reason(tmp_path, sample):
    with pytest.raises(TrainingFailed, match="lower the learning rate"):
        train(tiny_config(tmp_path, lr=1e8, epochs=1), data=sample, quiet=True)
    run = runs.load_run(only_run(tmp_path))
    assert run.status == "failed"
    assert "TrainingFailed" in run.meta["error"] and "NaN" in run.meta["error"]


def test_running_out_of_memory_fails_the_run_naming_the_fix(tmp_path, sample):
    """The device runs out during the first evaluation: torch raises inside the model's forward
    (through torch's global module hook, as a full GPU would), the real loop handles it."""

    steps = []

    def exhausted(module, args):
        if isinstance(module, ResNet18) and not module.training and steps:  # evaluating, after training
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handles = [register_optimizer_step_post_hook(lambda *args: steps.append(1)),
               torch.nn.modules.module.register_module_forward_pre_hook(exhausted)]
    try:
        with pytest.raises(torch.OutOfMemoryError):
            train(tiny_config(tmp_path, lr=0.05, epochs=1), data=sample, quiet=True)
    finally:
        for handle in handles:
            handle.remove()
    assert len(steps) == 8  # the whole epoch trained, then evaluation ran out
    run = runs.load_run(only_run(tmp_path))
    assert run.status == "failed"
    assert run.meta["error"].startswith("out of memory") and "--batch-size" in run.meta["error"]


def test_two_processes_never_write_one_run(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "first", 1)
    with pytest.raises(runs.RunFormatError, match="being written by another process"):
        runs.RunWriter.reopen(writer.path)
    assert runs.load_run(writer.path).status == "running"  # the live writer holds the lock
    writer.finish("completed")
    assert runs.load_run(writer.path).status == "completed"


def test_a_reader_polling_a_live_run_sees_a_growing_prefix(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "live", 200)
    done = threading.Event()

    def write() -> None:
        for epoch in range(1, 201):
            writer.append_steps([{"step": epoch * 10 + i, "epoch": epoch, "loss": 1.0, "lr": 0.1} for i in range(10)])
            writer.append_epoch({"epoch": epoch, "test_acc": epoch / 200, "note": "x" * 3000})
            writer.meta["epochs_done"] = epoch
            writer.write_meta()
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen, deadline = 0, time.monotonic() + 300
    while not done.is_set() or seen < 200:
        assert thread.is_alive() or done.is_set(), "the writer thread died (its traceback is above)"
        assert time.monotonic() < deadline, f"the reader saw {seen} of 200 epochs in 300 s"
        run = runs.load_run(writer.path)
        epochs = [e["epoch"] for e in run.epochs]
        assert epochs == list(range(1, len(epochs) + 1))
        assert len(epochs) >= seen
        assert run.meta["status"] == "running"
        assert not [w for w in run.warnings if "unreadable" in w or "damaged" in w]
        seen = len(epochs)
    thread.join(timeout=60)
    writer.finish("completed")


def test_nan_and_infinity_are_stored_as_strict_json(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "nan", 1)
    writer.append_epoch({"epoch": 1, "train_loss": float("nan"), "test_loss": float("inf")})
    writer.finish("failed", "NaN")

    def refuse(constant):
        raise ValueError(constant)

    line = (writer.path / runs.EPOCHS_JSONL).read_text().strip()
    assert json.loads(line, parse_constant=refuse) == {"epoch": 1, "train_loss": None, "test_loss": None}


def test_write_failures_never_leave_a_broken_file_under_its_final_name(tmp_path, monkeypatch):
    """ENOSPC at each write (it surfaces at fsync on full disks): the earlier file stays whole."""
    writer = runs.RunWriter.create(tmp_path, "full", 1)
    writer.write_config({"width": 4})
    writer.append_epoch({"epoch": 1})

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    for attempt in (lambda: writer.write_config({"width": 64}),
                    lambda: writer.append_epoch({"epoch": 2}),
                    lambda: writer.write_test_images(np.zeros((2, 32, 32, 3), np.uint8)),
                    lambda: writer.write_checkpoint("final", create_model(10, 4).state_dict(), {}),
                    lambda: writer.write_meta()):
        with pytest.raises(OSError, match="No space"):
            attempt()
    monkeypatch.undo()
    run = runs.load_run(writer.path)
    assert run.config == {"width": 4}
    assert run.meta["status"] == "running" and [e["epoch"] for e in run.epochs] == [1]
    assert run.warnings == []
    assert not (writer.path / runs.TEST_IMAGES_NPY).exists()
    assert not (writer.path / "checkpoints" / "final.safetensors").exists()
    assert not [p for p in writer.path.rglob("*.tmp*")]
    writer.release()
