"""The one training config: a typed dataclass with the reference recipe as defaults, named
presets of overrides, TOML files, and validation that reports every problem before work starts.

Each field's help text lives beside it (`field(metadata={"help": ...})`) and is what `train --help`
prints, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine import commands

MAX_NAME_LENGTH = 64


class ConfigError(ValueError):
    """Bad configuration; the message lists each problem with its fix."""


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # what and where
    name: str = _option("", f"a readable label for the run, at most {MAX_NAME_LENGTH} printable characters "
                            "(also part of its folder name)")
    preset: str = _option("s11", "named bundle of overrides: s11 (the reference recipe), demo, fast")
    dataset: str = _option("cifar10", "cifar10 (downloaded to --data-dir), digits (bundled, offline) or npz:PATH")
    data_dir: str = _option("data", "where CIFAR-10 lives or is downloaded to")
    runs_dir: str = _option("runs", "where run folders are written (the RUNS_DIR environment variable sets "
                                    "the default)")
    # model
    width: int = _option(64, "channels of ResNet18's first stage; 64 is the standard model, smaller is faster")
    # optimisation
    epochs: int = _option(20, "passes over the training set")
    batch_size: int = _option(64, "global batch size; under torchrun each process takes batch_size / processes")
    min_steps_per_epoch: int = _option(0, "halve the batch size on small datasets until an epoch has this many "
                                          "steps (0: off; the fast preset sets 32)")
    lr: float | None = _option(None, "OneCycle's max LR; given, it skips the LR range test (default: the range "
                                     "test's suggestion)")
    momentum: float = _option(0.9, "SGD momentum")
    nesterov: bool = _option(False, "Nesterov momentum")
    weight_decay: float = _option(0.0, "SGD weight decay (L2)")
    label_smoothing: float = _option(0.0, "cross-entropy label smoothing")
    # LR range test (torch-lr-finder)
    lr_finder_start: float = _option(1e-6, "LR range test: first LR of the exponential sweep")
    lr_finder_end: float = _option(0.9, "LR range test: last LR of the sweep")
    lr_finder_iters: int = _option(200, "LR range test: steps in the sweep")
    lr_suggestion: str = _option("steepest", "which range-test suggestion sets max LR: steepest (descent of the "
                                             "smoothed loss; the most robust on the CIFAR-10 sample, see "
                                             "bench/lr_suggestions.py), valley (fast.ai's) or minimum (its LR / 10)")
    # OneCycle schedule, stepped every batch
    pct_start: float | None = _option(None, "fraction of steps spent rising to max LR (default: 5/epochs, at "
                                             "most 0.5)")
    div_factor: float = _option(100.0, "OneCycle: the first LR is max LR / div_factor")
    final_div_factor: float = _option(100.0, "OneCycle: the last LR is the first LR / final_div_factor")
    three_phase: bool = _option(False, "OneCycle: a third phase that anneals below the first LR")
    anneal_strategy: str = _option("linear", "OneCycle's curve between LRs: linear or cos")
    # augmentation (train only), applied per image on whole batches
    jitter_p: float = _option(0.5, "probability of colour jitter per training image")
    contrast: float = _option(0.1, "colour jitter: contrast strength in [0, 1]")
    saturation: float = _option(0.2, "colour jitter: saturation strength in [0, 1]")
    hue: float = _option(0.1, "colour jitter: hue shift in [0, 0.5]")
    grey_p: float = _option(0.2, "probability of turning a training image grey")
    crop_padding: int = _option(4, "pad by this many pixels, then crop 32x32 at random (0: no crop)")
    hflip: bool = _option(True, "mirror half of the training images")
    cutout: int = _option(16, "side of the square cut out of each training image (0: off)")
    # evaluation
    tta_flip: bool = _option(False, "average predictions over each test image and its mirror")
    ema_decay: float = _option(0.0, "keep an exponential moving average of the weights and evaluate it (0: off)")
    # run length shortcuts
    train_subset: int = _option(0, "train on the first N images only (0: all)")
    test_subset: int = _option(0, "evaluate on the first N test images only (0: all)")
    max_steps: int = _option(0, "cap the steps per epoch (0: no cap), for quick runs")
    # machine
    device: str = _option("auto", "auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    amp: bool = _option(True, "bf16 autocast on CUDA; ignored elsewhere")
    channels_last: bool = _option(True, "channels-last memory format, on CUDA only")
    compile: bool = _option(False, "torch.compile the model (CUDA)")
    sync_bn: bool = _option(False, "under torchrun, SyncBatchNorm: statistics over the global batch")
    threads: int = _option(0, "CPU threads for torch (0: torch's default)")
    seed: int = _option(1, "seed for weights, data order and augmentation")
    deterministic: bool = _option(False, "deterministic algorithms (slower; reproducible on one machine)")
    eval_batch_size: int = _option(1024, "batch size for evaluation")
    step_log_every: int = _option(25, "per-step rows are flushed to disk this often (steps)")
    dynamics: bool = _option(True, "record every image's true-class probability, margin and correctness at "
                                   "every epoch (dynamics/ in the run: data maps, likely-mislabelled images)")

    def resolved_pct_start(self) -> float:
        # The recipe peaks after epoch 5; short runs peak half-way instead of at their very end.
        return self.pct_start if self.pct_start is not None else min(5 / self.epochs, 0.5)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The notebook this project replaces: 20 epochs, batch 64, OneCycle from the range test.
    "s11": {},
    # Offline, a couple of minutes on a laptop CPU: bundled digits, a narrow ResNet18.
    "demo": {
        "dataset": "digits",
        "width": 16,
        "epochs": 10,
        "batch_size": 64,
        "lr_finder_iters": 60,
        "hflip": False,  # mirrored digits are different digits
        "cutout": 8,
        "hue": 0.0,
        "saturation": 0.0,
        "name": "demo",
    },
    # Faster and more accurate at the same epochs: big batches, smoothing, EMA, flip TTA.
    "fast": {
        "batch_size": 512,
        "label_smoothing": 0.2,
        "tta_flip": True,
        "ema_decay": 0.99,
        "weight_decay": 5e-4,
        "nesterov": True,
        "cutout": 12,
        "lr_finder_iters": 100,
        "eval_batch_size": 2000,
        # 512 gives 98 steps per CIFAR-10 epoch; on the 5,085-image sample it would give 10, too few to learn.
        "min_steps_per_epoch": 32,
    },
}

FIELD_TYPES = typing.get_type_hints(TrainConfig)
FIELD_NAMES = [f.name for f in fields(TrainConfig)]
FIELD_HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def base_type(annotation: Any) -> type:
    """The type a field's values have, `float` for `float | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def is_optional(name: str) -> bool:
    return type(None) in typing.get_args(FIELD_TYPES[name])


