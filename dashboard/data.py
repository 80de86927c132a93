"""Cached access to the runs folder: the only dashboard module that reads runs, always through
`engine.runs`. Every cache is bounded and keyed on the stamps (mtime, size) of the files it
reads (`runs.part_stamp`), so a rerun re-reads only the file that changed: a live run's
steps.jsonl growing leaves the cached dumps, test images and samples alone. The runs table, the
labels and the search read the runs folder's index (engine/run_index.py, one per folder, kept across
reruns), never every run's files."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dashboard import metrics, run_search
from engine import run_curation, run_query, runs
from engine.run_index import RunIndex
from engine.run_index import run_labels as index_run_labels

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_PX = 128
TAG_LABELS = runs.TAG_LABELS


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


SMALL_PARTS = ("run", "config", "environment", "dataset", "model_summary", "lr_finder", "epochs",
               "test_images", *(f"predictions/{tag}" for tag in runs.PREDICTION_TAGS))


def _stamps(path: Path, roles) -> tuple:
    return tuple(runs.part_stamp(path, role) for role in roles)


# ---------------------------------------------------------------- the runs table
# One index per runs folder (engine/run_index.py), shared by every session and kept across reruns:
# a rerun looks at the folder listing and the running runs only, and the table, the labels and
# the search text are rebuilt only when the index's generation moved.


class RunsView:
    """An index over one runs folder plus what the pages build from its rows, per generation."""

    MEMO_ENTRIES = 32

    def __init__(self, root: Path):
        self.index = RunIndex(root)
        self.lock = threading.Lock()
        self._built: dict[str, tuple[int, object]] = {}
        self._memo: OrderedDict[tuple, object] = OrderedDict()

    def rows(self, refresh: bool = False) -> list[dict]:
        if refresh or not self.index.generation:
            return self.index.refresh()
        return self.index.rows

    def derived(self, name: str, build) -> object:
        """`build(rows)`, built once per generation of the index."""
        with self.lock:
            generation = self.index.generation
            found = self._built.get(name)
            if found is None or found[0] != generation:
                found = (generation, build(self.index.rows))
                self._built[name] = found
            return found[1]

    def memo(self, key: tuple, build) -> object:
        """`build()` for `key` in this generation of the index, kept for the last MEMO_ENTRIES keys:
        every session asking for the same filters shares one answer."""
        key = (self.index.generation, *key)
        with self.lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        made = build()
        with self.lock:
            self._memo[key] = made
            while len(self._memo) > self.MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return made


@st.cache_resource(max_entries=16, show_spinner=False)
def _view(root: str, archived: bool) -> RunsView:
    return RunsView(runs.archive_dir(Path(root)) if archived else Path(root))


def runs_view(archived: bool = False) -> RunsView:
    """The index of the runs folder (or of its archive), made once per process."""
    return _view(str(runs_root()), archived)


def refresh_runs(archived: bool = False) -> list[dict]:
    """Bring the index up to date: the folder listing, one stat per run folder, the running runs.
    Called once per script run (widgets.run_selection) and after every change made here."""
    return runs_view(archived).rows(refresh=True)


def _in_fragment_rerun() -> bool:
    """A fragment rerunning alone (the Live page's timer) skips the sidebar, which refreshes."""
    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def run_rows(archived: bool = False) -> list[dict]:
    """The runs' summaries (engine/run_summary.py), newest first, as of this script run's refresh."""
    return runs_view(archived).rows(refresh=_in_fragment_rerun())


TABLE_COLUMNS = ["id", "name", "status", "error", "dataset", "epochs_done", "epochs_planned", "best_test_acc",
                 "best_epoch", "final_test_acc", "test_acc_curve", "duration_s", "device", "created", "fingerprint",
                 "tags", "note", "sweep", "damaged", "warnings"]
NUMBER_COLUMNS = ["best_test_acc", "final_test_acc", "duration_s"]


def numbers(table: pd.DataFrame, columns) -> pd.DataFrame:
    """The columns as floats, every value that is no finite number (null, NaN, infinity, absent)
    as NaN: a column of nothing but nulls would otherwise hold Python None, which breaks arithmetic
    and charts."""
    for column in columns:
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float).replace(
                [np.inf, -np.inf], np.nan)
    return table


