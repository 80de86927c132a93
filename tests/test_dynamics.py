"""Training dynamics on real tiny runs: what every image did at every epoch is recorded in the
run, agrees with the run's own prediction dump, flags a deliberately flipped label, and a run
stopped and resumed records exactly what an uninterrupted one does. The training plan is
recorded once in run.json and read by the dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from dashboard import metrics
from engine import dynamics, dynamics_scores, runs
from engine.datasets import ImageDataset, load_digits
from engine.run_layout import dynamics_file
from engine.train import resume, train
from tests.conftest import PROJECT_ROOT, tiny_config
from tests.runs_for_tests import TINY_FLAGS
from tests.test_resume import FLAGS, train_until_step


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, sample):
    """A completed tiny run (3 epochs) and its dynamics."""
    run_dir = train(tiny_config(tmp_path_factory.mktemp("dynamics"), epochs=3), data=sample, quiet=True).run_dir
    return runs.load_run(run_dir), dynamics.read_dynamics(run_dir)


def test_every_image_has_a_value_per_epoch_of_the_documented_dtype(recorded):
    run, dyn = recorded
    train_size, test_size = run.dataset["train_size"], run.dataset["test_size"]
    assert dyn.problems == [] and list(dyn.epochs) == [1, 2, 3]
    for name in ("train_prob", "train_margin"):
        assert getattr(dyn, name).dtype == np.float16 and getattr(dyn, name).shape == (3, train_size)
    assert dyn.train_correct.dtype == bool and dyn.train_correct.shape == (3, train_size)
    assert dyn.test_pred.dtype == np.uint8 and dyn.test_pred.shape == (3, test_size)
    assert dyn.test_prob.dtype == np.float16 and dyn.test_prob.shape == (3, test_size)
    assert not np.isnan(dyn.train_prob).any()  # whole epochs: every training image drawn each time
    assert ((dyn.train_prob >= 0) & (dyn.train_prob <= 1)).all()
    # right exactly when the true class's logit beats every other (float16 can round a tiny margin to 0)
    assert (dyn.train_correct == (dyn.train_margin > 0))[dyn.train_margin != 0].all()
    # the epoch's training accuracy is the recorded correctness, image by image
    for row, epoch in zip(dyn.train_correct, run.epochs, strict=True):
        assert row.mean() == pytest.approx(epoch["train_acc"])
    assert dyn.train_label.shape == (train_size,) and dyn.test_label.shape == (test_size,)


def test_the_last_epoch_matches_the_final_dump_and_each_confusion_matrix_counts_the_test_set(recorded):
    run, dyn = recorded
    final = run.predictions("final")
    assert np.array_equal(dyn.test_pred[-1], final["pred"])
    assert np.array_equal(dyn.test_label, final["label"])
    true_prob = final["probs"][np.arange(len(final["label"])), final["label"]]
    assert np.allclose(dyn.test_prob[-1], true_prob, atol=1e-3)
    assert dyn.test_confidence.dtype == np.float16 and dyn.test_confidence.shape == dyn.test_prob.shape
    assert np.allclose(dyn.test_confidence[-1], final["confidence"], atol=1e-3)
    for epoch, pred in zip(run.epochs, dyn.test_pred, strict=True):
        matrix = metrics.confusion_matrix(dyn.test_label, pred, run.num_classes)
        assert matrix.sum() == run.dataset["test_size"]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(epoch["test_acc"])


def test_the_last_epoch_holds_the_final_models_verdict_on_every_training_image(recorded):
    """One extra pass at the end: the final checkpoint's probability of each given label on the
    unaugmented training image, which the likely-mislabelled list ranks by."""
    from engine.cam import load_model, probabilities
    from engine.run_dataset import load_run_dataset

    run, dyn = recorded
    for _, path in dynamics.epoch_files(run.path)[:-1]:  # the last epoch's file alone holds it
        with np.load(path) as arrays:
            assert not set(dynamics.FINAL_TRAIN_KEYS) & set(arrays.files)
    data = load_run_dataset(run.config, run.dataset)
    probs = probabilities(load_model(run, "final"), data.x_train, data.mean, data.std, run.config["tta_flip"])
    given = data.y_train
    assert dyn.final_train_prob.dtype == np.float16 and dyn.final_train_prob.shape == given.shape
    assert np.allclose(dyn.final_train_prob, probs[np.arange(len(given)), given], atol=1e-3)
    assert np.array_equal(dyn.final_train_pred, probs.argmax(1))
    assert np.allclose(dyn.final_train_confidence, probs.max(1), atol=1e-3)
    scores = dynamics_scores.image_scores(dyn)
    ranked = dynamics_scores.likely_mislabelled(scores)
    assert (np.diff(scores.final_prob[ranked]) >= 0).all()


def test_epoch_files_written_before_test_confidence_still_read(recorded, tmp_path):
    run, _ = recorded
    older = tmp_path / run.id
    shutil.copytree(run.path, older)
    for _, path in dynamics.epoch_files(older):  # rewrite each epoch as the first recorded runs wrote it
        with np.load(path) as arrays:
            kept = {key: arrays[key] for key in dynamics.EPOCH_KEYS}
        np.savez(path, **kept)
    dyn = dynamics.read_dynamics(older)
    assert dyn.problems == [] and dyn.test_confidence is None and list(dyn.epochs) == [1, 2, 3]
    assert dyn.final_train_prob is None  # and the likely-mislabelled list falls back to AUM
    scores = dynamics_scores.image_scores(dyn)
    assert scores.final_prob is None and "AUM" in dynamics_scores.ranking_score(scores)
    assert (np.diff(scores.aum[dynamics_scores.likely_mislabelled(scores)]) >= 0).all()


def test_the_plan_is_recorded_once_and_the_dashboard_reads_it(recorded, tmp_path):
    run, _ = recorded
    plan = run.meta["plan"]
    assert plan["steps_per_epoch"] == run.epochs[0]["step"] and plan["processes"] == 1
    assert plan["total_steps"] == plan["epochs"] * plan["steps_per_epoch"] == run.epochs[-1]["step"]
    assert plan["batch_size"] == run.config["batch_size"] and plan["max_lr"] == run.used_lr
    assert metrics.steps_per_epoch(run) == plan["steps_per_epoch"]
    older = tmp_path / run.id  # a run written before the plan was recorded reads as before
    shutil.copytree(run.path, older)
    meta = json.loads((older / runs.RUN_JSON).read_text())
    del meta["plan"]
    (older / runs.RUN_JSON).write_text(json.dumps(meta))
    assert metrics.steps_per_epoch(runs.load_run(older)) == plan["steps_per_epoch"]


def test_a_run_without_dynamics_reads_as_none_and_scores_say_nothing_of_it(tmp_path, sample):
    run_dir = train(tiny_config(tmp_path, epochs=2, dynamics=False), data=sample, quiet=True).run_dir
    assert dynamics.read_dynamics(run_dir) is None and runs.load_run(run_dir).warnings == []


def test_the_likely_mislabelled_list_puts_deliberately_flipped_labels_at_the_top(tmp_path):
    """8 of 256 bundled digits relabelled to another class: the ranked list, the lowest AUM and the
    final model's lowest probability of the given label each find most of them."""
    data = load_digits()
    rng = np.random.default_rng(0)
    flipped = rng.choice(256, 8, replace=False)
    labels = data.y_train.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, 8)) % 10
    noisy = ImageDataset(data.name, data.classes, data.x_train, labels, data.x_test, data.y_test, data.mean, data.std)
    config = tiny_config(tmp_path, dataset="digits", width=8, epochs=6, train_subset=256, lr=0.05, hflip=False)
    run_dir = train(config, data=noisy, quiet=True).run_dir
    dyn = dynamics.read_dynamics(run_dir)
    assert np.array_equal(dyn.train_label, labels[:256])  # the given (noisy) labels, as trained on
    scores = dynamics_scores.image_scores(dyn)
    rank = np.argsort(dynamics_scores.likely_mislabelled(scores))[flipped]
    assert (rank < 32).sum() >= 5, sorted(rank)  # random ranks would put 1 of 8 in the top 32
    clean = np.setdiff1d(np.arange(256), flipped)
    for score in (scores.aum, scores.final_prob):  # each score on its own ranks them high
        auroc = (score[clean][None, :] > score[flipped][:, None]).mean()
        assert auroc >= 0.85, auroc


