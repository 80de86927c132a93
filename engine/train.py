"""The training loop, top to bottom: data on the device, range test, OneCycle SGD, evaluation,
and a run folder that holds everything about the run as it happens.

`train` starts a run, `resume` continues one from its last completed epoch; both go through
`_fit`, and `_supervised` records how the run ended (completed, failed, interrupted)."""

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

from engine import distributed, runs
from engine.checkpoint import load_resume_state, save_resume_state
from engine.config import TrainConfig, config_from_dict, fit_batch_to_dataset
from engine.data import ImageDataset, TrainBatches, augment, load_dataset, normalize, to_device_tensor
from engine.distributed import World
from engine.ema import WeightEMA
from engine.lr_finder import range_test
from engine.model import create_model, model_summary

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TrainingFailed(RuntimeError):
    """Training cannot go on (a NaN loss, say); the run is recorded as failed with this reason."""


# ---------------------------------------------------------------- machine set-up


def pick_device(choice: str, world: World | None = None) -> torch.device:
    local_rank = world.local_rank if world else 0
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available; use --device auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it measures that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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


def environment(device: torch.device, world: World) -> dict:
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
        "world_size": world.size,
        "git_commit": git_commit(),
        "command": sys.argv,
    }


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if config.amp and device.type == "cuda" else None


def rng_states() -> dict:
    """Python, numpy, torch and CUDA generator states, as tensors a weights-only load accepts."""
    _, numpy_key, numpy_pos, _, _ = np.random.get_state()
    return {
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        "numpy_key": torch.from_numpy(numpy_key.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict) -> None:
    random.setstate((3, tuple(int(v) for v in states["python"]), None))
    np.random.set_state(("MT19937", states["numpy_key"].numpy().astype(np.uint32), states["numpy_pos"], 0, 0.0))
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
            tta_flip: bool = False, progress: bool = False, index_offset: int = 0) -> dict[str, np.ndarray]:
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
        "index": np.arange(index_offset, index_offset + len(label), dtype=np.int64),
        "label": label,
        "pred": probs.argmax(1).astype(np.int64),
        "confidence": probs.max(1),
        "probs": probs,
        "loss": torch.cat(loss_out).cpu().numpy().astype(np.float32),
    }


def accuracy(dump: dict[str, np.ndarray]) -> float:
    return float((dump["pred"] == dump["label"]).mean()) if len(dump["label"]) else float("nan")


# ---------------------------------------------------------------- starting and ending a run


@dataclass
class TrainResult:
    run_dir: Path | None
    status: str
    epochs: list[dict] = field(default_factory=list)