def rows_table(rows: list[dict]) -> pd.DataFrame:
    """Summaries as a table (TABLE_COLUMNS): accuracies as fractions, the curve in percent."""
    columns = {
        "id": [r["id"] for r in rows], "name": [r["name"] for r in rows], "status": [r["status"] for r in rows],
        "error": [r["error"] for r in rows], "dataset": [r["dataset"] for r in rows],
        "epochs_done": [r["epochs_done"] for r in rows], "epochs_planned": [r["epochs_planned"] for r in rows],
        "best_test_acc": [r["best_test_acc"] for r in rows], "best_epoch": [r["best_epoch"] for r in rows],
        "final_test_acc": [r["final_test_acc"] for r in rows],
        "test_acc_curve": [[None if v is None else round(100 * v, 2) for v in r["test_acc_curve"] or ()]
                           for r in rows],
        "duration_s": [r["duration_seconds"] for r in rows], "device": [r["device"] for r in rows],
        "created": [r["created"] for r in rows], "fingerprint": [r["fingerprint"] for r in rows],
        "tags": [list(r["tags"] or ()) for r in rows], "note": [r["note"] or "" for r in rows],
        "sweep": [r["sweep"] for r in rows], "damaged": [", ".join(r["damaged"] or ()) for r in rows],
        "warnings": ["; ".join(r["warnings"] or ()) for r in rows],
    }
    return numbers(pd.DataFrame(columns, columns=TABLE_COLUMNS), NUMBER_COLUMNS)


def runs_table(archived: bool = False) -> pd.DataFrame:
    """One row per run folder, newest first (row i is `run_rows()[i]`); damaged runs included,
    their problems in `warnings`. Built once per change of the runs folder; treat it as read-only."""
    view = runs_view(archived)
    view.rows(refresh=_in_fragment_rerun())
    return view.derived("table", rows_table)


def md(text: str) -> str:
    """Text from a run (a name, an error) as plain text inside Markdown: a shared run's name must not
    turn into a link, an image or formatting on the page."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


def run_labels(archived: bool = False) -> dict[str, str]:
    """{run id: what people read}: the run's name, with the short id after it where names clash
    (the whole id where even that clashes, as in copies of one run). engine.run_index.run_labels,
    once per change of the runs folder."""
    view = runs_view(archived)
    view.rows(refresh=_in_fragment_rerun())
    return view.derived("labels", index_run_labels)


def search_text(archived: bool = False) -> list[str]:
    """Per row, what the search box looks in: the label, id, tags and note, lower-cased."""
    view = runs_view(archived)
    labels = run_labels(archived)
    return view.derived("search", lambda rows: [
        " ".join((labels.get(r["id"], r["id"]), r["id"], *(r["tags"] or ()), r["note"] or "")).lower() for r in rows])


def filter_choices(archived: bool = False) -> dict[str, list[str]]:
    """What the Runs page's filters offer (dashboard/run_search.choices), once per change."""
    return runs_view(archived).derived("choices", run_search.choices)


def config_keys(archived: bool = False) -> list[str]:
    """Every config key the runs hold, sorted: the settings a person can show or search by."""
    return runs_view(archived).derived("config_keys", lambda rows: sorted(run_query.config_keys(rows)))


def run_row(run_id: str, archived: bool = False) -> dict | None:
    """One run's summary as of this script run's refresh, or None."""
    return runs_view(archived).index.get(run_id)


# ---------------------------------------------------------------- tags, note, archive (engine/run_curation.py)


def change_tags(run_id: str, add: list[str], remove: list[str]) -> list[str]:
    """Add and remove tags of a run; raises ValueError (a bad tag) or RunFormatError (no such run)."""
    path = run_path(run_id)
    if path is None:
        raise runs.RunFormatError(f"no run {run_id!r} in {runs_root()}")
    try:
        return run_curation.set_tags(path, add, remove)
    finally:
        refresh_runs()


def set_note(run_id: str, text: str) -> str:
    """Replace a run's note ("" clears it); raises ValueError or RunFormatError."""
    path = run_path(run_id)
    if path is None:
        raise runs.RunFormatError(f"no run {run_id!r} in {runs_root()}")
    try:
        return run_curation.set_note(path, text)
    finally:
        refresh_runs()


def archive_run(run_id: str) -> None:
    """Move a run into the archive (nothing deleted); raises RunFormatError saying why not."""
    try:
        run_curation.archive_run(runs_root(), run_id)
    finally:
        refresh_runs()
        refresh_runs(archived=True)


def restore_run(run_id: str) -> None:
    """Move an archived run back into the runs folder; raises RunFormatError saying why not."""
    try:
        run_curation.restore_run(runs_root(), run_id)
    finally:
        refresh_runs()
        refresh_runs(archived=True)