def test_a_stopped_and_resumed_run_records_the_uninterrupted_dynamics(tmp_path, sample):
    """Stopped in epoch 2 of 3, with stale epoch-2 and -3 files planted (as a crash after an epoch's
    write and before its resume state leaves one): a resume drops them at once (stopped again in its
    first step, only epoch 1 is left), and the finished run's arrays equal an uninterrupted run's
    (CPU, deterministic)."""
    def stop_in_first_step(optimizer, args, kwargs):
        signal.raise_signal(signal.SIGINT)

    try:
        stopped = train_until_step(tmp_path / "stopped", sample, 11)
        assert stopped.status == "interrupted"
        for epoch in (2, 3):
            shutil.copy(stopped.run_dir / dynamics_file(1), stopped.run_dir / dynamics_file(epoch))
        handle = register_optimizer_step_post_hook(stop_in_first_step)
        try:
            assert resume(stopped.run_dir, quiet=True).status == "interrupted"
        finally:
            handle.remove()
        assert list(dynamics.read_dynamics(stopped.run_dir).epochs) == [1]
        assert resume(stopped.run_dir, quiet=True).status == "completed"
        whole = train(tiny_config(tmp_path / "whole", **FLAGS), data=sample, quiet=True).run_dir
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = dynamics.read_dynamics(whole), dynamics.read_dynamics(stopped.run_dir)
    assert list(a.epochs) == list(b.epochs) == [1, 2, 3] and a.problems == b.problems == []
    for name in ("train_prob", "train_margin", "train_correct", "test_pred", "test_prob", "train_label",
                 "test_label"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_under_torchrun_rank_0_gathers_every_image_and_the_plan_counts_both_processes(tmp_path, sample):
    """Two CPU processes, 251 training images (the sampler pads one shard, so one image is drawn
    twice): every image has a value each epoch, and the plan's steps per epoch are the global ones
    (126 images per process in batches of 16)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "engine", "train", *TINY_FLAGS,
         "--train-subset", "251", "--test-subset", "101", "--threads", "1", "--epochs", "2", "--lr", "0.05",
         "--runs-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list(tmp_path.iterdir())
    run, dyn = runs.load_run(run_dir), dynamics.read_dynamics(run_dir)
    assert run.status == "completed" and run.warnings == [] and dyn.problems == []
    assert run.meta["plan"]["processes"] == 2
    assert metrics.steps_per_epoch(run) == run.epochs[0]["step"] == run.meta["plan"]["steps_per_epoch"] == 8
    assert dyn.train_prob.shape == (2, 251) and not np.isnan(dyn.train_prob).any()
    assert np.array_equal(dyn.test_pred[-1], run.predictions("final")["pred"])
