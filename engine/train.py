"""The training loop, top to bottom: data on the device, range test, OneCycle SGD, evaluation,
and a run folder that holds everything about the run as it happens.

`train` starts a run and `resume` continues one from its last completed epoch; both hand the
loop (`fit`) to `_supervised`, which records how the run ended (completed, failed, interrupted).
Only rank 0 writes: on every other process `writer` is None."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from engine import checkpoint, commands, distributed, dynamics, runs
from engine.config import TrainConfig, config_from_dict
from engine.data import PlacedData, TrainBatches, place_on_device, shard_bounds, train_samples
from engine.datasets import ImageDataset
from engine.device import Stopped, StopRequest, autocast_dtype, environment, prepare_run, synchronize
from engine.distributed import World
from engine.ema import WeightEMA
from engine.evaluate import accuracy, predict
from engine.lr_finder import SUGGESTIONS, range_test
from engine.model import create_model, model_summary
from engine.profiling import label
from engine.run_layout import BEST, FINAL, Status
from engine.run_listing import duration
from engine.training_plan import TrainingPlan, plan_training

STOPPED_BY_USER = "stopped by the user (Ctrl-C or SIGTERM)"
TABLE_HEADER = ("| epoch |       lr |   time | train loss | train acc | test loss | test acc |\n"
                "|-------|----------|--------|------------|-----------|-----------|----------|")


class TrainingFailed(RuntimeError):
    """Training cannot go on (a NaN loss, say); the run is recorded as failed with this reason."""


@dataclass
class TrainResult:
    run_dir: Path | None
    status: str
    epochs: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- starting and ending a run


def train(config: TrainConfig, data: ImageDataset | None = None, quiet: bool = False,
          sweep: dict | None = None) -> TrainResult:
    """Train one run and record it under `config.runs_dir`. Returns the run folder and status.
    `sweep`: the trial's record when a sweep started the run, kept in its run.json."""
    config, world, device, data = prepare_run(config, data, quiet)
    distributed.init(world, device.type)
    model = create_model(len(data.classes), config.width)
    writer = (runs.RunWriter.create(Path(config.runs_dir), config.name, config.epochs, sweep=sweep)
              if world.is_main else None)

    def work(stop: StopRequest) -> list[dict]:
        if writer is not None:  # the files a run has before its first step
            with label("setup writes"):
                writer.write_config(config.to_dict())
                writer.write_environment(environment(device, world))
                writer.write_dataset(data.describe())
                writer.write_model_summary(*model_summary(model, config.batch_size, device="cpu"))
                writer.write_test_images(data.x_test)
                writer.write_train_samples(*train_samples(data, config))
        return fit(config, data, model, device, world, writer, stop, quiet)

    return _supervised(writer, world, device, quiet, work, config=config)


def resume(run_dir: Path, quiet: bool = False) -> TrainResult:
    """Continue an interrupted or failed run from its last completed epoch. Everything is loaded
    and checked before the first file of the run changes: a refusal leaves the run as it was."""
    run = runs.load_run(run_dir)
    if run.status == Status.COMPLETED:
        raise ValueError(f"run {run.id} is already complete; nothing to resume")
    if run.config is None or run.dataset is None:
        raise ValueError(f"run {run.id} lacks its config.json or dataset.json, so it cannot be resumed")
    config = config_from_dict(run.config, source=run.path / runs.CONFIG_JSON,
                              problems=[p.message for p in run.problems if p.file == runs.CONFIG_JSON])
    path = run.resume_state_path()
    state = checkpoint.load_resume_state(path)
    config, world, device, data = prepare_run(config, None, quiet, fit_batch=False)
    if data.fingerprint() != run.dataset.get("fingerprint"):
        raise ValueError(f"the dataset {config.dataset!r} differs from the one run {run.id} was trained on "
                         f"(fingerprint {data.fingerprint()} vs {run.dataset.get('fingerprint')})")
    model = create_model(len(data.classes), config.width)
    steps = plan_training(config, len(data.y_train), world.size).steps_per_epoch
    checkpoint.check_resume_state(state, model, config.epochs, steps, bool(config.ema_decay), path)
    config = dataclasses.replace(config, lr=float(state["max_lr"]))  # its own LR: no second range test
    distributed.init(world, device.type)
    writer = None  # rank 0 alone takes the run over
    if world.is_main:
        writer = runs.RunWriter.reopen(run.path)
        writer.truncate_after(int(state["epoch"]), int(state["step"]))
    if world.is_main and not quiet:
        tqdm.write(f"resuming {run.path} after epoch {int(state['epoch'])} of {config.epochs}")
    return _supervised(writer, world, device, quiet,
                       lambda stop: fit(config, data, model, device, world, writer, stop, quiet, state), config=config)


