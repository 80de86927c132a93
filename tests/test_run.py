"""An end-to-end run on the CIFAR-10 sample writes every file of the run format, consistently."""

import copy
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine import runs
from engine.config import build_config
from engine.data import place_on_device, to_device_tensor
from engine.device import Stopped
from engine.evaluate import predict
from engine.lr_finder import DIVERGE_TH, SKIP_END, SKIP_START, SMOOTH_F, STEPS_EVERY, range_test
from engine.model import create_model
from tests.conftest import PROJECT_ROOT


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
    assert len(curve["lr"]) == len(curve["loss"]) == len(curve["smoothed_loss"]) == curve["num_iter"]
    assert curve["lr"][0] == pytest.approx(curve["start_lr"]) and curve["used_lr"] == curve["suggested_lr"]
    assert curve["suggested_lr"] == curve["lr"][curve["suggestion_index"]]


def test_the_range_test_logs_each_step_as_it_runs(tiny_run):
    """lr_finder_steps.jsonl, written during the test, holds the same numbers as the final curve."""
    curve = runs.load_run(tiny_run).lr_finder
    rows, problems = runs.read_lr_finder_steps(tiny_run)
    assert problems == []
    n = curve["num_iter"]
    assert [r["step"] for r in rows] == list(range(1, n + 1))
    lrs = np.array([r["lr"] for r in rows])
    assert lrs[0] == pytest.approx(curve["start_lr"]) and lrs[-1] == pytest.approx(curve["end_lr"])
    assert np.allclose(np.diff(np.log(lrs)), np.log(curve["end_lr"] / curve["start_lr"]) / (n - 1))
    assert [r["lr"] for r in rows] == curve["lr"]  # the lr each step used, as the library recorded it
    assert [r["loss"] for r in rows] == curve["loss"]  # one fact, one source: the same raw losses


def test_a_run_with_a_fixed_lr_writes_no_range_test_steps(tmp_path, sample):
    from engine.train import train
    from tests.conftest import tiny_config

    run_dir = train(tiny_config(tmp_path, lr=0.05, epochs=1, batch_size=8, train_subset=64, test_subset=32),
                    data=sample, quiet=True).run_dir
    assert (run_dir / runs.EPOCHS_JSONL).is_file()
    assert not (run_dir / runs.LR_FINDER_STEPS_JSONL).exists() and not (run_dir / runs.LR_FINDER_JSON).exists()


