"""Ctrl-C and SIGTERM request a stop that the loop honours at its next safe point: after the
current training step, between evaluation batches, between range-test steps. A second signal
stops at once. The signals are raised from inside the real run at a known step (through torch's
global optimizer and module hooks, not by patching the engine), so nothing depends on timing."""

from __future__ import annotations

import contextlib
import signal

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from engine import runs
from engine.model import ResNet18
from engine.train import train
from tests.conftest import tiny_config


@contextlib.contextmanager
def hooked(on_step=None, on_eval_forward=None):
    """Count optimizer steps and evaluation forwards of the real run, calling back on each."""
    counts = {"steps": 0, "eval_forwards": 0}

    def step_hook(optimizer, args, kwargs):
        counts["steps"] += 1
        if on_step:
            on_step(counts["steps"])

    def forward_hook(module, args):
        if isinstance(module, ResNet18) and not module.training and counts["steps"]:
            counts["eval_forwards"] += 1
            if on_eval_forward:
                on_eval_forward(counts["eval_forwards"])

    handles = [register_optimizer_step_post_hook(step_hook),
               torch.nn.modules.module.register_module_forward_pre_hook(forward_hook)]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def only_run(runs_dir):
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return runs.load_run(run)


def assert_interrupted(run) -> None:
    assert run.status == "interrupted" and run.meta["finished"]
    assert "stopped by the user" in run.meta["error"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_current_step(tmp_path, sample, sig):
    """8 steps an epoch: the signal arrives during step 11 (epoch 2); step 11 completes and is
    logged, epoch 1 stays whole, and no twelfth step runs."""
    config = tiny_config(tmp_path, lr=0.05, epochs=3, step_log_every=1)
    with hooked(on_step=lambda n: n == 11 and signal.raise_signal(sig)) as counts:
        result = train(config, data=sample, quiet=True)
    assert result.status == "interrupted" and counts["steps"] == 11
    run = only_run(tmp_path)
    assert_interrupted(run)
    assert [e["epoch"] for e in run.epochs] == [1]
    assert [s["step"] for s in run.steps()] == list(range(1, 12))
    assert run.resume_state_path().is_file()


def test_a_signal_during_evaluation_stops_between_batches(tmp_path, sample):
    """128 test images in batches of 16 are 8 evaluation batches; the signal arrives in the
    second, so the third never runs and the unfinished epoch is not recorded."""
    config = tiny_config(tmp_path, lr=0.05, epochs=3, eval_batch_size=16, step_log_every=1)
    with hooked(on_eval_forward=lambda n: n == 2 and signal.raise_signal(signal.SIGINT)) as counts:
        result = train(config, data=sample, quiet=True)
    assert result.status == "interrupted"
    assert counts["eval_forwards"] == 2 and counts["steps"] == 8
    run = only_run(tmp_path)
    assert_interrupted(run)
    assert run.epochs == [] and len(run.steps()) == 8
    assert run.predictions("best") is None


def test_a_signal_during_the_range_test_stops_between_its_steps(tmp_path, sample):
    config = tiny_config(tmp_path, lr_finder_iters=50)
    with hooked(on_step=lambda n: n == 3 and signal.raise_signal(signal.SIGINT)) as counts:
        result = train(config, data=sample, quiet=True)
    assert result.status == "interrupted" and counts["steps"] == 3  # not 50
    run = only_run(tmp_path)
    assert_interrupted(run)
    assert run.lr_finder is None and run.steps() == [] and run.epochs == []


def test_a_second_signal_stops_at_once(tmp_path, sample):
    """Two signals inside step 3: the run ends in that step, before it is logged."""
    config = tiny_config(tmp_path, lr=0.05, epochs=3, step_log_every=1)

    def twice(n: int) -> None:
        if n == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with hooked(on_step=twice) as counts:
        result = train(config, data=sample, quiet=True)
    assert result.status == "interrupted" and counts["steps"] == 3
    run = only_run(tmp_path)
    assert_interrupted(run)
    assert [s["step"] for s in run.steps()] == [1, 2]


def test_the_handlers_are_put_back_after_a_run(tmp_path, sample):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    train(tiny_config(tmp_path, lr=0.05, epochs=1), data=sample, quiet=True)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