def coerce(name: str, value: Any) -> Any:
    """Check one value against its field's type; ints are accepted for floats."""
    if value is None and is_optional(name):
        return None
    kind = base_type(FIELD_TYPES[name])
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}; `{commands.command('train', '--help')}` lists them all"


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def build_config(overrides: dict[str, Any] | None = None, config_file: str | None = None,
                 environment: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the preset, then `environment` (RUNS_DIR), then the TOML file, then explicit
    overrides (CLI flags)."""
    layers: list[dict[str, Any]] = []
    file_values = read_toml(config_file) if config_file else {}
    overrides = dict(overrides or {})
    preset = overrides.get("preset", file_values.get("preset", "s11"))
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    layers += [PRESETS[preset], environment or {}, file_values, overrides]

    problems: list[str] = []
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in FIELD_TYPES:
                problems.append(unknown_key_message(key))
                continue
            try:
                values[key] = coerce(key, value)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Every range and choice, all reported at once."""
    c = config
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(c.epochs >= 1, f"epochs must be at least 1 (got {c.epochs})")
    need(c.batch_size >= 1, f"batch_size must be at least 1 (got {c.batch_size})")
    need(c.eval_batch_size >= 1, f"eval_batch_size must be at least 1 (got {c.eval_batch_size})")
    need(c.width >= 1, f"width must be at least 1 (got {c.width})")
    need(c.lr is None or c.lr > 0, f"lr must be positive (got {c.lr}); omit it to run the range test")
    need(0 <= c.momentum < 1, f"momentum must be in [0, 1) (got {c.momentum})")
    need(c.weight_decay >= 0, f"weight_decay must be >= 0 (got {c.weight_decay})")
    need(0 <= c.label_smoothing < 1, f"label_smoothing must be in [0, 1) (got {c.label_smoothing})")
    need(0 < c.lr_finder_start < c.lr_finder_end,
         f"lr_finder_start ({c.lr_finder_start}) must be positive and below lr_finder_end ({c.lr_finder_end})")
    need(c.lr_finder_iters >= 10, f"lr_finder_iters must be at least 10 (got {c.lr_finder_iters})")
    need(c.pct_start is None or 0 < c.pct_start < 1, f"pct_start must be in (0, 1) (got {c.pct_start})")
    need(c.div_factor > 0 and c.final_div_factor > 0, "div_factor and final_div_factor must be positive")
    need(c.anneal_strategy in ("linear", "cos"), f"anneal_strategy must be linear or cos (got {c.anneal_strategy!r})")
    need(c.lr_suggestion in ("steepest", "valley", "minimum"),
         f"lr_suggestion must be steepest, valley or minimum (got {c.lr_suggestion!r})")
    for name in ("jitter_p", "grey_p"):
        need(0 <= getattr(c, name) <= 1, f"{name} must be a probability in [0, 1] (got {getattr(c, name)})")
    need(0 <= c.contrast <= 1, f"contrast must be in [0, 1] (got {c.contrast})")
    need(0 <= c.saturation <= 1, f"saturation must be in [0, 1] (got {c.saturation})")
    need(0 <= c.hue <= 0.5, f"hue must be in [0, 0.5] (got {c.hue})")
    need(0 <= c.crop_padding <= 16, f"crop_padding must be in [0, 16] (got {c.crop_padding})")
    need(0 <= c.cutout <= 32, f"cutout must be in [0, 32] (got {c.cutout})")
    need(0 <= c.ema_decay < 1, f"ema_decay must be in [0, 1) (got {c.ema_decay})")
    for name in ("train_subset", "test_subset", "max_steps", "threads", "min_steps_per_epoch"):
        need(getattr(c, name) >= 0, f"{name} must be >= 0 (got {getattr(c, name)}); 0 means no limit")
    need(c.step_log_every >= 1, f"step_log_every must be at least 1 (got {c.step_log_every})")
    need(c.device == "auto" or c.device in ("cpu", "mps", "cuda") or c.device.startswith("cuda:"),
         f"device must be auto, cpu, mps, cuda or cuda:N (got {c.device!r})")
    need(c.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)} (got {c.preset!r})")
    need(len(c.name) <= MAX_NAME_LENGTH and c.name.isprintable(),
         f"name must be at most {MAX_NAME_LENGTH} printable characters, without control characters "
         f"(got {len(c.name)} characters: {c.name[:80]!r})")
    known = c.dataset in ("cifar10", "digits") or (c.dataset.startswith("npz:") and len(c.dataset) > 4)
    need(known, f"unknown dataset {c.dataset!r}; use cifar10, digits or npz:PATH/TO/FILE.npz")
    if problems:
        raise ConfigError("\n".join(problems))


