"""Small runs written through the engine's own RunWriter (no training: a few rows, no arrays), and a
training subprocess, for the tests of summaries, the index, search and curation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from engine import runs
from engine.config import TrainConfig
from tests.conftest import PROJECT_ROOT, SAMPLE

DATASET = {"name": "toy", "classes": ["cat", "dog", "ship"], "num_classes": 3, "train_size": 8, "test_size": 6,
           "image_shape": [32, 32, 3], "mean": [0.5] * 3, "std": [0.25] * 3, "fingerprint": "ab" * 8}
TINY_FLAGS = ["--dataset", f"npz:{SAMPLE}", "--width", "4", "--batch-size", "32", "--train-subset", "256",
              "--test-subset", "128", "--lr-finder-iters", "12", "--threads", "2", "--step-log-every", "1"]


def epoch_row(epoch: int, acc: float) -> dict:
    return {"epoch": epoch, "step": 2 * epoch, "lr_start": 0.01, "lr_end": 0.001, "train_loss": 1.0, "train_acc": 0.4,
            "test_loss": 1.1, "test_acc": acc, "seconds": 3.0, "train_seconds": 2.0, "images_per_s": 4.0}


def open_run(root: Path, name: str = "run", epochs: int = 3, done: int = 0, **config) -> runs.RunWriter:
    """A run being written (this process holds its lock), `done` epochs recorded so far."""
    writer = runs.RunWriter.create(root, name, epochs_planned=epochs)
    writer.write_config({**TrainConfig().to_dict(), "name": name, "width": 4, "epochs": epochs, **config})
    writer.write_dataset(DATASET)
    for epoch in range(1, done + 1):
        writer.append_epoch(epoch_row(epoch, 0.3 + 0.1 * epoch))
    return writer


def write_run(root: Path, name: str = "run", epochs: int = 3, status: str = runs.Status.COMPLETED,
              **config) -> Path:
    """A finished run: every planned epoch when completed, one fewer otherwise."""
    writer = open_run(root, name, epochs, epochs if status == runs.Status.COMPLETED else epochs - 1, **config)
    writer.finish(status, None if status == runs.Status.COMPLETED else "stopped for a test")
    return writer.path


def start_training(runs_dir: Path, *extra: str) -> subprocess.Popen:
    """`resnet-runs train` on the tiny sample, in its own process."""
    return subprocess.Popen([sys.executable, "-m", "engine", "train", *TINY_FLAGS, "--runs-dir", str(runs_dir), *extra],
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_killable_writer(runs_dir: Path) -> tuple[subprocess.Popen, Path]:
    """A process that creates a run, records one epoch and then waits, holding the run's lock:
    kill it to get a run whose writer vanished. Returns (process, run folder)."""
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from tests.runs_for_tests import open_run\n"
            "writer = open_run(Path(sys.argv[1]), 'doomed', epochs=3, done=1)\n"
            "print(writer.path, flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(runs_dir)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            text=True)
    return proc, Path(proc.stdout.readline().strip())


def wait_for(condition, timeout: float = 240.0, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll `condition` until it holds; fail after `timeout` s, or at once when `proc` has ended,
    saying what was awaited (`what`) and what the process printed."""
    what = what or "the condition"
    start = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not after {timeout:.0f} s"
                                 + ("; the process is still running" if proc is not None else ""))
        time.sleep(0.02)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`resnet-runs ARGV` in this process: (exit status, stdout, stderr)."""
    from engine.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own exit, which the command should not need
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