def _supervised(writer: runs.RunWriter | None, world: World, device: torch.device, quiet: bool,
                work: Callable[[StopRequest], list[dict]], config: TrainConfig) -> TrainResult:
    """Run `work` and record truthfully how it ended; the run folder is always left readable.
    Ctrl-C and SIGTERM only request a stop, which `work` honours at its next safe point."""
    quiet = quiet or not world.is_main
    say = (lambda msg: None) if quiet else tqdm.write
    path = writer.path if writer is not None else None
    if path:
        say(f"run {path}")
    if device.type == "cpu":
        say(cpu_note(config))
    with StopRequest(announce=not quiet) as stop:
        try:
            epochs = work(stop)
            if writer is not None:
                writer.finish(Status.COMPLETED)
            if path:
                say(f"\nrun complete: {path}\n"
                    f"open it with: {commands.command('dashboard', runs_dir=path.parent)}")
            return TrainResult(path, Status.COMPLETED, epochs)
        except (Stopped, KeyboardInterrupt):
            if writer is not None:
                writer.finish(Status.INTERRUPTED, STOPPED_BY_USER)
            if path:
                say(f"\ninterrupted; every completed epoch is kept in {path}\ncontinue it with: {resume_command(path)}")
            return TrainResult(path, Status.INTERRUPTED)
        except BaseException as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
            if isinstance(exc, torch.OutOfMemoryError):
                reason = f"out of memory: {exc}. Lower --batch-size or --eval-batch-size"
            if writer is not None:
                writer.finish(Status.FAILED, reason)
            raise
        finally:
            if writer is not None:
                writer.release()
            distributed.shutdown(world)


def cpu_note(config: TrainConfig) -> str:
    """What a run on the CPU is told: the demo, as a command that works pasted (not `make demo`,
    which only the checkout has), unless this run is the demo."""
    if config.preset == "demo":
        return "No GPU found: training on the CPU."
    demo = commands.command("train", "--preset", "demo", runs_dir=config.runs_dir)
    return ("No GPU found: training on the CPU, which is slow for ResNet18. For a quick look try "
            f"`{demo}`, or shorten the run with --epochs, --train-subset, --max-steps or --width.")


def resume_command(run_dir: Path) -> str:
    """The command that continues a run, as it can be pasted (the runs folder named unless ./runs)."""
    return commands.command("resume", run_dir.name, runs_dir=run_dir.parent)


# ---------------------------------------------------------------- the loop


@dataclass
class Progress:
    """Where the run stands: what the resume state saves and restores."""
    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0


@dataclass
class Loop:
    """What every epoch uses, built once by `fit`. `model` holds the weights that are saved;
    `train_model` is what steps call (the same weights wrapped for DDP or torch.compile)."""
    config: TrainConfig
    device: torch.device
    world: World
    writer: runs.RunWriter | None  # None on every process but rank 0
    stop: StopRequest
    say: Callable[[str], None]
    model: torch.nn.Module
    train_model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: WeightEMA | None
    data: PlacedData  # this process's training batches and test shard, on the device
    plan: TrainingPlan  # batch, steps and max LR, as run.json records them
    amp_dtype: torch.dtype | None
    quiet: bool  # no progress bars and no table (rank != 0, or asked)
    recorder: dynamics.TrainRecorder | None  # None when `dynamics` is off
    first_epoch: int = 1  # the first epoch this process trains (after a resume point)
    compile_seconds: float | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def max_lr(self) -> float:
        return self.plan.max_lr

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def should_stop(self, sync: bool) -> bool:
        """One process stops at any safe point. Under torchrun every process must stop after the
        same step, so they agree at flush points and epoch ends only (one small all-reduce)."""
        if not self.world.active:
            return self.stop.requested
        return sync and distributed.any_rank(self.world, self.stop.requested, self.device)


