"""Cached access to a run's training dynamics (engine/dynamics.py) and to the training images they
speak of; dashboard/data.py reads everything else. Caches are bounded and keyed on the dynamics
files' stamps, so a live run's new epoch is read at the next rerun and nothing else is re-read.

An epoch's test predictions read as a prediction dump without `probs` (`epoch_dump`), so the
confusion matrix and the gallery show any recorded epoch through the code that shows final and best."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import data, dynamics_views, metrics
from engine import dynamics as engine_dynamics
from engine import dynamics_scores
from engine.run_layout import DYNAMICS_LABELS

EPOCH_TAG = metrics.EPOCH_TAG


def epoch_tag(epoch: int) -> str:
    return f"{EPOCH_TAG}{int(epoch)}"


def tag_epoch(tag: str) -> int | None:
    """7 for "epoch-7"; None for a dump tag ("final", "best") or anything malformed."""
    number = tag[len(EPOCH_TAG):] if tag.startswith(EPOCH_TAG) else ""
    return int(number) if number.isdigit() else None


def source_label(tag: str) -> str:
    """How a page names a prediction source: "final model", "best epoch", "epoch 7"."""
    epoch = tag_epoch(tag)
    return f"epoch {epoch}" if epoch is not None else data.TAG_LABELS.get(tag, tag)


@st.cache_resource(max_entries=8, show_spinner=False)
def _dynamics(path: str, stamp: tuple) -> engine_dynamics.Dynamics | None:
    return engine_dynamics.read_dynamics(Path(path))


def dynamics(run_id: str) -> engine_dynamics.Dynamics | None:
    """The run's recorded epochs stacked (shared read-only by every session), or None for a run
    without dynamics."""
    path = data.run_path(run_id)
    if path is None:
        return None
    return _dynamics(str(path), engine_dynamics.dynamics_stamp(path))


def recorded_epochs(run_id: str) -> list[int]:
    """The epochs whose test predictions a page can offer, from the files' names alone (a page
    that lists them reads no array; a damaged epoch says so when it is chosen)."""
    path = data.run_path(run_id)
    if path is None or not (path / DYNAMICS_LABELS).is_file():
        return []
    return [epoch for epoch, _ in engine_dynamics.epoch_files(path)]


@st.cache_resource(max_entries=8, show_spinner=False)
def _scores(path: str, stamp: tuple) -> dynamics_scores.ImageScores | None:
    found = _dynamics(path, stamp)
    return None if found is None or not len(found.epochs) else dynamics_scores.image_scores(found)


def scores(run_id: str) -> dynamics_scores.ImageScores | None:
    """Every training image's confidence, variability, correctness, AUM and forgetting count."""
    path = data.run_path(run_id)
    if path is None:
        return None
    return _scores(str(path), engine_dynamics.dynamics_stamp(path))


def epoch_dump(run_id: str, tag: str) -> dict[str, np.ndarray] | None:
    """The test predictions of the epoch `tag` names, as a dump: `index`, `label`, `pred`,
    `confidence` (NaN in runs recorded before it was), `loss` (the cross-entropy, from the
    true-class probability, as a dump's). No `probs`: only two probabilities per image are recorded."""
    found, epoch = dynamics(run_id), tag_epoch(tag)
    if found is None or found.test_label is None or epoch not in found.epochs:
        return None
    row = int(np.flatnonzero(found.epochs == epoch)[0])
    true_prob = found.test_prob[row].astype(np.float32)
    confidence = (found.test_confidence[row].astype(np.float32) if found.test_confidence is not None
                  else np.full(len(true_prob), np.nan, np.float32))
    with np.errstate(divide="ignore"):
        loss = -np.log(np.clip(true_prob, 0, 1))
    return {"index": np.arange(len(true_prob), dtype=np.int64), "label": found.test_label.astype(np.int64),
            "pred": found.test_pred[row].astype(np.int64), "confidence": confidence,
            "loss": np.minimum(loss, np.float32(1e4))}


@st.cache_data(max_entries=8, show_spinner=False)
def _mislabelled_csv(path: str, stamp: tuple, class_names: tuple[str, ...]) -> bytes:
    found, scores = _dynamics(path, stamp), _scores(path, stamp)
    if scores is None:
        return b""
    table = dynamics_views.mislabelled_table(scores, found.train_label, class_names, found.final_train_pred)
    return table.to_csv(index=False, float_format="%.4g").encode()


