"""Training dynamics: what every image did at every epoch, recorded as training goes and read back.

Training images are recorded from the training forward pass itself (under augmentation: no extra
pass), test images from the epoch's evaluation dump. Each epoch is one small `.npz` written
atomically before the epoch's row, so a crash leaves whole epochs only and a resume replaces
the epochs after its resume point exactly as it replaces metric rows (docs/run-format.md,
"Training dynamics"). Scores derived from these arrays live in engine/dynamics_scores.py."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.run_layout import DYNAMICS_DIR, DYNAMICS_EPOCH, DYNAMICS_LABELS, dynamics_file
from engine.safe_io import MiB, Unreadable, atomic_save, load_npz

if TYPE_CHECKING:  # torch is imported where a run records; the dashboard reads without it (1.2 s saved)
    import torch

EPOCH_KEYS = ("train_prob", "train_margin", "train_correct", "test_pred", "test_prob")
# test_confidence came after the first recorded runs, which lack it; the final_train_* keys are in
# the last epoch's file only: the final model's verdict on every (unaugmented) training image.
FINAL_TRAIN_KEYS = ("final_train_prob", "final_train_pred", "final_train_confidence")
OPTIONAL_EPOCH_KEYS = ("test_confidence", *FINAL_TRAIN_KEYS)
LABEL_KEYS = ("train_label", "test_label")
EPOCH_CAP = 64 * MiB  # uncompressed; 2,000,000 training images need about 9 MiB
LABELS_CAP = 64 * MiB
MAX_EPOCH_FILES = 1_000_000


def class_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned integer type that holds every class (uint8 up to 256 classes)."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.uint32)


# ---------------------------------------------------------------- recording


class TrainRecorder:
    """Collects, on the device and without a host sync, each training image's true-class
    probability, margin and correctness from the logits the training step computed anyway."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def start_epoch(self) -> None:
        self.parts.clear()

    def add(self, index: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.detach().float()  # detached: no graph is built, as under torch.no_grad
        true = labels[:, None]
        true_logit = logits.gather(1, true)[:, 0]
        other = logits.scatter(1, true, float("-inf")).amax(1)  # the largest logit of another class
        prob = logits.softmax(1).gather(1, true)[:, 0]
        self.parts.append((index, prob, true_logit - other, logits.argmax(1) == labels))

    def epoch_part(self) -> dict[str, np.ndarray]:
        """This process's images of the epoch: `index` (dataset positions) and their values."""
        if not self.parts:
            return {"index": np.zeros(0, np.int64), "prob": np.zeros(0, np.float32),
                    "margin": np.zeros(0, np.float32), "correct": np.zeros(0, bool)}
        import torch

        index, prob, margin, correct = (torch.cat(column).cpu().numpy() for column in zip(*self.parts))
        return {"index": index.astype(np.int64), "prob": prob, "margin": margin, "correct": correct}


def epoch_arrays(train_part: dict[str, np.ndarray], train_size: int, test_dump: dict[str, np.ndarray],
                 final_train: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One epoch's compact arrays from the gathered training part (every process's images; an
    image drawn twice, as torchrun's padding does, keeps its last value) and the test dump.
    A training image the epoch did not draw (--max-steps) gets NaN and counts as wrong.
    `final_train`: at the last epoch, the final model's prediction dump of the training set."""
    prob = np.full(train_size, np.nan, np.float16)
    margin = np.full(train_size, np.nan, np.float16)
    correct = np.zeros(train_size, bool)
    index = train_part["index"]
    prob[index] = train_part["prob"]
    margin[index] = train_part["margin"]
    correct[index] = train_part["correct"]
    arrays = {"train_prob": prob, "train_margin": margin, "train_correct": np.packbits(correct),
              **_dump_arrays("test", test_dump, ("pred", "prob", "confidence"))}
    if final_train is not None:
        arrays.update(_dump_arrays("final_train", final_train, ("prob", "pred", "confidence")))
    return arrays


def _dump_arrays(prefix: str, dump: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A prediction dump's compact form: the predicted class, the given label's probability, the
    predicted class's probability."""
    num_classes = dump["probs"].shape[1]
    values = {"pred": dump["pred"].astype(class_dtype(num_classes)),
              "prob": dump["probs"][np.arange(len(dump["label"])), dump["label"]].astype(np.float16),
              "confidence": dump["confidence"].astype(np.float16)}
    return {f"{prefix}_{key}": values[key] for key in keys}


def label_arrays(train_labels: np.ndarray, test_labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """The given labels the scores are measured against, so a run reads them without its dataset."""
    dtype = class_dtype(num_classes)
    return {"train_label": np.asarray(train_labels).astype(dtype), "test_label": np.asarray(test_labels).astype(dtype)}


def write_epoch(run_dir: Path, epoch: int, arrays: dict[str, np.ndarray]) -> None:
    _save(Path(run_dir) / dynamics_file(epoch), arrays)


def write_labels(run_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    _save(Path(run_dir) / DYNAMICS_LABELS, arrays)


def drop_epochs_after(run_dir: Path, epoch: int) -> None:
    """Remove the epochs past a resume point: the resumed run writes them again."""
    for number, path in epoch_files(run_dir):
        if number > epoch:
            path.unlink(missing_ok=True)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(exist_ok=True)
    atomic_save(path, lambda tmp: np.savez(tmp, **arrays))


# ---------------------------------------------------------------- reading


@dataclass
class Dynamics:
    """A run's recorded epochs, stacked: row e of each (E, N) array is epoch `epochs[e]`.
    A training image not drawn in an epoch holds NaN there (and `train_correct` False)."""

    epochs: np.ndarray  # int64 (E,), increasing; an epoch whose file is missing or damaged is left out
    train_prob: np.ndarray  # float16 (E, N_train): the true-class probability, under augmentation
    train_margin: np.ndarray  # float16 (E, N_train): true-class logit minus the largest other logit
    train_correct: np.ndarray  # bool (E, N_train)
    test_pred: np.ndarray  # uint8 (E, N_test) (wider past 256 classes): the predicted class
    test_prob: np.ndarray  # float16 (E, N_test): the true-class probability
    test_confidence: np.ndarray | None = None  # float16 (E, N_test): the predicted class's; None for older runs
    # The final model's verdict on each unaugmented training image (the planned last epoch's file
    # holds it); None before that epoch is recorded and for older runs.
    final_train_prob: np.ndarray | None = None  # float16 (N_train,): its probability of the given label
    final_train_pred: np.ndarray | None = None  # (N_train,) its predicted class
    final_train_confidence: np.ndarray | None = None  # float16 (N_train,): its predicted class's probability
    train_label: np.ndarray | None = None  # (N_train,) the given labels; None when labels.npz is unusable
    test_label: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)  # "FILE: what is wrong; ignored"


def epoch_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every recorded epoch, in epoch order; [] for a run without dynamics."""
    folder = Path(run_dir) / DYNAMICS_DIR
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m[1]), folder / name) for name in names if (m := DYNAMICS_EPOCH.fullmatch(name))]
    return sorted(found)[:MAX_EPOCH_FILES]


def dynamics_stamp(run_dir: Path) -> tuple:
    """(name, mtime_ns, size) of every dynamics file: a cache of `read_dynamics` keys on it."""
    paths = [path for _, path in epoch_files(run_dir)] + [Path(run_dir) / DYNAMICS_LABELS]
    stamp = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamp.append((path.name, info.st_mtime_ns, info.st_size))
    return tuple(stamp)


def read_dynamics(run_dir: Path) -> Dynamics | None:
    """Every recorded epoch of a run, checked: None for a run without dynamics (older runs, or
    `dynamics = false`). A damaged or mis-shaped epoch file is left out with a problem; never raises."""
    run_dir = Path(run_dir)
    files = epoch_files(run_dir)
    if not files:
        return None
    problems: list[str] = []
    labels = _read_labels(run_dir, problems)
    kept: list[tuple[int, dict[str, np.ndarray]]] = []
    for epoch, path in files:
        name = f"{DYNAMICS_DIR}/{path.name}"
        try:
            arrays = load_npz(path, EPOCH_CAP, EPOCH_KEYS, OPTIONAL_EPOCH_KEYS)
            arrays = _checked_epoch(arrays, kept[0][1] if kept else None, labels)
        except Unreadable as exc:
            problems.append(f"{name}: {exc}; ignored")
            continue
        kept.append((epoch, arrays))
    if not kept:
        empty = np.zeros((0, 0), np.float16)
        return Dynamics(np.zeros(0, np.int64), empty, empty, empty.astype(bool), empty.astype(np.uint8), empty,
                        problems=problems)
    train_size = len(kept[0][1]["train_prob"])

    def stack(key: str) -> np.ndarray:
        return np.stack([arrays[key] for _, arrays in kept])

    correct = np.unpackbits(stack("train_correct"), axis=1, count=train_size).astype(bool)
    confidence = stack("test_confidence") if all("test_confidence" in a for _, a in kept) else None
    last = kept[-1][1]
    final = [last[key] for key in FINAL_TRAIN_KEYS] if all(key in last for key in FINAL_TRAIN_KEYS) else [None] * 3
    return Dynamics(np.array([e for e, _ in kept], np.int64), stack("train_prob"), stack("train_margin"), correct,
                    stack("test_pred"), stack("test_prob"), confidence, *final,
                    labels.get("train_label") if labels else None, labels.get("test_label") if labels else None,
                    problems)


def _read_labels(run_dir: Path, problems: list[str]) -> dict[str, np.ndarray] | None:
    path = run_dir / DYNAMICS_LABELS
    if not path.exists():
        problems.append(f"{DYNAMICS_LABELS}: missing; the scores read without labels")
        return None
    try:
        arrays = load_npz(path, LABELS_CAP, LABEL_KEYS)
    except Unreadable as exc:
        problems.append(f"{DYNAMICS_LABELS}: {exc}; ignored")
        return None
    if any(a.ndim != 1 or a.dtype.kind != "u" for a in arrays.values()):
        problems.append(f"{DYNAMICS_LABELS}: labels must be 1-D unsigned integers; ignored")
        return None
    return arrays


def _checked_epoch(arrays: dict[str, np.ndarray], first: dict[str, np.ndarray] | None,
                   labels: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The epoch's arrays when their dtypes and shapes agree with each other, the first epoch
    kept and the labels; else Unreadable naming what is off."""
    n_train, n_test = arrays["train_prob"].shape, arrays["test_prob"].shape
    expected = {"train_prob": (np.float16, n_train), "train_margin": (np.float16, n_train),
                "train_correct": (np.uint8, (-(-n_train[0] // 8),) if len(n_train) == 1 else None),
                "test_prob": (np.float16, n_test), "test_pred": (None, n_test)}
    if "test_confidence" in arrays:
        expected["test_confidence"] = (np.float16, n_test)
    if any(key in arrays for key in FINAL_TRAIN_KEYS):
        if not all(key in arrays for key in FINAL_TRAIN_KEYS):
            raise Unreadable(f"it holds some of {', '.join(FINAL_TRAIN_KEYS)} but not all")
        expected.update(final_train_prob=(np.float16, n_train), final_train_confidence=(np.float16, n_train),
                        final_train_pred=(None, n_train))
    for key, (dtype, shape) in expected.items():
        a = arrays[key]
        if a.ndim != 1 or (shape is not None and a.shape != shape) or (dtype is not None and a.dtype != dtype):
            raise Unreadable(f"array {key!r} is {a.dtype} {a.shape}, which does not fit the others")
    for key in ("test_pred", "final_train_pred"):
        if key in arrays and arrays[key].dtype.kind != "u":
            raise Unreadable(f"array {key!r} is {arrays[key].dtype}, not unsigned integers")
    if first is not None and any(arrays[k].shape != first[k].shape or arrays[k].dtype != first[k].dtype
                                 for k in EPOCH_KEYS):
        raise Unreadable("its arrays' shapes differ from the first recorded epoch's")
    if labels is not None and (len(labels["train_label"]) != n_train[0] or len(labels["test_label"]) != n_test[0]):
        raise Unreadable("its image counts differ from the labels'")
    return arrays