def fit(config: TrainConfig, data: ImageDataset, model: torch.nn.Module, device: torch.device, world: World,
        writer: runs.RunWriter | None, stop: StopRequest, quiet: bool, state: dict | None = None) -> list[dict]:
    """The loop in nanoGPT's order: data, model and optimizer, learning rate, schedule, resume
    state, wrapping, then epochs of train / evaluate / record. Returns the epochs' rows."""
    quiet = quiet or not world.is_main
    say = (lambda msg: None) if quiet else tqdm.write
    amp_dtype = autocast_dtype(config.amp, device)
    # data: uint8 tensors on the device; each process evaluates one contiguous shard of the test set
    placed = place_on_device(data, config, device, world.rank, world.size)
    # model and optimizer
    model = model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr or config.lr_finder_start,
                                momentum=config.momentum, nesterov=config.nesterov,
                                weight_decay=config.weight_decay, **({"fused": True} if device.type == "cuda" else {}))
    # learning rate: the config's (a resumed run's own), else the range test's suggestion
    max_lr = config.lr
    if max_lr is None:
        with label("range test"):
            max_lr = _find_max_lr(config, model, optimizer, criterion, placed.batches, device, world, writer, stop,
                                  say, quiet, amp_dtype)
    # the plan (batch, steps, warm-up, max LR), recorded in run.json before the first step
    plan = plan_training(config, len(data.y_train), world.size, max_lr)
    if writer is not None:
        writer.write_plan(plan.to_dict())
    # schedule and weight average
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=plan.max_lr, total_steps=plan.total_steps, pct_start=config.resolved_pct_start(),
        div_factor=config.div_factor, final_div_factor=config.final_div_factor,
        three_phase=config.three_phase, anneal_strategy=config.anneal_strategy)
    ema = WeightEMA(model, config.ema_decay) if config.ema_decay else None
    # resume: every piece of saved state goes back here, and only here
    progress = Progress()
    if state is not None:
        progress = Progress(*checkpoint.restore_resume_state(state, model, optimizer, scheduler, ema))
    # wrapping for several processes and compilation, after the range test (which runs on rank 0 alone)
    model, train_model = distributed.wrap(model, world, device, config.sync_bn)
    train_model = torch.compile(train_model) if config.compile else train_model
    loop = Loop(config, device, world, writer, stop, say, model, train_model, criterion, optimizer, scheduler, ema,
                placed, plan, amp_dtype, quiet, dynamics.TrainRecorder() if config.dynamics else None,
                first_epoch=progress.epoch + 1)
    if writer is not None and loop.recorder is not None:  # the labels the dynamics are measured against
        writer.write_dynamics_labels(dynamics.label_arrays(data.y_train, data.y_test, len(data.classes)))
    say(TABLE_HEADER)
    history: list[dict] = []
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        row = train_one_epoch(loop, epoch, progress)
        with label("evaluate"):
            dump = _evaluate(loop)
        row.update(test_loss=float(dump["loss"].mean()), test_acc=accuracy(dump),
                   seconds=time.perf_counter() - started)
        record_epoch(loop, row, dump, progress)
        history.append(row)
        if epoch < config.epochs and loop.should_stop(sync=True):  # a finished run is complete
            raise Stopped(STOPPED_BY_USER)
    return history


def _find_max_lr(config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 criterion: torch.nn.Module, batches: TrainBatches, device: torch.device, world: World,
                 writer: runs.RunWriter | None, stop: StopRequest, say: Callable[[str], None], quiet: bool,
                 amp_dtype: torch.dtype | None) -> float:
    """One range test, on rank 0, then every process takes its suggestion. A stop request ends
    it between steps when it runs alone (under torchrun the others wait for its answer)."""
    suggestion = None
    if world.is_main:  # on the whole training set, whatever this process's shard
        batches = TrainBatches(batches.images, batches.labels, config, batches.mean, batches.std)
        result = range_test(model, optimizer, criterion, batches, device, config.lr_finder_start,
                            config.lr_finder_end, config.lr_finder_iters, amp_dtype, quiet,
                            check_stop=None if world.active else stop.check,
                            on_steps=writer.append_lr_finder_steps if writer is not None else None,
                            method=config.lr_suggestion)
        suggestion = result.suggestion
        if writer is not None:
            writer.write_lr_finder({**result.to_dict(), "used_lr": suggestion, "start_lr": config.lr_finder_start,
                                    "end_lr": config.lr_finder_end, "num_iter": config.lr_finder_iters})
        others = ", ".join(f"{name} {v['lr']:.3g}" for name, v in result.to_dict()["suggestions"].items())
        say(f"range test: max LR {suggestion:.3g} ({SUGGESTIONS[config.lr_suggestion]}; the suggestions: {others})")
        for warning in result.warnings:
            say(f"range test warning: {warning}")
    return distributed.broadcast_float(world, suggestion)