def mislabelled_csv(run_id: str) -> bytes:
    """The ranked likely-mislabelled list as CSV bytes (built once per recorded state of the run)."""
    path, run = data.run_path(run_id), data.load_run(run_id)
    if path is None or run is None:
        return b""
    return _mislabelled_csv(str(path), engine_dynamics.dynamics_stamp(path), tuple(run.class_names or ()))


# ---------------------------------------------------------------- training images


@st.cache_resource(max_entries=2, show_spinner="Loading the run's training images…")
def _train_set(path: str, stamp: tuple) -> tuple[np.ndarray | None, str]:
    from engine.datasets import DatasetError
    from engine.run_dataset import load_run_dataset

    run = data.runs.load_run(Path(path))
    try:
        return load_run_dataset(run.config, run.dataset).x_train, ""
    except DatasetError as exc:
        return None, str(exc)
    except (OSError, ValueError) as exc:  # a dataset file damaged since: say so, show the numbers anyway
        return None, f"the run's dataset cannot be read ({exc.__class__.__name__}: {exc})"


def train_images(run_id: str, indices: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """Raw uint8 training images by dataset index, or None and why they cannot be shown."""
    path = data.run_path(run_id)
    if path is None:
        return None, "unknown run"
    images, why = _train_set(str(path), data._stamps(path, ("config", "dataset")))
    if images is None:
        return None, why
    if indices and (max(indices) >= len(images) or min(indices) < 0):
        return None, "the recorded dynamics hold more training images than the run's dataset"
    return images[list(indices)], ""


def train_pngs(run_id: str, indices: tuple[int, ...], size: int = data.IMAGE_PX) -> tuple[list[bytes] | None, str]:
    images, why = train_images(run_id, indices)
    return (None, why) if images is None else ([data.to_png(image, size) for image in images], "")


@st.cache_data(max_entries=64, show_spinner=False)
def _beliefs(run_id: str, stamp: tuple, indices: tuple[int, ...]) -> np.ndarray | None:
    from engine.checkpoint import CheckpointError

    images, _ = train_images(run_id, indices)
    try:
        store = data.cam_store(run_id, "final") if images is not None else None
    except CheckpointError:
        return None
    return None if store is None else store.predict(images)


def final_model_beliefs(run_id: str, indices: tuple[int, ...]) -> np.ndarray | None:
    """Class probabilities the run's final checkpoint gives these training images (unaugmented,
    flip TTA when the run evaluates with it): what the model believes a suspect image shows.
    None when the run has no readable final checkpoint or the images cannot be loaded."""
    path = data.run_path(run_id)
    if path is None:
        return None
    return _beliefs(run_id, data._stamps(path, ("checkpoint/final", "config", "dataset")),
                    tuple(int(i) for i in indices))


def final_verdicts(run_id: str, indices: tuple[int, ...]) -> list[tuple[int, float]] | None:
    """(predicted class, its probability) of the final model for these training images: as the
    run recorded them at its last epoch, else computed from its final checkpoint (runs recorded
    before that, or a last epoch not recorded yet). None when neither is available."""
    found = dynamics(run_id)
    if found is not None and found.final_train_pred is not None:
        return [(int(found.final_train_pred[i]), float(found.final_train_confidence[i])) for i in indices]
    beliefs = final_model_beliefs(run_id, indices)
    if beliefs is None:
        return None
    return [(int(np.argmax(row)), float(np.max(row))) for row in beliefs]


def predictions_from(run_id: str, tag: str) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """The test predictions of a source: a dump ("final", "best") or a recorded epoch ("epoch-7"),
    and the problems met reading it."""
    if tag_epoch(tag) is None:
        return data.predictions(run_id, tag)
    dump = epoch_dump(run_id, tag)
    return dump, [] if dump is not None else [f"{source_label(tag)} has no recorded test predictions"]


def prediction_sources(run) -> list[str]:
    """Every source a run can show: its dumps, then each recorded epoch."""
    return list(run.prediction_tags()) + [epoch_tag(e) for e in recorded_epochs(run.id)]
