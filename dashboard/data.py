"""Cached access to the runs folder: the only dashboard module that reads runs, always through
`engine.runs`. Every cache is bounded and keyed on the run's `run_stamp` (each file's mtime and
size), so a rerun re-reads only what changed, and a live run is re-read as it grows."""

from __future__ import annotations

import io
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from dashboard import metrics
from engine import runs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_PX = 128


def runs_root() -> Path:
    """`-- --runs-dir PATH` after `streamlit run dashboard/app.py`, else $RUNS_DIR, else runs/."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--runs-dir" and i + 1 < len(args):
            return Path(args[i + 1]).expanduser().resolve()
        if arg.startswith("--runs-dir="):
            return Path(arg.split("=", 1)[1]).expanduser().resolve()
    env = os.environ.get("RUNS_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "runs"


def run_path(run_id: str) -> Path | None:
    """The folder of a run id (ids also arrive from the URL: anything outside the root is refused)."""
    try:
        return runs.resolve_run_dir(runs_root(), run_id)
    except runs.RunFormatError:
        return None


def _stamp(run_id: str) -> tuple[str, tuple] | None:
    path = run_path(run_id)
    return None if path is None else (str(path), runs.run_stamp(path))


# ---------------------------------------------------------------- the runs table


@st.cache_data(max_entries=1000, show_spinner=False)
def _summary(path: str, stamp: tuple) -> dict:
    run = runs.load_run(Path(path))
    row = run.summary()
    best_acc, best_epoch = metrics.best_epoch(run.epochs)
    row.update(best_test_acc=best_acc, best_epoch=best_epoch,
               duration_s=metrics.duration_seconds(run.meta, run.epochs),
               fingerprint=(run.dataset or {}).get("fingerprint"),
               warnings="; ".join(run.warnings))
    return row


def runs_table() -> pd.DataFrame:
    """One row per run folder, newest first; damaged runs included, their problems in `warnings`."""
    rows = [_summary(str(path), runs.run_stamp(path)) for path in runs.run_dirs(runs_root())]
    columns = ["id", "name", "status", "error", "dataset", "epochs_done", "epochs_planned", "best_test_acc",
               "best_epoch", "final_test_acc", "duration_s", "device", "created", "fingerprint", "warnings"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- one run


@st.cache_data(max_entries=200, show_spinner=False)
def _load(path: str, stamp: tuple) -> runs.Run:
    return runs.load_run(Path(path))


def load_run(run_id: str) -> runs.Run | None:
    """The run's small files (meta, config, dataset, epochs, ...), or None for an unknown id."""
    key = _stamp(run_id)
    return None if key is None else _load(*key)


@st.cache_data(max_entries=100, show_spinner=False)
def _steps(path: str, stamp: tuple) -> pd.DataFrame:
    run = runs.load_run(Path(path))
    table = pd.DataFrame(run.steps(), columns=["step", "epoch", "loss", "lr"])
    table["epoch_position"] = metrics.fractional_epochs(table.to_dict("records"), run.epochs)
    return table


def steps(run_id: str) -> pd.DataFrame:
    key = _stamp(run_id)
    return pd.DataFrame(columns=["step", "epoch", "loss", "lr", "epoch_position"]) if key is None else _steps(*key)


def epochs(run: runs.Run) -> pd.DataFrame:
    return pd.DataFrame(run.epochs, columns=["epoch", "step", "lr_start", "lr_end", "train_loss", "train_acc",
                                             "test_loss", "test_acc", "seconds", "train_seconds", "images_per_s"])


@st.cache_data(max_entries=64, show_spinner=False)
def _predictions(path: str, stamp: tuple, tag: str) -> tuple[dict | None, list[str]]:
    run = runs.load_run(Path(path))
    dump = run.predictions(tag)
    return dump, run.warnings


def predictions(run_id: str, tag: str = "final") -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """A prediction dump and the problems met reading it (a damaged dump is None plus a warning)."""
    key = _stamp(run_id)
    return (None, [f"no run {run_id!r}"]) if key is None else _predictions(*key, tag)