def train_one_epoch(loop: Loop, epoch: int, progress: Progress) -> dict:
    """One pass over the training set: the epoch's training metrics (loss, accuracy, LRs, and
    `train_seconds`, the training time without evaluation). Steps are logged every
    `step_log_every`; a stop request ends the epoch after the current step."""
    config, device = loop.config, loop.device
    loop.train_model.train()
    loop.data.batches.set_epoch(epoch)
    if loop.recorder is not None:
        loop.recorder.start_epoch()
    lr_start = lr_last = loop.scheduler.get_last_lr()[0]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, pending, compiled_now = 0, [], None
    started = time.perf_counter()
    bar = tqdm(total=loop.steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False,
               disable=True if loop.quiet else None, unit="step")
    for i, (index, x, y) in zip(range(loop.steps_per_epoch), loop.data.batches.indexed()):
        with label("forward"):
            if device.type == "cuda" and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=loop.amp_dtype or torch.float32,
                                enabled=loop.amp_dtype is not None):
                logits = loop.train_model(x)
                loss = loop.criterion(logits.float(), y)
        with label("backward"):
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with label("optimizer"):
            loop.optimizer.step()
        if loop.ema is not None:
            with label("ema"):
                loop.ema.update(loop.model)
        with label("schedule and metrics"):
            progress.step += 1
            lr_last = loop.scheduler.get_last_lr()[0]
            pending.append((progress.step, loss.detach(), lr_last))
            loop.scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        if loop.recorder is not None:
            with label("record dynamics"):
                loop.recorder.add(index, logits, y)
        bar.update()
        if config.compile and loop.compile_seconds is None:  # the first call compiles: report it apart
            synchronize(device)
            loop.compile_seconds = compiled_now = time.perf_counter() - started
            loop.say(f"torch.compile: the first step took {compiled_now:.1f} s, compilation included")
        flush = len(pending) >= config.step_log_every
        if flush:
            _flush_steps(loop.writer, pending, epoch, bar)
        if epoch == loop.first_epoch and i == 5 and device.type == "cpu":
            _say_estimate(loop, time.perf_counter() - started, progress.step)
        if loop.should_stop(sync=flush):
            _flush_steps(loop.writer, pending, epoch, bar)
            bar.close()
            raise Stopped(STOPPED_BY_USER)
    _flush_steps(loop.writer, pending, epoch, bar)
    bar.close()
    with label("epoch end (host sync)"):
        synchronize(device)
    train_seconds = time.perf_counter() - started
    loss_sum, correct, seen_all = distributed.sum_all(loop.world, loss_sum, correct,
                                                      torch.tensor(float(seen), device=device))
    train_loss = float(loss_sum) / max(float(seen_all), 1)
    if not math.isfinite(train_loss):
        raise TrainingFailed(f"the training loss became {train_loss} in epoch {epoch}; "
                             f"lower the learning rate (max LR was {loop.max_lr:.3g})")
    row = {"epoch": epoch, "step": progress.step, "lr_start": lr_start, "lr_end": lr_last,
           "train_loss": train_loss, "train_acc": float(correct) / max(float(seen_all), 1),
           "train_seconds": train_seconds, "images_per_s": float(seen_all) / train_seconds}
    if compiled_now is not None:
        row["compile_seconds"] = compiled_now
    return row


def _evaluate(loop: Loop) -> dict:
    """The test-set dump, gathered on rank 0. One process can stop between batches; under
    torchrun the processes finish it together and agree at the epoch's end."""
    c, data = loop.config, loop.data
    dump = predict(loop.eval_model, data.test_x, data.test_y, data.batches.mean, data.batches.std,
                   c.eval_batch_size, loop.amp_dtype, c.tta_flip, progress=not loop.quiet, index_offset=data.test_first,
                   check_stop=None if loop.world.active else loop.stop.check)
    return distributed.gather_dump(loop.world, dump)


