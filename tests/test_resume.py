"""Resume checks the saved state against the run's config and model before it touches anything:
a state that does not fit is refused with a message naming the file and the fix, and the run
folder stays byte for byte as it was. A state that fits continues the run exactly."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_post_hook

from engine import runs
from engine.checkpoint import CheckpointError
from engine.model import create_model
from engine.train import resume, train
from tests.conftest import PROJECT_ROOT, tiny_config

FLAGS = dict(lr=0.05, epochs=3, step_log_every=1, deterministic=True, seed=7)


def train_until_step(runs_dir, sample, stop_after: int):
    """A real run stopped by SIGINT during step `stop_after`, as Ctrl-C would."""
    def on_step(optimizer, args, kwargs):
        on_step.count += 1
        if on_step.count == stop_after:
            signal.raise_signal(signal.SIGINT)
    on_step.count = 0
    handle = register_optimizer_step_post_hook(on_step)
    try:
        return train(tiny_config(runs_dir, **FLAGS), data=sample, quiet=True)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, sample):
    """Interrupted in step 11 of 24: epoch 1 recorded, steps 1..11 logged, resume state at epoch 1."""
    root = tmp_path_factory.mktemp("stopped")
    try:
        result = train_until_step(root, sample, 11)
    finally:
        torch.use_deterministic_algorithms(False)
    assert result.status == "interrupted"
    return result.run_dir


def snapshot(folder) -> dict[str, str]:
    """Every file under the folder (hidden ones included) with its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def damage(state: dict, how: str) -> dict | bytes:
    if how == "missing key":
        del state["optimizer"]
    elif how == "other width":
        state["model"] = create_model(10, 8).state_dict()
    elif how == "epoch out of range":
        state["epoch"] = 99
    elif how == "step inconsistent":
        state["step"] = 5
    elif how == "other class count":
        state["model"] = create_model(7, 4).state_dict()
    elif how == "garbage":
        return b"not a torch file at all"
    return state


@pytest.mark.parametrize("how", ["missing key", "other width", "epoch out of range", "step inconsistent",
                                 "other class count", "garbage"])
def test_a_state_that_does_not_fit_is_refused_and_nothing_changes(tmp_path, stopped_run, how):
    run_dir = tmp_path / stopped_run.name
    shutil.copytree(stopped_run, run_dir)
    path = run_dir / runs.CHECKPOINTS_DIR / runs.RESUME_STATE
    state = damage(torch.load(path, weights_only=True), how)
    if isinstance(state, bytes):
        path.write_bytes(state)
    else:
        torch.save(state, path)
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError) as refused:
        resume(run_dir, quiet=True)
    assert str(path) in str(refused.value)
    if how != "garbage":
        assert "left untouched" in str(refused.value) and "resnet-runs train" in str(refused.value)
    assert snapshot(run_dir) == before
    assert runs.load_run(run_dir).status == "interrupted"


def test_the_cli_refuses_a_bad_state_in_one_error_line(tmp_path, stopped_run):
    run_dir = tmp_path / stopped_run.name
    shutil.copytree(stopped_run, run_dir)
    path = run_dir / runs.CHECKPOINTS_DIR / runs.RESUME_STATE
    state = torch.load(path, weights_only=True)
    state["model"] = create_model(10, 8).state_dict()
    torch.save(state, path)
    before = snapshot(run_dir)
    result = subprocess.run([sys.executable, "-m", "engine", "resume", run_dir.name, "--runs-dir", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "wrong shapes" in lines[0], result.stderr
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("field, value, fix", [
    ("width", -4, "an integer in [1, 100000]"),  # dropped by the reader, so a default would take its place
    ("momentum", 2.0, "momentum must be in [0, 1)"),  # read as a number, refused by the config's checks
    ("anneal_strategy", "cubic", "anneal_strategy must be linear or cos"),
])
def test_an_invalid_value_in_config_json_is_named_and_nothing_changes(tmp_path, stopped_run, field, value, fix):
    """The config is checked before the resume state: a bad value is named with its file, not
    reported as the state's wrong tensor shapes."""
    run_dir = tmp_path / stopped_run.name
    shutil.copytree(stopped_run, run_dir)
    config_file = run_dir / runs.CONFIG_JSON
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), field: value}))
    before = snapshot(run_dir)
    result = subprocess.run([sys.executable, "-m", "engine", "resume", run_dir.name, "--runs-dir", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "shapes" not in lines[0] and runs.RESUME_STATE not in lines[0]
    assert field in lines[0] and repr(value) in lines[0] and fix in lines[0]
    assert str(config_file) in lines[0] and "untouched" in lines[0], lines[0]
    assert snapshot(run_dir) == before


def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, sample, stopped_run):
    """Deterministic on the CPU: the resumed run's rows, steps and weights equal a run that never
    stopped; the steps logged after the resume point (9..11) were replaced, not repeated."""
    run_dir = tmp_path / "resumed" / stopped_run.name
    shutil.copytree(stopped_run, run_dir)
    try:
        assert resume(run_dir, quiet=True).status == "completed"
        whole = runs.load_run(train(tiny_config(tmp_path / "whole", **FLAGS), data=sample, quiet=True).run_dir)
    finally:
        torch.use_deterministic_algorithms(False)
    resumed = runs.load_run(run_dir)
    assert resumed.status == "completed" and resumed.meta["resumed"] == 1
    assert [s["step"] for s in resumed.steps()] == list(range(1, 25))
    for a, b in zip(whole.epochs, resumed.epochs, strict=True):
        for key in ("epoch", "step", "lr_start", "lr_end", "train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[key] == b[key], key
    weights_a, weights_b = load_file(whole.checkpoint_path("final")), load_file(resumed.checkpoint_path("final"))
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