class _Quiet:
    """Stands in for the writer on processes other than rank 0, which write nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _terminate_as_interrupt(signum, frame):  # SIGTERM ends the run the way Ctrl-C does
    raise KeyboardInterrupt(f"signal {signum}")


def _prepare(config: TrainConfig, data: ImageDataset | None, quiet: bool = False, fit_batch: bool = True,
             ) -> tuple[TrainConfig, World, torch.device, ImageDataset]:
    """Everything that can refuse the run, done before a run folder exists; the config comes back
    with what the dataset decides (the batch size under `min_steps_per_epoch`). A resumed run keeps
    the batch its config.json recorded (`fit_batch=False`): its schedule was built for it."""
    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    distributed.check_world(world, device.type)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, config.deterministic)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir)
    data = data.subset(config.train_subset, config.test_subset)
    if fit_batch:
        config, note = fit_batch_to_dataset(config, len(data.y_train), world.size)
        if note and world.is_main and not quiet:
            tqdm.write(note)
    if config.batch_size > len(data.y_train):
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(data.y_train)} training "
                         "images; lower --batch-size or raise --train-subset")
    if config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it")
    if len(data.y_test) < world.size:
        raise ValueError(f"{len(data.y_test)} test images cannot be shared by {world.size} processes")
    if config.batch_size % world.size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world.size} processes; "
                         "use a multiple of the process count")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return config, world, device, data


def train(config: TrainConfig, data: ImageDataset | None = None, quiet: bool = False) -> TrainResult:
    """Train one run and record it under `config.runs_dir`. Returns the run folder and status."""
    config, world, device, data = _prepare(config, data, quiet)
    distributed.init(world, device.type)
    quiet = quiet or not world.is_main
    model = create_model(len(data.classes), config.width)
    writer = runs.RunWriter.create(Path(config.runs_dir), config.name, config.epochs) if world.is_main else None

    def work() -> list[dict]:
        if writer:
            writer.write_json(runs.CONFIG_JSON, config.to_dict())
            writer.write_json(runs.ENVIRONMENT_JSON, environment(device, world))
            writer.write_json(runs.DATASET_JSON, data.describe())
            summary, text = model_summary(model, config.batch_size, device="cpu")
            writer.write_json(runs.MODEL_SUMMARY_JSON, summary)
            writer.write_text(runs.MODEL_SUMMARY_TXT, text)
            writer.write_array(runs.TEST_IMAGES_NPY, data.x_test)
        return _fit(config, data, model, device, world, writer or _Quiet(), quiet)

    return _supervised(writer, world, device, quiet, work)


def resume(run_dir: Path, quiet: bool = False) -> TrainResult:
    """Continue an interrupted or failed run from its last completed epoch."""
    run = runs.load_run(run_dir)
    if run.status == "completed":
        raise ValueError(f"run {run.id} is already complete; nothing to resume")
    if run.config is None or run.dataset is None:
        raise ValueError(f"run {run.id} lacks its config.json or dataset.json, so it cannot be resumed")
    config = config_from_dict(run.config)
    state = load_resume_state(run.resume_state_path())
    config, world, device, data = _prepare(config, None, quiet, fit_batch=False)
    if data.fingerprint() != run.dataset.get("fingerprint"):
        raise ValueError(f"the dataset {config.dataset!r} differs from the one run {run.id} was trained on "
                         f"(fingerprint {data.fingerprint()} vs {run.dataset.get('fingerprint')})")
    distributed.init(world, device.type)
    quiet = quiet or not world.is_main
    writer = None
    if world.is_main:
        writer = runs.RunWriter.reopen(run.path)
        writer.truncate_after(int(state["epoch"]), int(state["step"]))
    model = create_model(len(data.classes), config.width)
    if not quiet:
        tqdm.write(f"resuming {run.path} after epoch {int(state['epoch'])} of {config.epochs}")
    return _supervised(writer, world, device, quiet,
                       lambda: _fit(config, data, model, device, world, writer or _Quiet(), quiet, state))


def _supervised(writer: runs.RunWriter | None, world: World, device: torch.device, quiet: bool,
                work) -> TrainResult:
    """Run `work` and record truthfully how it ended; the run folder is always left readable."""
    say = (lambda msg: None) if quiet else tqdm.write
    path = writer.path if writer else None
    if path:
        say(f"run {path}")
    if device.type == "cpu" and world.is_main:
        say("No GPU found: training on the CPU, which is slow for ResNet18. For a quick look use "
            "`make demo`, or shorten the run with --epochs, --train-subset, --max-steps or --width.")
    previous_sigterm = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        epochs = work()
        if writer:
            writer.finish("completed")
        say(f"\nrun complete: {path}\nopen it with: streamlit run dashboard/app.py")
        return TrainResult(path, "completed", epochs)
    except KeyboardInterrupt:
        if writer:
            writer.finish("interrupted", "stopped by the user (Ctrl-C or SIGTERM)")
        say(f"\ninterrupted; every completed epoch is kept in {path}; continue it with "
            f"`python -m engine resume {path.name if path else ''}`")
        return TrainResult(path, "interrupted")
    except BaseException as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, torch.OutOfMemoryError):
            reason = f"out of memory: {exc}. Lower --batch-size or --eval-batch-size"
        if writer:
            writer.finish("failed", reason)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if writer:
            writer.release()
        distributed.shutdown(world)


# ---------------------------------------------------------------- the loop


def _record_train_samples(writer, batches: TrainBatches, data: ImageDataset, count: int = 32) -> None:
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


def _fit(config: TrainConfig, data: ImageDataset, model: torch.nn.Module, device: torch.device,
         world: World, writer, quiet: bool, state: dict | None = None) -> list[dict]:
    say = (lambda msg: None) if quiet else tqdm.write
    amp_dtype = autocast_dtype(config, device)
    model = model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(data.mean, device=device)
    std = torch.tensor(data.std, device=device)
    train_x, train_y = to_device_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    # Each process evaluates one contiguous shard of the test set; rank 0 gathers the dump.
    shard = -(-len(data.y_test) // world.size)
    first = min(world.rank * shard, len(data.y_test))
    test_x = to_device_tensor(data.x_test[first:first + shard], device)
    test_y = torch.from_numpy(data.y_test[first:first + shard]).to(device)
    batches = TrainBatches(train_x, train_y, config, mean, std, world.rank, world.size)

    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr or config.lr_finder_start,
                                momentum=config.momentum, nesterov=config.nesterov,
                                weight_decay=config.weight_decay, **fused)

    if state is not None:
        max_lr = float(state["max_lr"])
    elif config.lr is not None:
        max_lr = config.lr
    else:
        suggestion = None
        if world.is_main:  # one range test, on rank 0, then every process takes its suggestion
            result = range_test(model, optimizer, criterion, TrainBatches(train_x, train_y, config, mean, std),
                                device, config.lr_finder_start, config.lr_finder_end, config.lr_finder_iters,
                                amp_dtype, quiet)
            suggestion = result.suggestion
            writer.write_json(runs.LR_FINDER_JSON, {**result.to_dict(), "used_lr": suggestion,
                                                    "start_lr": config.lr_finder_start,
                                                    "end_lr": config.lr_finder_end,
                                                    "num_iter": config.lr_finder_iters})
            say(f"range test: suggested max LR {suggestion:.3g} (steepest descent of the smoothed loss)")
        max_lr = distributed.broadcast_float(world, suggestion)
    if state is None and world.is_main:
        _record_train_samples(writer, batches, data)

    steps_per_epoch = len(batches) if not config.max_steps else min(config.max_steps, len(batches))
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=config.resolved_pct_start(),
        div_factor=config.div_factor, final_div_factor=config.final_div_factor,
        three_phase=config.three_phase, anneal_strategy=config.anneal_strategy)
    ema = None
    if config.ema_decay:
        ema = WeightEMA(model, config.ema_decay)
    eval_model = ema.module if ema is not None else model

    start_epoch, step, best_acc = 0, 0, -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, step, best_acc = int(state["epoch"]), int(state["step"]), float(state["best_acc"])
        restore_rng_states(state["rng"])

    train_model = model
    if world.active and config.sync_bn:  # after the range test, which runs on rank 0 alone
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # keeps the same parameters
        train_model = model
    if world.active:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        train_model = torch.compile(train_model)

    header = "| epoch |       lr |   time | train loss | train acc | test loss | test acc |"
    say(header)
    say("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    history: list[dict] = []
    compile_seconds = None
    for epoch in range(start_epoch + 1, config.epochs + 1):
        train_model.train()
        batches.set_epoch(epoch)
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
                ema.update(model)
            step += 1
            lr_last = scheduler.get_last_lr()[0]
            pending.append((step, loss.detach(), lr_last))
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update()
            if config.compile and compile_seconds is None:  # the first call compiles: report it apart
                synchronize(device)
                compile_seconds = time.perf_counter() - started
                say(f"torch.compile: the first step took {compile_seconds:.1f} s, compilation included")
            if len(pending) >= config.step_log_every:
                _flush_steps(writer, pending, epoch, bar)
            if epoch == start_epoch + 1 and i == 5 and device.type == "cpu":
                elapsed, counted = time.perf_counter() - started, 6
                if compile_seconds is not None:  # the compiling first step says nothing of the rest
                    elapsed, counted = elapsed - compile_seconds, 5
                per_step = elapsed / counted
                left = total_steps - step + 6
                say(f"estimated duration on this CPU: {_human(per_step * left * 1.15)} "
                    f"({left} steps at {per_step:.2f} s/step, evaluation included roughly)")
        _flush_steps(writer, pending, epoch, bar)
        bar.close()
        train_seconds = time.perf_counter() - started
        loss_sum, correct, seen_all = distributed.sum_all(
            world, loss_sum, correct, torch.tensor(float(seen), device=device))
        train_loss = float(loss_sum) / max(float(seen_all), 1)
        if not math.isfinite(train_loss):
            raise TrainingFailed(f"the training loss became {train_loss} in epoch {epoch}; "
                                 f"lower the learning rate (max LR was {max_lr:.3g})")
        dump = predict(eval_model, test_x, test_y, mean, std, config.eval_batch_size, amp_dtype,
                       config.tta_flip, progress=not quiet, index_offset=first)
        dump = distributed.gather_dump(world, dump)
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch,
            "step": step,
            "lr_start": lr_start,
            "lr_end": lr_last,
            "train_loss": train_loss,
            "train_acc": float(correct) / max(float(seen_all), 1),
            "test_loss": float(dump["loss"].mean()),
            "test_acc": accuracy(dump),
            "seconds": seconds,
            "train_seconds": train_seconds,
            "images_per_s": float(seen_all) / train_seconds,
        }
        if compile_seconds is not None and epoch == start_epoch + 1:
            row["compile_seconds"] = compile_seconds
        if world.is_main:
            metadata = {"epoch": str(epoch), "test_acc": f"{row['test_acc']:.6f}", "width": str(config.width),
                        "num_classes": str(len(data.classes)), "run_id": writer.path.name}
            weights = eval_model.state_dict()
            if row["test_acc"] > best_acc:
                writer.write_predictions("best", dump)
                writer.write_checkpoint("best", weights, metadata)
            if epoch == config.epochs:
                writer.write_predictions("final", dump)
                writer.write_checkpoint("final", weights, metadata)
            # The epoch's row comes after its files and before the resume state: a crash in
            # between resumes from the previous epoch and replaces this row.
            writer.append_epoch(row)
            save_resume_state(writer.path / runs.CHECKPOINTS_DIR / runs.RESUME_STATE, {
                "epoch": epoch, "step": step, "best_acc": max(best_acc, row["test_acc"]), "max_lr": max_lr,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else {},
                "rng": rng_states(),
            })
        best_acc = max(best_acc, row["test_acc"])
        distributed.barrier(world)
        history.append(row)
        say(f"| {epoch:5d} | {row['lr_end']:8.2e} | {_human(seconds):>6} | {row['train_loss']:10.4f} | "
            f"{row['train_acc']:9.2%} | {row['test_loss']:9.4f} | {row['test_acc']:8.2%} |")
    return history


def _flush_steps(writer, pending: list, epoch: int, bar) -> None:
    """One host sync per flush, not per step: losses stay on the device until then."""
    if not pending:
        return
    losses = torch.stack([p[1] for p in pending]).float().cpu().tolist()
    writer.append_steps([{"step": s, "epoch": epoch, "loss": loss, "lr": lr}
                         for (s, _, lr), loss in zip(pending, losses)])
    bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bad = next((s for (s, _, _), loss in zip(pending, losses) if not math.isfinite(loss)), None)
    pending.clear()
    if bad is not None:
        raise TrainingFailed(f"the training loss became NaN or infinite at step {bad}; lower the learning rate")


def _human(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
