"""The training loop, top to bottom: data on the device, range test, OneCycle SGD, evaluation,
and a run folder that holds everything about the run as it happens."""

from __future__ import annotations

import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from engine import runs
from engine.config import TrainConfig
from engine.data import ImageDataset, TrainBatches, augment, load_dataset, normalize, to_device_tensor
from engine.lr_finder import range_test
from engine.model import create_model, model_summary

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TrainingFailed(RuntimeError):
    """Training cannot go on (a NaN loss, say); the run is recorded as failed with this reason."""


# ---------------------------------------------------------------- machine set-up


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available; use --device auto or cpu")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "world_size": 1,
        "git_commit": git_commit(),
        "command": sys.argv,
    }


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if config.amp and device.type == "cuda" else None


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
            tta_flip: bool = False, progress: bool = False) -> dict[str, np.ndarray]:
    """The prediction dump for a uint8 image tensor: per image label, prediction, confidence,
    class probabilities and loss."""
    model.eval()
    probs_out, loss_out = [], []
    device = images.device
    for start in tqdm(range(0, len(labels), batch_size), desc="evaluate", leave=False,
                      disable=not progress, unit="batch"):
        x = normalize(images[start:start + batch_size], mean, std)
        y = labels[start:start + batch_size]
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x).float()
            if tta_flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        probs_out.append(logits.softmax(1))
        loss_out.append(F.cross_entropy(logits, y, reduction="none"))
    probs = torch.cat(probs_out).cpu().numpy().astype(np.float32)
    label = labels.cpu().numpy().astype(np.int64)
    return {
        "index": np.arange(len(label), dtype=np.int64),
        "label": label,
        "pred": probs.argmax(1).astype(np.int64),
        "confidence": probs.max(1),
        "probs": probs,
        "loss": torch.cat(loss_out).cpu().numpy().astype(np.float32),
    }


def accuracy(dump: dict[str, np.ndarray]) -> float:
    return float((dump["pred"] == dump["label"]).mean()) if len(dump["label"]) else float("nan")


# ---------------------------------------------------------------- the run


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    epochs: list[dict] = field(default_factory=list)


def _record_start(writer: runs.RunWriter, config: TrainConfig, device: torch.device,
                  data: ImageDataset, model: torch.nn.Module) -> None:
    writer.write_json(runs.CONFIG_JSON, config.to_dict())
    writer.write_json(runs.ENVIRONMENT_JSON, environment(device))
    writer.write_json(runs.DATASET_JSON, data.describe())
    summary, text = model_summary(model, config.batch_size, device="cpu")
    writer.write_json(runs.MODEL_SUMMARY_JSON, summary)
    writer.write_text(runs.MODEL_SUMMARY_TXT, text)
    writer.write_array(runs.TEST_IMAGES_NPY, data.x_test)


def _record_train_samples(writer: runs.RunWriter, batches: TrainBatches, data: ImageDataset,
                          count: int = 32) -> None:
    """A few training images as the model sees them (augmented) beside the originals."""
    n = min(count, len(data.y_train))
    originals = batches.images[:n]
    gen = torch.Generator(device=originals.device).manual_seed(0)
    x = augment(originals, batches.config, batches.mean, batches.std, gen)
    x = x * batches.std.view(1, -1, 1, 1) + batches.mean.view(1, -1, 1, 1)
    augmented = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    writer.write_npz(runs.TRAIN_SAMPLES_NPZ, {
        "images": data.x_train[:n], "augmented": augmented, "labels": data.y_train[:n],
    })


def _terminate_as_interrupt(signum, frame):  # SIGTERM ends the run the way Ctrl-C does
    raise KeyboardInterrupt(f"signal {signum}")


def train(config: TrainConfig, data: ImageDataset | None = None, quiet: bool = False) -> TrainResult:
    """Train one run and record it under `config.runs_dir`. Returns the run folder and status."""
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, config.deterministic)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir)
    data = data.subset(config.train_subset, config.test_subset)
    if config.batch_size > len(data.y_train):
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(data.y_train)} training "
                         "images; lower --batch-size or raise --train-subset")

    model = create_model(len(data.classes), config.width)
    writer = runs.RunWriter.create(Path(config.runs_dir), config.name, config.epochs)
    say = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg))
    say(f"run {writer.path}")
    if device.type == "cpu":
        say("No GPU found: training on the CPU, which is slow for ResNet18. For a quick look use "
            "`make demo`, or shorten the run with --epochs, --train-subset, --max-steps or --width.")
    previous_sigterm = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        _record_start(writer, config, device, data, model)
        epochs = _fit(config, data, model, device, writer, say, quiet)
        writer.finish("completed")
        say(f"\nrun complete: {writer.path}\nopen it with: streamlit run dashboard/app.py")
        return TrainResult(writer.path, "completed", epochs)
    except KeyboardInterrupt:
        writer.finish("interrupted", "stopped by the user (Ctrl-C or SIGTERM)")
        say(f"\ninterrupted; every completed epoch is kept in {writer.path}")
        return TrainResult(writer.path, "interrupted")
    except BaseException as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, torch.OutOfMemoryError):
            reason = f"out of memory: {exc}. Lower --batch-size or --eval-batch-size"
        writer.finish("failed", reason)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        writer.release()


