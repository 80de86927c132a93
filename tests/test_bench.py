"""The bench's measurements run end to end on tiny sizes and report sane numbers."""

import numpy as np
import torch

from bench import training
from bench.__main__ import render


def test_data_pipeline_compares_both_pipelines(sample):
    result = training.data_pipeline(sample, images=256)
    assert result["reference_images_per_s"] > 0 and result["batched_images_per_s"] > 0
    assert np.isclose(result["speedup"], result["batched_images_per_s"] / result["reference_images_per_s"])


def test_training_throughput_reports_both_rates(sample):
    result = training.training_throughput(sample, width=4, batch_size=32, steps=3)
    assert result["model_alone_images_per_s"] > 0 and result["end_to_end_images_per_s"] > 0
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "training": result})
    assert "ratio" in table and "width 4" in table


def test_table_reports_grad_cam_per_image_and_rerenders_a_saved_result(tmp_path, capsys):
    import json

    from bench.__main__ import main

    result = {"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "dashboard": {"grad_cam_16_s": 1.6}}
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    assert main(["--render", str(saved)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "ms per image" in line)
    assert row.rstrip(" |").endswith("100")


def test_epoch_timing_runs_both_presets_and_reports_them(sample):
    """The GPU section of `make bench`, run tiny on the CPU so its code is exercised without a GPU."""
    result = training.gpu_epochs(sample, epochs=2, images=256, width=4, device=torch.device("cpu"))
    assert result["s11"]["batch_size"] == 64
    assert result["fast"]["batch_size"] == 8  # 256 images: the fast preset's floor of 32 steps per epoch
    for preset in ("s11", "fast"):
        assert result[preset]["seconds_per_epoch"] > 0 and result[preset]["train_images_per_s"] > 0
        assert result[preset]["mfu"] is None  # no bf16 peak for a CPU
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "gpu": result})
    assert "fast on CPU" in table and "256 images/epoch, batch 8" in table


def test_an_out_path_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    from bench.__main__ import main

    assert main(["--out", str(tmp_path / "missing" / "result.json")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "missing").exists()