def finder_parts(sample, width: int = 4):
    torch.manual_seed(0)
    config = build_config({"dataset": "cifar10", "batch_size": 32, "width": width})
    model = create_model(10, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = place_on_device(sample.subset(256, 32), config, torch.device("cpu")).batches
    return model, optimizer, batches


def test_range_test_sweeps_geometrically_and_suggests_the_steepest_descent(sample):
    model, optimizer, batches = finder_parts(sample)
    model_before, optimizer_before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    n, start, end = 30, 1e-4, 0.05
    handed: list[list[dict]] = []
    result = range_test(model, optimizer, torch.nn.CrossEntropyLoss(), batches, torch.device("cpu"), start, end, n,
                        quiet=True, on_steps=handed.append)
    assert [len(rows) for rows in handed] == [STEPS_EVERY] * (n // STEPS_EVERY)  # in batches, not per step
    rows = [row for batch in handed for row in batch]
    assert rows == [{"step": i + 1, "lr": lr, "loss": loss} for i, (lr, loss) in enumerate(zip(result.lrs,
                                                                                                result.losses))]
    lrs, raw, smoothed = np.array(result.lrs), np.array(result.losses), np.array(result.smoothed)
    assert len(lrs) == len(raw) == len(smoothed) == n and not result.diverged
    assert lrs[0] == pytest.approx(start) and lrs[-1] == pytest.approx(end)
    assert np.allclose(np.diff(np.log(lrs)), np.log(end / start) / (n - 1))  # exponential steps, rising
    expected = [raw[0]]  # the smoothed curve is the exponential average of the recorded losses
    for loss in raw[1:]:
        expected.append(SMOOTH_F * loss + (1 - SMOOTH_F) * expected[-1])
    assert np.allclose(smoothed, expected, rtol=1e-6)
    slopes = np.gradient(smoothed[SKIP_START:n - SKIP_END])
    assert SKIP_START <= result.suggestion_index < n - SKIP_END
    assert slopes[result.suggestion_index - SKIP_START] == slopes.min()
    assert result.suggestion == lrs[result.suggestion_index]
    for key, value in model_before.items():  # the model and optimizer are back, bit for bit
        assert torch.equal(model.state_dict()[key], value), key
    assert optimizer.state_dict() == optimizer_before


def test_range_test_reports_divergence_from_the_losses(sample):
    model, optimizer, batches = finder_parts(sample)
    handed: list[list[dict]] = []
    result = range_test(model, optimizer, torch.nn.CrossEntropyLoss(), batches, torch.device("cpu"), 1e-3, 1e4, 60,
                        quiet=True, on_steps=handed.append)
    assert result.diverged and len(result.lrs) < 60  # the library stopped early
    rows = [row for batch in handed for row in batch]  # every step done is logged, the last one too
    assert [r["step"] for r in rows] == list(range(1, len(result.lrs) + 1))
    assert [r["lr"] for r in rows] == result.lrs
    assert [r["loss"] for r in rows] == [v if np.isfinite(v) else None for v in result.losses]
    assert result.smoothed[-1] > DIVERGE_TH * min(result.smoothed)
    assert all(s <= DIVERGE_TH * min(result.smoothed[:i + 1]) for i, s in enumerate(result.smoothed[:-1]))


def test_a_stop_request_ends_the_range_test_and_restores_the_model(sample):
    model, optimizer, batches = finder_parts(sample)
    before = copy.deepcopy(model.state_dict())
    drawn = []

    def stop_after_four() -> None:
        drawn.append(1)
        if len(drawn) > 4:
            raise Stopped("stop")

    with pytest.raises(Stopped):
        range_test(model, optimizer, torch.nn.CrossEntropyLoss(), batches, torch.device("cpu"), 1e-4, 0.05, 30,
                   quiet=True, check_stop=stop_after_four)
    assert len(drawn) == 5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


class WarningLoss(torch.nn.CrossEntropyLoss):
    """A loss that warns, as user code or a library may during the range test."""

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        warnings.warn("the loss saw something odd", RuntimeWarning, stacklevel=2)
        return super().forward(outputs, labels)


def test_a_warning_raised_during_the_range_test_reaches_the_user(sample):
    """The library's own output is hidden; a Python warning is not lost with it. Run as a user
    runs it (a plain process, default warning filters), since pytest records warnings itself."""
    code = textwrap.dedent("""
        import torch
        from engine.datasets import load_npz
        from engine.lr_finder import range_test
        from tests.conftest import SAMPLE
        from tests.test_run import WarningLoss, finder_parts
        model, optimizer, batches = finder_parts(load_npz(SAMPLE))
        range_test(model, optimizer, WarningLoss(), batches, torch.device("cpu"), 1e-4, 0.05, 12, quiet=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning: the loss saw something odd" in done.stderr
    assert "Learning rate search finished" not in done.stdout + done.stderr  # the library's hint stays hidden


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
    final = load_file(run.checkpoint_path("final"))
    state = torch.load(run.resume_state_path(), weights_only=True)
    assert state["ema"]["updates"] == 2 * 32  # one update per step
    assert all(torch.equal(final[k], v) for k, v in state["ema"]["module"].items())  # the EMA was saved,
    assert any(not torch.equal(final[k], v) for k, v in state["model"].items())  # not the raw weights
    model = create_model(10, 4)
    model.load_state_dict(final)
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
