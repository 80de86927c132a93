"""Fixtures that build real runs with the real engine on tiny data (narrow ResNet18, few images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import build_config
from engine.datasets import ImageDataset, load_npz
from engine.train import train

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "cifar10-sample.npz"


def tiny_config(runs_dir: Path, **overrides):
    values = dict(dataset=f"npz:{SAMPLE}", width=4, epochs=2, batch_size=32, train_subset=256,
                  test_subset=128, lr_finder_iters=12, runs_dir=str(runs_dir), threads=2)
    values.update(overrides)
    return build_config(values)


@pytest.fixture(scope="session")
def sample() -> ImageDataset:
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} is absent (it ships beside the project for developers and CI only)")
    return load_npz(SAMPLE)


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, sample) -> Path:
    """Two completed tiny runs on the CIFAR-10 sample (seeds 1 and 2), for readers and pages."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        train(tiny_config(root, seed=seed, name=f"seed{seed}"), data=sample, quiet=True)
    return root


@pytest.fixture(scope="session")
def tiny_run(runs_dir) -> Path:
    return sorted(p for p in runs_dir.iterdir() if p.name.endswith("seed1"))[0]


def assert_close(a, b, tol=1e-6):
    assert np.allclose(a, b, atol=tol), (a, b)


@pytest.fixture(scope="session")
def browser_runs(tmp_path_factory, sample) -> Path:
    """Two tiny completed runs (width 8, seeds 1 and 2) for the browser suite, built once per session."""
    root = tmp_path_factory.mktemp("browser-runs")
    for seed in (1, 2):
        train(tiny_config(root, seed=seed, name=f"seed{seed}", width=8, train_subset=384, test_subset=256),
              data=sample, quiet=True)
    return root