def fit_batch_to_dataset(config: TrainConfig, train_images: int, processes: int = 1) -> tuple[TrainConfig, str]:
    """Halve the batch until an epoch has `min_steps_per_epoch` steps, so a big-batch recipe made for
    50,000 images still learns on a small dataset. Returns the config and a note ('' if unchanged)."""
    def steps(batch: int) -> int:  # epochs keep their last, partial batch
        return -(-train_images // batch)

    target = config.min_steps_per_epoch  # --max-steps caps an epoch; halving past that cap gains nothing
    if config.max_steps:
        target = min(target, config.max_steps)
    batch = config.batch_size
    while (steps(batch) < target
           and batch // 2 >= processes and (batch // 2) % processes == 0):
        batch //= 2
    if batch == config.batch_size:
        return config, ""
    note = (f"batch_size {config.batch_size} -> {batch}: {train_images:,} training images give "
            f"{steps(config.batch_size)} steps per epoch, fewer than min_steps_per_epoch="
            f"{config.min_steps_per_epoch} (--min-steps-per-epoch 0 keeps the batch as set)")
    return dataclasses.replace(config, batch_size=batch), note


def config_from_dict(values: dict[str, Any], source: Path | None = None, problems: Sequence[str] = ()
                     ) -> TrainConfig:
    """Rebuild a saved config (resume). Any bad value is refused, named with its field and the file
    (`source`) it sits in, before anything else is tried: a default standing in for it would only
    fail later, blamed on something else. `problems` are those the run's reader found in the file
    (the values it dropped); unknown keys, from newer versions, are refused too."""
    found = list(problems)
    found += [unknown_key_message(k) for k in values if k not in FIELD_TYPES]
    if not found:
        try:
            config = TrainConfig(**{k: coerce(k, v) for k, v in values.items()})
            validate(config)
            return config
        except ConfigError as exc:
            found = str(exc).splitlines()
    if source is None:
        raise ConfigError("\n".join(found))
    raise ConfigError("\n".join(f"{source}: {problem}; correct that value there, or train a new run; "
                                 "the run was left untouched" for problem in found))