def _final_verdict(loop: Loop) -> dict:
    """The final model's prediction dump of the whole training set, unaugmented and as the test
    set is evaluated (EMA weights, flip TTA), each process a shard, gathered on rank 0: its
    probability of the given label finds wrong labels better than any score of the training pass
    (bench/label_noise.py). One extra pass, once per run."""
    c, batches, world = loop.config, loop.data.batches, loop.world
    first, end = shard_bounds(len(batches.labels), world.rank, world.size)
    dump = predict(loop.eval_model, batches.images[first:end], batches.labels[first:end],
                   batches.mean, batches.std, c.eval_batch_size, loop.amp_dtype, c.tta_flip,
                   progress=not loop.quiet, index_offset=first, check_stop=None if world.active else loop.stop.check)
    return distributed.gather_dump(world, dump)


def record_epoch(loop: Loop, row: dict, dump: dict, progress: Progress) -> None:
    """Write the epoch on rank 0: its dynamics, best and final files, then its row, then the resume state.
    A crash in between resumes from the previous epoch and replaces the row. The best epoch is
    the earliest on a tie (strict >), as `runs.best_epoch` reads it."""
    is_best = row["test_acc"] > progress.best_acc
    progress.epoch, progress.best_acc = row["epoch"], max(progress.best_acc, row["test_acc"])
    writer, epoch = loop.writer, row["epoch"]
    if loop.recorder is not None:  # every process takes part in the gather; rank 0 writes
        final_train = None
        if epoch == loop.config.epochs:
            with label("final model over the training set"):
                final_train = _final_verdict(loop)
        with label("dynamics gather and write"):
            part = distributed.gather_dump(loop.world, loop.recorder.epoch_part())
            if writer is not None:
                writer.write_dynamics_epoch(epoch, dynamics.epoch_arrays(part, len(loop.data.batches.labels), dump,
                                                                         final_train))
    if writer is not None:
        with label("dump and checkpoint writes"):
            metadata = {"epoch": str(epoch), "test_acc": f"{row['test_acc']:.6f}", "width": str(loop.config.width),
                        "num_classes": str(dump["probs"].shape[1]), "run_id": writer.path.name}
            weights = loop.eval_model.state_dict()
            if is_best:
                writer.write_predictions(BEST, dump)
                writer.write_checkpoint(BEST, weights, metadata)
            if epoch == loop.config.epochs:
                writer.write_predictions(FINAL, dump)
                writer.write_checkpoint(FINAL, weights, metadata)
        with label("epoch row and resume state writes"):
            writer.append_epoch(row)
            writer.write_resume_state(checkpoint.resume_state(progress.epoch, progress.step, progress.best_acc,
                                                              loop.max_lr, loop.model, loop.optimizer,
                                                              loop.scheduler, loop.ema))
    distributed.barrier(loop.world)
    loop.say(f"| {epoch:5d} | {row['lr_end']:8.2e} | {duration(row['seconds']):>6} | {row['train_loss']:10.4f} | "
             f"{row['train_acc']:9.2%} | {row['test_loss']:9.4f} | {row['test_acc']:8.2%} |")


def _flush_steps(writer: runs.RunWriter | None, pending: list, epoch: int, bar: tqdm) -> None:
    """One host sync per flush, not per step: losses stay on the device until then."""
    if not pending:
        return
    with label("step log (host sync)"):
        losses = torch.stack([p[1] for p in pending]).float().cpu().tolist()
        if writer is not None:
            writer.append_steps([{"step": s, "epoch": epoch, "loss": loss, "lr": lr}
                                 for (s, _, lr), loss in zip(pending, losses)])
    bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bad = next((s for (s, _, _), loss in zip(pending, losses) if not math.isfinite(loss)), None)
    pending.clear()
    if bad is not None:
        raise TrainingFailed(f"the training loss became NaN or infinite at step {bad}; lower the learning rate")


def _say_estimate(loop: Loop, elapsed: float, step: int) -> None:
    """After 6 steps on a CPU: how long the rest will take (a compiling first step left out)."""
    counted = 6
    if loop.compile_seconds is not None:
        elapsed, counted = elapsed - loop.compile_seconds, 5
    per_step = elapsed / counted
    left = loop.config.epochs * loop.steps_per_epoch - step + 6
    loop.say(f"estimated duration on this CPU: {duration(per_step * left * 1.15)} "
             f"({left} steps at {per_step:.2f} s/step, evaluation included roughly)")