# ---------------------------------------------------------------- one run, one cache per file


@st.cache_data(max_entries=200, show_spinner=False)
def _load(path: str, stamp: tuple) -> runs.Run:
    return runs.load_run(Path(path))


def load_run(run_id: str) -> runs.Run | None:
    """The run's small files (meta, config, dataset, epochs, ...), or None for an unknown id.
    Keyed on those files alone: a live run's steps.jsonl growing does not re-read them."""
    path = run_path(run_id)
    if path is None:
        return None
    return _load(str(path), _stamps(path, SMALL_PARTS) + (runs.writer_alive(path),))


@st.cache_data(max_entries=100, show_spinner=False)
def _steps(path: str, stamp: tuple, steps_per_epoch: int | None) -> pd.DataFrame:
    rows, _ = runs.read_steps(Path(path))
    table = pd.DataFrame(rows, columns=["step", "epoch", "loss", "lr"])
    table["epoch_position"] = table["step"] / steps_per_epoch if steps_per_epoch else table["epoch"]
    return table


def steps(run_id: str) -> pd.DataFrame:
    """The per-step rows, with each step's position on the epoch axis."""
    path, run = run_path(run_id), load_run(run_id)
    if path is None or run is None:
        return pd.DataFrame(columns=["step", "epoch", "loss", "lr", "epoch_position"])
    return _steps(str(path), _stamps(path, ("steps",)), metrics.steps_per_epoch(run))


@st.cache_data(max_entries=100, show_spinner=False)
def _lr_finder_steps(path: str, stamp: tuple) -> pd.DataFrame:
    rows, _ = runs.read_lr_finder_steps(Path(path))
    return pd.DataFrame(rows, columns=["step", "lr", "loss"])


def lr_finder_steps(run_id: str) -> pd.DataFrame:
    """The range test's rows so far (step, lr, loss), re-read only when its file changes."""
    path = run_path(run_id)
    if path is None:
        return pd.DataFrame(columns=["step", "lr", "loss"])
    return _lr_finder_steps(str(path), _stamps(path, ("lr_finder_steps",)))


def config_table(run: runs.Run) -> pd.DataFrame:
    """The run's config as one value per field (text, so mixed types show as written)."""
    config = run.config or {}
    return pd.DataFrame({"value": [str(v) for v in config.values()]}, index=list(config))


def config_with_used_lr(run: runs.Run) -> dict:
    """The config plus the max LR the run actually trained with (the range test's pick)."""
    return {**(run.config or {}), "max LR used": metrics.number_text(run.used_lr, ".3g")}


EPOCH_COLUMNS = ["epoch", "step", "lr_start", "lr_end", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                 "train_seconds", "images_per_s"]


def epochs(run: runs.Run) -> pd.DataFrame:
    """One row per recorded epoch, every column a float: a value the run does not hold is NaN
    (drawn as a gap), whether it was null, absent, or not a finite number."""
    return numbers(pd.DataFrame(run.epochs, columns=EPOCH_COLUMNS), EPOCH_COLUMNS)


@st.cache_data(max_entries=64, show_spinner=False)
def _predictions(path: str, stamp: tuple, tag: str, num_classes: int | None, num_images: int | None
                 ) -> tuple[dict | None, list[str]]:
    dump, problems = runs.read_predictions(Path(path), tag, num_classes, num_images)
    return dump, [str(p) for p in problems]


def predictions(run_id: str, tag: str = "final") -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """A prediction dump and the problems met reading it (a damaged dump is None plus a warning)."""
    path, run = run_path(run_id), load_run(run_id)
    if path is None or run is None:
        return None, [f"no run {run_id!r}"]
    stamp = _stamps(path, (f"predictions/{tag}", "test_images", "dataset"))
    return _predictions(str(path), stamp, tag, run.num_classes, run.num_test_images())


@st.cache_data(max_entries=32, show_spinner=False)
def _train_samples(path: str, stamp: tuple, image_shape: tuple | None, num_classes: int | None) -> dict | None:
    samples, _ = runs.read_train_samples(Path(path), list(image_shape) if image_shape else None, num_classes)
    return samples


def train_samples(run_id: str) -> dict[str, np.ndarray] | None:
    path, run = run_path(run_id), load_run(run_id)
    if path is None or run is None:
        return None
    shape = tuple(run.image_shape) if run.image_shape else None
    return _train_samples(str(path), _stamps(path, ("train_samples",)), shape, run.num_classes)


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
    images, _ = runs.read_test_images(Path(path))
    if images is None or (indices and (max(indices) >= len(images) or min(indices) < 0)):
        return None
    return np.asarray(images[list(indices)])


