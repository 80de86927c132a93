"""Pure metrics and selections over prediction dumps, epochs and configs.

No Streamlit here: pages draw what these functions return, and tests check them directly.
A prediction dump is the dict of arrays `engine.runs.Run.predictions` returns
(`index`, `label`, `pred`, `confidence`, `probs`, `loss`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

Dump = Mapping[str, np.ndarray]

SORTS = {
    "top losses": ("loss", True),
    "confidence, high first": ("confidence", True),
    "confidence, low first": ("confidence", False),
    "test index": ("index", False),
}


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    flat = np.asarray(label, np.int64) * num_classes + np.asarray(pred, np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row as fractions of its true class; empty rows stay 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)


def per_class_accuracy(label: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall per true class; NaN for a class with no test images."""
    matrix = confusion_matrix(label, pred, num_classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def misclassified(dump: Dump, true_classes: Iterable[int] = (), pred_classes: Iterable[int] = (),
                  confidence: tuple[float, float] = (0.0, 1.0), sort: str = "top losses") -> np.ndarray:
    """Row positions in `dump` of the wrong predictions that pass the filters, sorted.

    Empty class filters mean "any class". Ties keep test-index order (stable sort)."""
    label, pred, conf = dump["label"], dump["pred"], dump["confidence"]
    keep = label != pred
    true_classes, pred_classes = list(true_classes), list(pred_classes)
    if true_classes:
        keep &= np.isin(label, true_classes)
    if pred_classes:
        keep &= np.isin(pred, pred_classes)
    low, high = confidence
    keep &= (conf >= low) & (conf <= high)
    rows = np.flatnonzero(keep)
    key, descending = SORTS[sort]
    values = dump[key][rows]
    order = np.argsort(-values if descending else values, kind="stable")
    return rows[order]


def prediction_diff(dump_a: Dump, dump_b: Dump) -> tuple[np.ndarray, np.ndarray]:
    """Test indices that A got right and B got wrong, and the reverse.

    Matched on `index`, so two dumps of the same test set in any order compare correctly."""
    common, rows_a, rows_b = np.intersect1d(dump_a["index"], dump_b["index"], return_indices=True)
    right_a = dump_a["pred"][rows_a] == dump_a["label"][rows_a]
    right_b = dump_b["pred"][rows_b] == dump_b["label"][rows_b]
    return common[right_a & ~right_b], common[right_b & ~right_a]


def rows_for_indices(dump: Dump, indices: np.ndarray) -> np.ndarray:
    """Row positions in `dump` of the given test indices (which must all be present)."""
    order = np.argsort(dump["index"])
    return order[np.searchsorted(dump["index"], indices, sorter=order)]


def first_epoch_reaching(epochs: Sequence[Mapping[str, Any]], threshold: float = 0.85,
                         key: str = "test_acc") -> int | None:
    """The first epoch whose test accuracy reaches `threshold`, or None."""
    for row in epochs:
        value = row.get(key)
        if value is not None and value >= threshold:
            return int(row.get("epoch", 0))
    return None


def key_figures(runs_by_label: Mapping[str, Any]) -> pd.DataFrame:
    """One compact row per run (label -> engine.runs.Run): best and final accuracy (%), the best
    epoch, the first epoch at 85%, epochs done and the duration."""
    rows = {}
    for label, run in runs_by_label.items():
        best, best_at = run.best_epoch()
        final = run.epochs[-1].get("test_acc") if run.epochs else None
        rows[label] = {"best test acc": None if best is None else best * 100, "best epoch": best_at,
                       "final test acc": None if final is None else final * 100,
                       "first epoch at 85%": first_epoch_reaching(run.epochs) or "not reached",
                       "epochs": f"{len(run.epochs)} / {run.epochs_planned or '?'}",
                       "duration (s)": run.duration_seconds()}
    return pd.DataFrame.from_dict(rows, orient="index")


def steps_per_epoch(run: Any) -> int | None:
    """Optimizer steps in one epoch: from the first finished epoch, else from the config and the
    dataset (ceil(train images / batch), capped by max_steps), else None."""
    if run.epochs and run.epochs[0].get("step"):
        return int(run.epochs[0]["step"])
    config, dataset = run.config or {}, run.dataset or {}
    images, batch = dataset.get("train_size"), config.get("batch_size")
    if not images or not batch:
        return None
    steps = -(-int(images) // int(batch))
    return min(steps, int(config["max_steps"])) if config.get("max_steps") else steps


def config_diff(configs: Mapping[str, Mapping[str, Any] | None],
                ignore: Iterable[str] = ("runs_dir",)) -> dict[str, dict[str, Any]]:
    """{field: {run: value}} for the fields whose values differ between runs (a missing
    field counts as a difference)."""
    ignore = set(ignore)
    fields = sorted({k for c in configs.values() for k in (c or {})} - ignore)
    diff = {}
    for name in fields:
        values = {run: (c or {}).get(name, "—") for run, c in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            diff[name] = values
    return diff
