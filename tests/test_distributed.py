"""torchrun with two CPU processes (gloo): one complete run, written once, covering the whole test set."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import runs
from engine.distributed import World, check_world
from tests.conftest import PROJECT_ROOT, SAMPLE


def test_torchrun_two_processes_write_one_complete_run(tmp_path, sample):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "engine", "train",
         "--dataset", f"npz:{SAMPLE}", "--width", "4", "--epochs", "2", "--batch-size", "32",
         "--train-subset", "256", "--test-subset", "101", "--lr-finder-iters", "12", "--threads", "1",
         "--runs-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list(tmp_path.iterdir())  # written once, by rank 0
    run = runs.load_run(run_dir)
    assert run.status == "completed" and run.warnings == []
    assert run.environment["world_size"] == 2
    assert [e["epoch"] for e in run.epochs] == [1, 2]
    dump = run.predictions("final")
    assert (dump["index"] == np.arange(101)).all()  # every test image, each once, in order
    assert (dump["label"] == sample.y_test[:101]).all()
    assert float((dump["pred"] == dump["label"]).mean()) == run.epochs[-1]["test_acc"]
    steps = run.steps()
    assert len(steps) == 2 * 8  # 256 images, global batch 32 split over 2 processes


def test_more_processes_than_gpus_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(ValueError, match="4 processes per node but only 2 CUDA device"):
        check_world(World(rank=3, local_rank=3, size=4), "cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    check_world(World(rank=1, local_rank=1, size=4), "cuda")  # two nodes of two GPUs each is fine
    check_world(World(rank=3, local_rank=3, size=4), "cpu")  # gloo on a CPU runs any number