def _fit(config: TrainConfig, data: ImageDataset, model: torch.nn.Module, device: torch.device,
         writer: runs.RunWriter, say, quiet: bool) -> list[dict]:
    amp_dtype = autocast_dtype(config, device)
    model = model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(data.mean, device=device)
    std = torch.tensor(data.std, device=device)
    train_x, train_y = to_device_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    test_x, test_y = to_device_tensor(data.x_test, device), torch.from_numpy(data.y_test).to(device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    batches = TrainBatches(train_x, train_y, config, mean, std, gen)
    _record_train_samples(writer, batches, data)

    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr or config.lr_finder_start,
                                momentum=config.momentum, nesterov=config.nesterov,
                                weight_decay=config.weight_decay, **fused)

    max_lr = config.lr
    if max_lr is None:
        result = range_test(model, optimizer, criterion, batches, device, config.lr_finder_start,
                            config.lr_finder_end, config.lr_finder_iters, amp_dtype)
        max_lr = result.suggestion
        writer.write_json(runs.LR_FINDER_JSON, {**result.to_dict(), "used_lr": max_lr,
                                                "start_lr": config.lr_finder_start,
                                                "end_lr": config.lr_finder_end,
                                                "num_iter": config.lr_finder_iters})
        say(f"range test: suggested max LR {max_lr:.3g} (steepest descent of the smoothed loss)")

    steps_per_epoch = len(batches) if not config.max_steps else min(config.max_steps, len(batches))
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=config.resolved_pct_start(),
        div_factor=config.div_factor, final_div_factor=config.final_div_factor,
        three_phase=config.three_phase, anneal_strategy=config.anneal_strategy)

    train_model = torch.compile(model) if config.compile else model
    ema = None
    if config.ema_decay:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    eval_model = ema.module if ema is not None else model

    header = "| epoch |       lr |   time | train loss | train acc | test loss | test acc |"
    say(header)
    say("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    history: list[dict] = []
    best_acc, step = -1.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        lr_start = lr_last = scheduler.get_last_lr()[0]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        pending: list[tuple[int, torch.Tensor, float]] = []
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False,
                   disable=quiet, unit="step")
        for i, (x, y) in enumerate(batches):
            if i >= steps_per_epoch:
                break
            if device.type == "cuda" and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = train_model(x)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            lr_last = scheduler.get_last_lr()[0]
            pending.append((step, loss.detach(), lr_last))
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update()
            if len(pending) >= config.step_log_every:
                _flush_steps(writer, pending, epoch, bar)
            if epoch == 1 and i == 5 and device.type == "cpu":
                per_step = (time.perf_counter() - started) / 6
                say(f"estimated duration on this CPU: {_human(per_step * total_steps * 1.15)} "
                    f"({total_steps} steps at {per_step:.2f} s/step, evaluation included roughly)")
        _flush_steps(writer, pending, epoch, bar)
        bar.close()
        train_seconds = time.perf_counter() - started
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise TrainingFailed(f"the training loss became {train_loss} in epoch {epoch}; "
                                 f"lower the learning rate (max LR was {max_lr:.3g})")
        dump = predict(eval_model, test_x, test_y, mean, std, config.eval_batch_size, amp_dtype,
                       config.tta_flip, progress=not quiet)
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch,
            "step": step,
            "lr_start": lr_start,
            "lr_end": lr_last,
            "train_loss": train_loss,
            "train_acc": float(correct) / max(seen, 1),
            "test_loss": float(dump["loss"].mean()),
            "test_acc": accuracy(dump),
            "seconds": seconds,
            "train_seconds": train_seconds,
            "images_per_s": seen / train_seconds,
        }
        metadata = {"epoch": str(epoch), "test_acc": f"{row['test_acc']:.6f}", "width": str(config.width),
                    "num_classes": str(len(data.classes)), "run_id": writer.path.name}
        if row["test_acc"] > best_acc:
            best_acc = row["test_acc"]
            writer.write_predictions("best", dump)
            writer.write_checkpoint("best", eval_model.state_dict(), metadata)
        if epoch == config.epochs:
            writer.write_predictions("final", dump)
            writer.write_checkpoint("final", eval_model.state_dict(), metadata)
        writer.append_epoch(row)
        history.append(row)
        say(f"| {epoch:5d} | {row['lr_end']:8.2e} | {_human(seconds):>6} | {row['train_loss']:10.4f} | "
            f"{row['train_acc']:9.2%} | {row['test_loss']:9.4f} | {row['test_acc']:8.2%} |")
    return history


def _flush_steps(writer: runs.RunWriter, pending: list, epoch: int, bar) -> None:
    """One host sync per flush, not per step: losses stay on the device until then."""
    if not pending:
        return
    losses = torch.stack([p[1] for p in pending]).float().cpu().tolist()
    writer.append_steps([{"step": s, "epoch": epoch, "loss": loss, "lr": lr}
                         for (s, _, lr), loss in zip(pending, losses)])
    bar.set_postfix(loss=f"{losses[-1]:.3f}")
    pending.clear()


def _human(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
