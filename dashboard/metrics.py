"""Pure metrics and selections over prediction dumps, epochs and configs.

No Streamlit here: pages draw what these functions return, and tests check them directly.
A prediction dump is the dict of arrays `engine.runs.Run.predictions` returns
(`index`, `label`, `pred`, `confidence`, `probs`, `loss`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

Dump = Mapping[str, np.ndarray]

DASH = "—"  # what a page shows where a run holds no value

SORTS = {
    "top losses": ("loss", True),
    "confidence, high first": ("confidence", True),
    "confidence, low first": ("confidence", False),
    "test index": ("index", False),
}


def finite(value: Any) -> float | None:
    """The value as a float when it is a finite number, else None: a run's null (the strict-JSON
    NaN), a NaN or infinity, text, or an absent value all read as "no value"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number_text(value: Any, spec: str = "") -> str:
    """A number formatted with `spec`, or a dash where there is no finite value (never "nan",
    "None" or a made-up 0)."""
    number = finite(value)
    return DASH if number is None else format(number, spec)


def percent(fraction: Any) -> str:
    """A probability or confidence as whole percent: one spelling on every page, so two pages
    showing one recorded prediction show the same figure."""
    return number_text(fraction, ".0%")


def recorded_predictions(dump: Dump | None, indices: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The run's recorded prediction of each test index the dump holds: true class, predicted
    class, confidence, loss, right or wrong. Every page takes an image's prediction from here (or
    the dump's rows), so the gallery, Grad-CAM and Compare agree on every figure."""
    if dump is None or not len(indices):
        return {}
    wanted = np.asarray(list(indices), np.int64)
    present = wanted[np.isin(wanted, dump["index"])]
    rows = rows_for_indices(dump, present)
    return {int(i): {"label": int(dump["label"][r]), "pred": int(dump["pred"][r]),
                     "confidence": float(dump["confidence"][r]), "loss": float(dump["loss"][r]),
                     "right": bool(dump["label"][r] == dump["pred"][r])}
            for i, r in zip(present, rows)}


def live_progress(epochs: Sequence[Mapping[str, Any]], steps_done: int | None, steps_per_epoch: int | None,
                  epochs_planned: int | None) -> tuple[float, str]:
    """(fraction done, text) for a run's progress bar: by optimizer steps when the plan in steps is
    known, else by epochs; unknown totals read "?" and count as no progress, never as done."""
    done_epochs = len(epochs)
    if steps_done is None:
        last_step = finite(epochs[-1].get("step")) if epochs else None
        steps_done = int(last_step) if last_step is not None else 0
    total = steps_per_epoch * epochs_planned if steps_per_epoch and epochs_planned else None
    if total:
        fraction = min(steps_done / total, 1.0)
    else:
        fraction = min(done_epochs / epochs_planned, 1.0) if epochs_planned else 0.0
    return fraction, (f"step {steps_done} of {total or '?'} · epoch {done_epochs} of {epochs_planned or '?'} done "
                      f"({fraction:.0%})")


# The gallery's filters in its URL: parameter names and values a person can read and edit.
SORT_PARAMS = {"top losses": "loss", "confidence, high first": "confidence-high",
               "confidence, low first": "confidence-low", "test index": "index"}
EPOCH_TAG = "epoch-"  # a prediction source "epoch-7": the test predictions recorded at the end of epoch 7
GALLERY_PARAMS = ("true", "pred", "conf", "sort", "per_page", "dump")
PER_PAGE = (12, 24, 48)
DEFAULT_PER_PAGE = 24


def gallery_query(true: Sequence[int], pred: Sequence[int], confidence: tuple[float, float], sort: str,
                  per_page: int, tag: str, names: Sequence[str], default_tag: str) -> dict[str, str | list[str]]:
    """The gallery's filters as URL parameters, only those that differ from the defaults (classes
    by name, so a link reads `true=cat&pred=dog&conf=0.2-0.5`)."""
    query: dict[str, str | list[str]] = {}
    if true:
        query["true"] = [names[c] for c in true]
    if pred:
        query["pred"] = [names[c] for c in pred]
    low, high = confidence
    if (low, high) != (0.0, 1.0):
        query["conf"] = f"{low:g}-{high:g}"
    if sort != next(iter(SORT_PARAMS)):
        query["sort"] = SORT_PARAMS[sort]
    if per_page != DEFAULT_PER_PAGE:
        query["per_page"] = str(per_page)
    if tag != default_tag:
        query["dump"] = tag
    return query


def gallery_filters(query: Mapping[str, Sequence[str]], names: Sequence[str],
                    tags: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The gallery's filters read back from URL parameters ({name: [values]}), and one line per
    parameter that cannot be used (a class this run does not have, a malformed range)."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    for key in ("true", "pred"):
        if key in query:
            wanted = list(query[key])
            found[key] = [names.index(name) for name in wanted if name in names]
            problems += [f"`{key}={name}` names no class of this run" for name in wanted if name not in names]
    if "conf" in query:
        text = query["conf"][-1]
        try:
            low, high = (float(part) for part in text.split("-"))
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError
            found["conf"] = (low, high)
        except ValueError:
            problems.append(f"`conf={text}` is not a range like 0.2-0.5 within 0-1")
    sorts = {param: label for label, param in SORT_PARAMS.items()}
    if "sort" in query:
        if query["sort"][-1] in sorts:
            found["sort"] = sorts[query["sort"][-1]]
        else:
            problems.append(f"`sort={query['sort'][-1]}` is not one of {', '.join(sorts)}")
    if "per_page" in query:
        if query["per_page"][-1] in {str(n) for n in PER_PAGE}:
            found["per_page"] = int(query["per_page"][-1])
        else:
            problems.append(f"`per_page={query['per_page'][-1]}` is not one of {', '.join(map(str, PER_PAGE))}")
    if "dump" in query:
        if query["dump"][-1] in tags:
            found["dump"] = query["dump"][-1]
        else:
            dumps = [t for t in tags if not t.startswith(EPOCH_TAG)]
            epochs = "" if len(dumps) == len(tags) else f", and epoch-N for {len(tags) - len(dumps)} recorded epochs"
            have = " and ".join(dumps) or "no"
            problems.append(f"`dump={query['dump'][-1]}`: this run has {have} predictions{epochs}")
    return found, problems


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
    if (low, high) != (0.0, 1.0):  # an unrecorded confidence (NaN) passes only the whole range
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
        value = finite(row.get(key))
        if value is not None and value >= threshold:
            return int(row.get("epoch", 0))
    return None


def key_figures(runs_by_label: Mapping[str, Any]) -> pd.DataFrame:
    """One compact row per run (label -> engine.runs.Run): best and final accuracy (%), the best
    epoch, the first epoch at 85%, epochs done and the duration."""
    rows = {}
    for label, run in runs_by_label.items():
        best, best_at = run.best_epoch()
        final = finite(run.epochs[-1].get("test_acc")) if run.epochs else None
        rows[label] = {"best test acc": None if best is None else best * 100, "best epoch": best_at,
                       "final test acc": None if final is None else final * 100,
                       "first epoch at 85%": first_epoch_reaching(run.epochs) or "not reached",
                       "epochs": f"{len(run.epochs)} / {run.epochs_planned or '?'}",
                       "duration (s)": run.duration_seconds()}
    return pd.DataFrame.from_dict(rows, orient="index")


def steps_per_epoch(run: Any) -> int | None:
    """Optimizer steps in one epoch: the training plan run.json records (engine/training_plan.py),
    else, for runs older than it, from the first finished epoch, else from the config and the
    dataset (ceil(train images / batch), capped by max_steps; one process assumed), else None."""
    plan = run.meta.get("plan")
    if plan:
        return plan["steps_per_epoch"]
    first = finite(run.epochs[0].get("step")) if run.epochs else None
    if first:
        return int(first)
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