def _images_key(run_id: str) -> tuple[str, tuple] | None:
    path = run_path(run_id)
    return None if path is None else (str(path), _stamps(path, ("test_images",)))


def test_images(run_id: str, indices: tuple[int, ...]) -> np.ndarray | None:
    """Raw uint8 test images (k, 32, 32, 3) by test index, or None when the run has none."""
    key = _images_key(run_id)
    return None if key is None else _test_images(*key, tuple(int(i) for i in indices))


@st.cache_data(max_entries=256, show_spinner=False)
def _test_pngs(path: str, stamp: tuple, indices: tuple[int, ...], size: int) -> list[bytes] | None:
    images = _test_images(path, stamp, indices)
    return None if images is None else [to_png(image, size) for image in images]


def test_pngs(run_id: str, indices: tuple[int, ...], size: int = IMAGE_PX) -> list[bytes] | None:
    """One page of test images, enlarged and encoded once, then served from the cache."""
    key = _images_key(run_id)
    return None if key is None else _test_pngs(*key, tuple(int(i) for i in indices), size)


# ---------------------------------------------------------------- models and Grad-CAM


class CamStore:
    """A run checkpoint's model plus its computed maps, keyed (image, method, layer, class).

    One per (run, checkpoint) in st.cache_resource, shared by every session: the lock keeps two
    sessions from putting Grad-CAM hooks on the model at once."""

    def __init__(self, model, mean: list[float], std: list[float], tta_flip: bool = False, max_maps: int = 2048):
        self.model, self.mean, self.std, self.tta_flip = model, mean, std, tta_flip
        self.lock = threading.Lock()
        self.maps: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.max_maps = max_maps

    def cams(self, images: np.ndarray, indices: list[int], method: str, layer: str,
             targets: list[int]) -> np.ndarray:
        from engine import cam

        agnostic = method in cam.CLASS_AGNOSTIC  # one map per image, whichever class is asked for
        keys = [(i, method, layer, None if agnostic else t) for i, t in zip(indices, targets)]
        with self.lock:
            missing = [n for n, key in enumerate(keys) if key not in self.maps]
            if missing:
                computed = cam.compute_cams(self.model, images[missing], self.mean, self.std, method, layer,
                                            [targets[n] for n in missing])
                for n, one in zip(missing, computed):
                    self.maps[keys[n]] = one
            for key in keys:
                self.maps.move_to_end(key)
            while len(self.maps) > self.max_maps:
                self.maps.popitem(last=False)
            return np.stack([self.maps[key] for key in keys])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities from this checkpoint, the way the run evaluates (flip TTA when it used
        it): only for a checkpoint whose recorded predictions cannot be read."""
        from engine import cam

        with self.lock:
            return cam.probabilities(self.model, images, self.mean, self.std, self.tta_flip)


@st.cache_resource(max_entries=4, show_spinner=False)
def _cam_store(path: str, checkpoint_stamp: tuple, tag: str) -> CamStore:
    from engine import cam

    run = runs.load_run(Path(path))
    model = cam.load_model(run, tag)  # raises engine.checkpoint.CheckpointError with a clear message
    mean, std = run.normalisation
    return CamStore(model, list(mean), list(std), bool((run.config or {}).get("tta_flip")))


def cam_store(run_id: str, tag: str) -> CamStore | None:
    """The model of a run's checkpoint, loaded once; None when the run has no such checkpoint."""
    path, run = run_path(run_id), load_run(run_id)
    if path is None or run is None or run.checkpoint_path(tag) is None or run.normalisation is None:
        return None
    return _cam_store(str(path), _stamps(path, (f"checkpoint/{tag}",)), tag)


def cam_choices() -> tuple[tuple[str, ...], tuple[str, ...], str, frozenset[str]]:
    """(methods, layers, default layer, the methods that use no class) for the Grad-CAM page;
    lists names only (no torch import)."""
    from engine import cam

    return tuple(cam.METHODS), cam.LAYERS, cam.DEFAULT_LAYER, cam.CLASS_AGNOSTIC


def overlay(image: np.ndarray, cam_map: np.ndarray, opacity: float) -> np.ndarray:
    from engine import cam

    return cam.overlay(image, cam_map, opacity)
