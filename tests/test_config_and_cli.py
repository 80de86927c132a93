"""Bad input is refused before any work, with a message naming the problem and the fix."""

import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest

from engine.__main__ import main
from engine.config import ConfigError, TrainConfig, build_config, fit_batch_to_dataset
from tests.conftest import PROJECT_ROOT, SAMPLE


def run_cli(*args, cwd=PROJECT_ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_defaults_are_the_reference_recipe():
    c = build_config()
    assert (c.batch_size, c.epochs, c.momentum, c.lr, c.width) == (64, 20, 0.9, None, 64)
    assert (c.lr_finder_start, c.lr_finder_end, c.lr_finder_iters) == (1e-6, 0.9, 200)
    assert (c.div_factor, c.final_div_factor, c.three_phase, c.anneal_strategy) == (100, 100, False, "linear")
    assert c.resolved_pct_start() == 5 / 20
    assert (c.jitter_p, c.contrast, c.saturation, c.hue, c.grey_p, c.crop_padding, c.cutout) == (
        0.5, 0.1, 0.2, 0.1, 0.2, 4, 16)


def test_toml_then_flags_override_the_preset(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "demo"\nepochs = 3\nweight_decay = 5e-4\n')
    c = build_config({"epochs": 7}, str(toml))
    assert c.dataset == "digits" and c.weight_decay == 5e-4 and c.epochs == 7


@pytest.mark.parametrize("overrides, fragment", [
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"epochs": -1}, "epochs must be at least 1"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"epochz": 3}, "did you mean 'epochs'"),
    ({"lr": "fast"}, "lr: expected float"),
    ({"preset": "huge"}, "unknown preset"),
])
def test_bad_config_values_are_named(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        build_config(overrides)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        build_config({"epochs": 0, "batch_size": 0, "momentum": 2.0})
    assert len(str(info.value).splitlines()) == 3


def test_unknown_toml_key(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("batch = 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'batch'"):
        build_config({}, str(toml))


def write_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 10,
                  x_test=rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10) % 10,
                  classes=np.array([f"c{i}" for i in range(10)]))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, fragment", [
    ({"x_train": np.zeros((20, 28, 28), np.uint8)}, "x_train must be uint8 of shape (N, 32, 32, 3)"),
    ({"x_test": np.zeros((10, 32, 32, 3), np.float32)}, "x_test must be uint8"),
    ({"y_test": np.arange(10) + 5}, "labels must lie in 0..9"),
    ({"y_train": np.arange(7)}, "y_train has 7 labels for 20 images"),
    ({"y_test": None}, "lacks the keys ['y_test']"),
])
def test_malformed_npz_is_refused_and_nothing_is_written(tmp_path, changes, fragment):
    npz = write_npz(tmp_path / "bad.npz", **changes)
    runs_dir = tmp_path / "runs"
    code = main(["train", "--dataset", f"npz:{npz}", "--runs-dir", str(runs_dir), "--lr", "0.1"])
    assert code == 2
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    from engine.datasets import DatasetError, load_npz
    with pytest.raises(DatasetError) as info:
        load_npz(npz)
    assert fragment in str(info.value)


def test_garbage_file_as_npz(tmp_path):
    npz = tmp_path / "garbage.npz"
    npz.write_bytes(b"not a zip at all")
    from engine.datasets import DatasetError, load_npz
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_npz(npz)


