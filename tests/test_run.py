"""An end-to-end run on the CIFAR-10 sample writes every file of the run format, consistently."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine import runs
from engine.data import to_device_tensor
from engine.model import create_model
from engine.train import predict


def test_a_run_writes_every_file_of_the_format(tiny_run):
    for name in (runs.RUN_JSON, runs.CONFIG_JSON, runs.ENVIRONMENT_JSON, runs.DATASET_JSON,
                 runs.MODEL_SUMMARY_JSON, runs.MODEL_SUMMARY_TXT, runs.LR_FINDER_JSON, runs.EPOCHS_JSONL,
                 runs.STEPS_JSONL, runs.TEST_IMAGES_NPY, runs.TRAIN_SAMPLES_NPZ,
                 "predictions/final.npz", "predictions/best.npz",
                 "checkpoints/final.safetensors", "checkpoints/best.safetensors"):
        assert (tiny_run / name).is_file(), name
    leftovers = [p.name for p in tiny_run.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_the_reader_sees_a_complete_run(tiny_run):
    run = runs.load_run(tiny_run)
    assert run.warnings == []
    assert run.status == "completed" and run.meta["finished"]
    assert run.meta["format_version"] == runs.FORMAT_VERSION
    assert [e["epoch"] for e in run.epochs] == [1, 2]
    assert run.config["width"] == 4 and run.config["epochs"] == 2
    assert run.dataset["classes"][0] == "airplane" and run.dataset["test_size"] == 128
    assert len(run.dataset["fingerprint"]) == 16
    assert run.environment["torch"] == torch.__version__
    assert run.environment["command"]
    summary = run.summary()
    assert summary["epochs_done"] == 2 and summary["best_test_acc"] is not None


def test_accuracy_recomputed_from_the_dump_equals_the_recorded_one(tiny_run):
    run = runs.load_run(tiny_run)
    dump = run.predictions("final")
    assert dump["probs"].shape == (128, 10)
    assert np.allclose(dump["probs"].sum(1), 1, atol=1e-4)
    assert (dump["pred"] == dump["probs"].argmax(1)).all()
    recomputed = float((dump["pred"] == dump["label"]).mean())
    assert recomputed == pytest.approx(run.epochs[-1]["test_acc"], abs=1e-12)
    best = run.predictions("best")
    assert float((best["pred"] == best["label"]).mean()) == pytest.approx(
        max(e["test_acc"] for e in run.epochs), abs=1e-12)


def test_the_final_checkpoint_reproduces_the_dump(tiny_run):
    run = runs.load_run(tiny_run)
    model = create_model(len(run.class_names), run.config["width"])
    model.load_state_dict(load_file(run.checkpoint_path("final")))
    images = to_device_tensor(np.asarray(run.test_images()), torch.device("cpu"))
    dump = run.predictions("final")
    again = predict(model, images, torch.from_numpy(dump["label"]), torch.tensor(run.dataset["mean"]),
                    torch.tensor(run.dataset["std"]), batch_size=64)
    assert (again["pred"] == dump["pred"]).all()
    assert np.allclose(again["probs"], dump["probs"], atol=1e-4)


def test_range_test_curve_and_suggestion(tiny_run):
    curve = json.loads((tiny_run / runs.LR_FINDER_JSON).read_text())
    assert len(curve["lr"]) == len(curve["loss"]) == len(curve["smoothed_loss"]) > 0
    assert curve["start_lr"] <= curve["suggested_lr"] <= curve["end_lr"]
    assert curve["used_lr"] == curve["suggested_lr"]
    assert curve["lr"] == sorted(curve["lr"])


def test_onecycle_lr_per_step_has_the_reference_shape(tiny_run):
    run = runs.load_run(tiny_run)
    steps = run.steps()
    lrs = [s["lr"] for s in steps]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    max_lr = run.lr_finder["used_lr"]
    peak = int(np.argmax(lrs))
    pct = run.config["pct_start"] or min(5 / run.config["epochs"], 0.5)
    assert abs(peak - (pct * len(lrs) - 1)) <= 1
    assert lrs[peak] == pytest.approx(max_lr, rel=1e-6)
    assert lrs[0] == pytest.approx(max_lr / 100, rel=1e-6)
    assert lrs[-1] == pytest.approx(max_lr / 100 / 100, rel=0.05)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))


def test_fast_preset_saves_the_ema_weights_it_evaluates(tmp_path, sample):
    from engine.train import train
    from tests.conftest import tiny_config

    config = tiny_config(tmp_path, preset="fast", batch_size=64, epochs=2)
    assert config.ema_decay > 0 and config.tta_flip and config.label_smoothing > 0
    run = runs.load_run(train(config, data=sample, quiet=True).run_dir)
    # 256 images at batch 64 are 4 steps an epoch; the preset's floor of 32 steps halves it to 8.
    assert run.config["batch_size"] == 8
    assert len(run.steps()) == 2 * 32
    model = create_model(10, 4)
    model.load_state_dict(load_file(run.checkpoint_path("final")))
    dump = run.predictions("final")
    again = predict(model, to_device_tensor(np.asarray(run.test_images()), torch.device("cpu")),
                    torch.from_numpy(dump["label"]), torch.tensor(run.dataset["mean"]),
                    torch.tensor(run.dataset["std"]), batch_size=64, tta_flip=True)
    assert np.allclose(again["probs"], dump["probs"], atol=1e-4)


def test_compile_reports_its_time_apart_and_saves_plain_weights(tmp_path, sample):
    """--compile on the CPU (inductor, about 40 s here): the compile time is recorded on its own
    and the checkpoint loads into an uncompiled model."""
    from engine.checkpoint import load_weights
    from engine.train import train
    from tests.conftest import tiny_config

    config = tiny_config(tmp_path, compile=True, epochs=2, lr=0.05)
    run = runs.load_run(train(config, data=sample, quiet=True).run_dir)
    assert run.status == "completed"
    first, second = run.epochs
    assert 0 < first["compile_seconds"] <= first["train_seconds"] and "compile_seconds" not in second
    load_weights(create_model(10, 4), run.checkpoint_path("final"))
