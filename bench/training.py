"""Training-side measurements for `make bench`: data pipeline, model step vs end to end,
evaluation, range test, and the s11-vs-fast accuracy comparison on the CIFAR-10 sample (the
GPU epochs, MFU included, are bench/gpu_recipe.py's).

Every figure is measured on whatever device torch picks (CUDA when present, else CPU), and
reported with that device's name; widths and sizes that differ from the recipe are stated."""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from engine import runs
from engine.calibration import expected_calibration_error
from engine.config import build_config
from engine.data import TrainBatches, to_device_tensor
from engine.datasets import ImageDataset
from engine.device import autocast_dtype, pick_device, synchronize
from engine.evaluate import predict
from engine.lr_finder import range_test
from engine.model import create_model
from engine.reference import reference_loader
from engine.train import train


def data_pipeline(data: ImageDataset, images: int = 4096) -> dict:
    """Augmented images/s: the per-sample torchvision DataLoader (all cores) vs the batched path."""
    config = build_config({"dataset": "cifar10"})
    loader = reference_loader(data.x_train, data.y_train, config, data.mean, data.std)
    count, started = 0, None
    for i, (x, _) in enumerate(loader):
        if i == 1:  # the first batch pays for starting the workers
            started, count = time.perf_counter(), 0
        count += len(x)
        if started and count >= images:
            break
    reference_images, reference_seconds = count, time.perf_counter() - started
    device = pick_device("auto")
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    batches = TrainBatches(to_device_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device),
                           config, mean, std)
    count, started = 0, time.perf_counter()
    while count < images:
        for x, _ in batches:
            count += len(x)
            if count >= images:
                break
    synchronize(device)
    batched_seconds = time.perf_counter() - started
    reference, ours = reference_images / reference_seconds, count / batched_seconds
    return {"reference_images_per_s": reference, "batched_images_per_s": ours, "speedup": ours / reference,
            "reference_images": reference_images, "reference_seconds": reference_seconds,
            "batched_images": count, "batched_seconds": batched_seconds,
            "batch_size": config.batch_size, "device": str(device)}


def model_step_alone(width: int, batch_size: int, steps: int, device: torch.device) -> float:
    """Images/s of forward+backward+SGD on a synthetic batch already on the device."""
    config = build_config({"dataset": "cifar10", "width": width, "batch_size": batch_size})
    model = create_model(10, width).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)
    amp = autocast_dtype(config.amp, device)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = criterion(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


def training_throughput(data: ImageDataset, width: int, batch_size: int, steps: int) -> dict:
    """The engine end to end (batched augmentation, logging, scheduler) vs the model step alone.
    The end-to-end figure is epoch 2's, so both exclude the first steps' warm-up."""
    device = pick_device("auto")
    alone = model_step_alone(width, batch_size, steps, device)
    with tempfile.TemporaryDirectory() as tmp:
        config = build_config({"dataset": "cifar10", "width": width, "batch_size": batch_size, "epochs": 2,
                               "max_steps": steps, "lr": 0.05, "test_subset": 256, "runs_dir": tmp})
        result = train(config, data=data, quiet=True)
        last = result.epochs[-1]
        logged = sum(1 for row in runs.load_run(result.run_dir).steps() if row["epoch"] == last["epoch"])
    return {"width": width, "batch_size": batch_size, "steps": steps, "device": str(device),
            "model_alone_images_per_s": alone, "end_to_end_images_per_s": last["images_per_s"],
            "end_to_end_train_seconds": last["train_seconds"], "end_to_end_steps": logged,
            "ratio": last["images_per_s"] / alone}


def evaluation_and_range_test(data: ImageDataset, eval_width: int, finder_width: int, finder_iters: int) -> dict:
    device = pick_device("auto")
    model = create_model(10, eval_width).to(device)
    images = to_device_tensor(data.x_test, device)
    labels = torch.from_numpy(data.y_test).to(device)
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    config = build_config({"dataset": "cifar10", "width": finder_width})
    amp = autocast_dtype(config.amp, device)
    predict(model, images[:64], labels[:64], mean, std, 64, amp)
    synchronize(device)
    started = time.perf_counter()
    predict(model, images, labels, mean, std, config.eval_batch_size, amp)
    synchronize(device)
    evaluation = len(labels) / (time.perf_counter() - started)

    finder_model = create_model(10, finder_width).to(device)
    optimizer = torch.optim.SGD(finder_model.parameters(), lr=1e-6, momentum=0.9)
    batches = TrainBatches(to_device_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device),
                           config, mean, std)
    started = time.perf_counter()
    curve = range_test(finder_model, optimizer, torch.nn.CrossEntropyLoss(), batches, device,
                       config.lr_finder_start, config.lr_finder_end, finder_iters, amp)
    finder_seconds = time.perf_counter() - started
    return {"eval_width": eval_width, "evaluation_images_per_s": evaluation, "finder_width": finder_width,
            "finder_iters": finder_iters, "finder_batch": config.batch_size,
            "range_test_seconds": finder_seconds, "suggested_lr": curve.suggestion}


def accuracy_s11_vs_fast(data: ImageDataset, width: int, epochs: int, seeds: list[int]) -> dict:
    """Test accuracy and calibration (ECE of the final and best predictions, engine/calibration.py)
    of both presets at equal epochs on the sample (train 5,085 / test 1,017)."""
    out: dict = {"width": width, "epochs": epochs, "seeds": seeds}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("s11", "fast"):
            accs, seconds, ece = [], [], {tag: [] for tag in runs.PREDICTION_TAGS}
            for seed in seeds:
                config = build_config({"preset": preset, "dataset": "cifar10", "width": width, "epochs": epochs,
                                       "seed": seed, "runs_dir": tmp})
                result = train(config, data=data, quiet=True)
                run = runs.load_run(result.run_dir)
                accs.append(run.epochs[-1]["test_acc"])
                seconds.append(sum(e["train_seconds"] for e in run.epochs))
                for tag in runs.PREDICTION_TAGS:
                    ece[tag].append(expected_calibration_error(run.predictions(tag)))
            out[preset] = {"batch_size": run.config["batch_size"], "test_acc": accs, "mean": statistics.mean(accs),
                           "spread": (max(accs) - min(accs)) / 2, "train_seconds": statistics.mean(seconds),
                           **{f"ece_{tag}": values for tag, values in ece.items()}}
    return out