@st.cache_data(max_entries=32, show_spinner=False)
def _train_samples(path: str, stamp: tuple) -> dict | None:
    return runs.load_run(Path(path)).train_samples()


def train_samples(run_id: str) -> dict[str, np.ndarray] | None:
    key = _stamp(run_id)
    return None if key is None else _train_samples(*key)


# ---------------------------------------------------------------- images


def to_png(image: np.ndarray, size: int = IMAGE_PX) -> bytes:
    """A 32x32 uint8 image enlarged with nearest neighbour (crisp pixels), as PNG bytes."""
    factor = max(1, size // image.shape[0])
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(big.squeeze()).save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(max_entries=256, show_spinner=False)
def _test_images(path: str, stamp: tuple, indices: tuple[int, ...]) -> np.ndarray | None:
    images = runs.load_run(Path(path)).test_images()
    if images is None or (indices and max(indices) >= len(images)):
        return None
    return np.asarray(images[list(indices)])


def test_images(run_id: str, indices: tuple[int, ...]) -> np.ndarray | None:
    """Raw uint8 test images (k, 32, 32, 3) by test index, or None when the run has none."""
    key = _stamp(run_id)
    return None if key is None else _test_images(*key, tuple(int(i) for i in indices))


@st.cache_data(max_entries=256, show_spinner=False)
def _test_pngs(path: str, stamp: tuple, indices: tuple[int, ...], size: int) -> list[bytes] | None:
    images = _test_images(path, stamp, indices)
    return None if images is None else [to_png(image, size) for image in images]


def test_pngs(run_id: str, indices: tuple[int, ...], size: int = IMAGE_PX) -> list[bytes] | None:
    """One page of test images, enlarged and encoded once, then served from the cache."""
    key = _stamp(run_id)
    return None if key is None else _test_pngs(*key, tuple(int(i) for i in indices), size)


# ---------------------------------------------------------------- models and Grad-CAM


class CamStore:
    """A run checkpoint's model plus its computed maps, keyed (image, method, layer, class).

    One per (run, checkpoint) in st.cache_resource, shared by every session: the lock keeps two
    sessions from putting Grad-CAM hooks on the model at once."""

    def __init__(self, model, mean: list[float], std: list[float], max_maps: int = 2048):
        self.model, self.mean, self.std = model, mean, std
        self.lock = threading.Lock()
        self.maps: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.max_maps = max_maps

    def cams(self, images: np.ndarray, indices: list[int], method: str, layer: str,
             targets: list[int]) -> np.ndarray:
        from dashboard.gradcam import compute_cams

        keys = [(i, method, layer, t) for i, t in zip(indices, targets)]
        with self.lock:
            missing = [n for n, key in enumerate(keys) if key not in self.maps]
            if missing:
                computed = compute_cams(self.model, images[missing], self.mean, self.std, method, layer,
                                        [targets[n] for n in missing])
                for n, cam in zip(missing, computed):
                    self.maps[keys[n]] = cam
            for key in keys:
                self.maps.move_to_end(key)
            while len(self.maps) > self.max_maps:
                self.maps.popitem(last=False)
            return np.stack([self.maps[key] for key in keys])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities from this checkpoint (the gallery's dump may be another epoch's)."""
        from dashboard.gradcam import predict

        with self.lock:
            return predict(self.model, images, self.mean, self.std)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _cam_store(path: str, checkpoint_stamp: tuple, tag: str) -> CamStore:
    from dashboard.gradcam import load_model

    run = runs.load_run(Path(path))
    model = load_model(run.checkpoint_path(tag), len(run.class_names), int(run.config["width"]))
    return CamStore(model, list(run.dataset["mean"]), list(run.dataset["std"]))


def cam_store(run_id: str, tag: str) -> CamStore | None:
    """The model of a run's checkpoint, loaded once; None when the run has no such checkpoint."""
    path = run_path(run_id)
    if path is None:
        return None
    run = load_run(run_id)
    checkpoint = run.checkpoint_path(tag) if run is not None else None
    if checkpoint is None or not run.config or not run.dataset:
        return None
    return _cam_store(str(path), runs.file_stamp(checkpoint), tag)