def test_batch_larger_than_the_dataset_is_refused_before_a_run_exists(tmp_path, sample):
    runs_dir = tmp_path / "runs"
    code = main(["train", "--dataset", f"npz:{SAMPLE}", "--train-subset", "16", "--batch-size", "64",
                 "--runs-dir", str(runs_dir), "--lr", "0.1"])
    assert code == 2
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_run_too_short_for_the_schedule_is_refused_before_a_run_exists(tmp_path, sample, capsys):
    runs_dir = tmp_path / "runs"
    code = main(["train", "--dataset", f"npz:{SAMPLE}", "--epochs", "1", "--train-subset", "128",
                 "--batch-size", "64", "--runs-dir", str(runs_dir), "--lr", "0.1"])
    assert code == 2
    assert "only 2 optimizer steps" in capsys.readouterr().err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_offline_cifar10_without_data_fails_fast_with_the_ways_on(tmp_path):
    started = time.monotonic()
    result = run_cli("train", "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"),
                     timeout=90)
    assert result.returncode == 2
    assert "could not be downloaded" in result.stderr
    assert "cifar-10-batches-py" in result.stderr and "make demo" in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_help_documents_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: resnet-runs")
    for command in ("train", "resume", "list", "show", "export", "import", "dashboard"):
        assert command in result.stdout
        assert run_cli(command, "--help").returncode == 0


def test_every_config_field_has_one_help_text_and_train_help_shows_it():
    """The help is written once, beside the field, and is what `train --help` prints."""
    train_help = " ".join(run_cli("train", "--help").stdout.split())
    for field in dataclasses.fields(TrainConfig):
        text = field.metadata.get("help", "")
        assert len(text) > 10, field.name
        assert f"--{field.name.replace('_', '-')}" in train_help
        assert " ".join(text.split()) in train_help, field.name
    assert "--config" in train_help


@pytest.mark.parametrize("name, ok", [("seed 1", True), ("n" * 64, True), ("n" * 65, False), ("a\x00b", False),
                                      ("evil\x1b[2J", False), ("two\nlines", False), ("bidi\u202e", False)])
def test_run_names_are_checked_in_the_config(name, ok):
    if ok:
        assert build_config({"name": name}).name == name
    else:
        with pytest.raises(ConfigError, match="name must be at most 64 printable characters"):
            build_config({"name": name})


def test_runs_dir_comes_from_the_environment_below_files_and_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('runs_dir = "from-file"\n')
    environment = {"runs_dir": "from-env"}
    assert build_config({}, None, environment).runs_dir == "from-env"
    assert build_config({}, str(toml), environment).runs_dir == "from-file"
    assert build_config({"runs_dir": "from-flag"}, str(toml), environment).runs_dir == "from-flag"


def test_list_shows_runs(runs_dir, capsys):
    assert main(["list", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "seed1" in out and "seed2" in out and "completed" in out


def test_fast_preset_keeps_batch_512_on_cifar10_and_lowers_it_on_the_small_sample():
    fast = build_config({"preset": "fast"})
    assert fit_batch_to_dataset(fast, 50_000) == (fast, "")
    on_sample, note = fit_batch_to_dataset(fast, 5_085)
    assert on_sample.batch_size == 128 and -(-5_085 // 128) >= 32 > -(-5_085 // 256)
    assert "512 -> 128" in note and "--min-steps-per-epoch 0" in note
    assert fit_batch_to_dataset(build_config({"preset": "fast", "min_steps_per_epoch": 0}), 5_085)[0].batch_size == 512
    assert fit_batch_to_dataset(build_config({"batch_size": 512}), 100)[0].batch_size == 512  # s11: off

    def fitted(batch: int, images: int, processes: int = 1) -> int:
        config = build_config({"preset": "fast", "batch_size": batch})
        return fit_batch_to_dataset(config, images, processes)[0].batch_size

    # under torchrun the batch stays a multiple of the process count: 60 images, 24 -> 12 -> 6 -> 3,
    # and not on to 1 as with one process
    assert fitted(24, 60) == 1 and fitted(24, 60, processes=3) == 3
    # halving stops where the next batch would not split over the processes: 20 -> 10, not 5, for 2
    assert fitted(20, 100) == 2 and fitted(20, 100, processes=2) == 10
    # --max-steps caps an epoch below the floor: halve only until the cap is reached
    capped = build_config({"preset": "fast", "max_steps": 5})
    assert fit_batch_to_dataset(capped, 5_085)[0].batch_size == 512  # 10 steps of 512 already exceed the cap
