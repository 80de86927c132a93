"""bench/gpu_recipe.py's dry run, for real: the same code path as the GPU recipe (resnet-runs
train for each variant, the profiled epoch, the reader's check), tiny and on the CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench import gpu_recipe
from engine import runs
from tests.conftest import PROJECT_ROOT, SAMPLE

SIZES = gpu_recipe.DRY_RUN


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, sample) -> tuple[dict, Path, float]:
    """(the result JSON, the --out folder, seconds) of one `python -m bench.gpu_recipe --dry-run`."""
    out = tmp_path_factory.mktemp("gpu-recipe")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.gpu_recipe", "--dry-run", "--sample", str(SAMPLE),
                           "--out", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 of 4 complete and without warnings" in done.stdout  # the table a user reads
    return json.loads((out / "result.json").read_text()), out, seconds


def test_every_variant_reports_sane_epoch_figures(dry_run):
    result, _, _ = dry_run
    gpu = result["gpu"]
    assert result["complete"]
    batches = {"s11": 64, "fast": 16, "fast + compile": 16}  # fast: 512 images halve 512 to 16 for 32 steps
    for label in gpu_recipe.VARIANTS:
        v = gpu[label]
        assert v["status"] == "completed" and v["exit_code"] == 0 and v["epochs"] == SIZES.epochs
        assert v["batch_size"] == batches[label] and v["range_test"] and v["max_lr"] > 0
        # an epoch is its training and its evaluation; training covers every image of the epoch
        assert math.isclose(v["seconds_per_epoch"], v["train_seconds_per_epoch"] + v["eval_seconds_per_epoch"])
        assert math.isclose(v["train_images_per_s"], SIZES.train_images / v["train_seconds_per_epoch"], rel_tol=1e-6)
        assert math.isclose(v["eval_images_per_s"], SIZES.test_images / v["eval_seconds_per_epoch"])
        # the command's wall time holds both epochs plus setup, range test and writes
        assert v["outside_epochs_seconds"] > 0
        assert v["total_seconds"] > SIZES.epochs * min(v["seconds_per_epoch"], v["first_epoch_seconds"])
        # 6 x the forward multiply-adds: 3.33 GFLOP at width 64, about (8/64)^2 of it at width 8
        assert v["train_flop_per_image"] == pytest.approx(3.33e9 * (SIZES.width / 64) ** 2, rel=0.1)
        assert v["mfu"] is None and v["mfu_whole_run"] is None  # a CPU has no bf16 peak to compare with
        assert (v["compile_seconds"] is not None) == (label == "fast + compile")
    assert result["recipe"]["compile"] is False  # the dry run says its compile variant ran without Dynamo


def test_mfu_is_training_flops_over_the_peak(dry_run):
    """The same run read with a stated peak: MFU = images/s x FLOP per image / peak FLOP/s."""
    result, out, _ = dry_run
    fast = result["gpu"]["fast"]
    run = runs.load_run(out / "runs" / fast["run_id"])
    launched = gpu_recipe.Launched(run.path, 0, fast["total_seconds"])
    figures = gpu_recipe.epoch_figures(run, launched, SIZES.test_images, peak=1e12)
    assert figures["mfu"] == pytest.approx(fast["train_images_per_s"] * fast["train_flop_per_image"] / 1e12)
    assert 0 < figures["mfu_whole_run"] < figures["mfu"]  # the whole command spends time outside training
    assert gpu_recipe.bf16_peak_flops("NVIDIA H200") == 989e12
    assert gpu_recipe.bf16_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_recipe.bf16_peak_flops("CPU (x86_64, 2 cores)") is None


def test_profile_breaks_the_epoch_down_by_the_engines_ranges(dry_run):
    result, out, _ = dry_run
    p = result["profile"]
    assert p["exit_code"] == 0 and p["steps"] == SIZES.profile_steps
    ranges = p["ranges"]
    for step_part in ("augment", "forward", "backward", "optimizer", "ema", "schedule and metrics"):
        assert ranges[step_part]["calls"] == SIZES.profile_steps and ranges[step_part]["host_ms"] > 0, step_part
    for once in ("evaluate", "setup writes", "dump and checkpoint writes", "epoch row and resume state writes",
                 "step log (host sync)", "epoch end (host sync)"):
        assert ranges[once]["calls"] == 1, once
    assert "range test" not in ranges  # the profiled run is given its LR
    # the ranges do not overlap, so together they fit inside the profiled command's wall time
    assert 0 < sum(r["host_ms"] for r in ranges.values()) < p["wall_seconds"] * 1e3
    assert p["host_ms_outside_ranges"] >= 0
    assert p["top_kernels"] == [] and p["top_host_ops"][0]["ms"] > 0  # a CPU profile: host ops only
    assert any("convolution" in op["name"] for op in p["top_host_ops"][:3])
    table = (out / "profile.txt").read_text()
    assert "engine: forward" in table and "aten::" in table
    assert result["run_checks"]["profile"]["epochs"] == 1


def test_every_run_folder_opens_without_warnings(dry_run):
    """Read back here with the engine's reader, not only by the script's own check."""
    result, out, _ = dry_run
    folders = runs.run_dirs(out / "runs")
    checked = {c["run_id"] for c in result["run_checks"].values()}
    assert {f.name for f in folders} == checked and len(folders) == len(gpu_recipe.VARIANTS) + 1
    for folder in folders:
        run = runs.load_run(folder)
        run.steps()
        run.test_images()
        for tag in ("final", "best"):
            assert run.predictions(tag) is not None
        assert run.status == "completed" and run.warnings == [], (folder.name, run.warnings)
        assert run.dataset["train_size"] == SIZES.train_images and run.dataset["test_size"] == SIZES.test_images
        assert run.config["width"] == SIZES.width
    assert all(c["clean"] and c["warnings"] == [] for c in result["run_checks"].values())


def test_the_result_renders_with_bench_render(dry_run, capsys):
    from bench.__main__ import main

    _, out, seconds = dry_run
    assert main(["--render", str(out / "result.json")]) == 0
    table = capsys.readouterr().out
    for label in gpu_recipe.VARIANTS:
        assert f"| {label} on CPU" in table
    assert "train +" in table and "profile, one epoch of fast" in table and "4 of 4" in table
    print(f"dry run: {seconds:.1f} s")  # shown with -s: the README promises well under a minute


def test_the_full_recipe_refuses_without_a_gpu_and_without_the_sample(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full recipe would run")
    if SAMPLE.exists():
        assert gpu_recipe.main(["--sample", str(SAMPLE), "--out", str(tmp_path)]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert gpu_recipe.main(["--dry-run", "--sample", str(tmp_path / "absent.npz")]) == 2
    assert "absent" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_failed_run_is_recorded_and_shown_not_fatal(tmp_path, sample):
    """A variant that fails (here a loss gone to NaN) leaves its figures as 'failed' with the
    reason, and the table shows it, so the recipe can go on to the next variant."""
    from bench.__main__ import render

    dataset = gpu_recipe.write_tiled_sample(SAMPLE, SIZES, tmp_path / "data")
    launched = gpu_recipe.launch(["--preset", "s11", "--lr", "1e30", "--step-log-every", "1"], "diverges", SIZES,
                                 dataset, tmp_path / "runs", epochs=2)
    assert launched.exit_code == 1 and launched.run_dir is not None
    figures = gpu_recipe.epoch_figures(runs.load_run(launched.run_dir), launched, SIZES.test_images, None)
    assert figures["status"] == "failed" and "loss" in figures["error"] and "seconds_per_epoch" not in figures
    assert not gpu_recipe.check_run(launched.run_dir)["clean"]
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0,
                    "gpu": {"device_name": "CPU", "s11": figures}})
    assert "| s11 on CPU" in table and "failed: TrainingFailed: the training loss became NaN" in table
