"""The run format: write and read `runs/<run-id>/`; the only public API that knows its files.

Writing: `RunWriter` has one method per file; nothing is ever half-written under a final name
(engine/safe_io.py). Reading: `load_run` gives a `Run` whose every value has been checked
(engine/run_validate.py); a missing or bad file becomes None / empty plus a `Problem` naming
it, never an exception. Per-file caching: each `read_*` function (re-exported here from
engine/run_reader.py) depends on one file, so key a cache on `part_stamp(run_dir, role)`
(or the dict `file_stamps(run_dir)`) and only the file that changed is read again; `run_stamp`
fingerprints a whole run for its summary row. docs/run-format.md is the contract.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from engine import commands
from engine import run_layout as layout
from engine.run_layout import (
    ARCHIVE_DIR,
    BEST,
    CHECKPOINT_TAGS,
    CHECKPOINTS_DIR,
    CONFIG_JSON,
    DATASET_JSON,
    ENVIRONMENT_JSON,
    EPOCHS_JSONL,
    FINAL,
    FORMAT_VERSION,
    INDEX_CACHE,
    LOAD_ROLES,
    LOCK_FILE,
    LR_FINDER_JSON,
    LR_FINDER_STEPS_JSONL,
    MODEL_SUMMARY_JSON,
    MODEL_SUMMARY_TXT,
    NOTE_TXT,
    PREDICTION_TAGS,
    PREDICTIONS_DIR,
    RESUME_STATE,
    ROLES,
    RUN_ID_PATTERN,
    RUN_JSON,
    STATUSES,
    STEPS_JSONL,
    SUMMARY_JSON,
    TAG_LABELS,
    TAGS_JSON,
    TEST_IMAGES_NPY,
    TRAIN_SAMPLES_NPZ,
    Status,
    archive_dir,
    checkpoint_file,
    is_run_id,
    new_run_id,
    parse_run_id,
    prediction_file,
    run_id_suffix,
    short_id,
    slugify,
)
from engine.run_reader import (
    Problem,
    check_prediction_header,
    check_train_samples_header,
    file_stamps,
    part_stamp,
    read_config,
    read_dataset,
    read_environment,
    read_epochs,
    read_lr_finder,
    read_lr_finder_steps,
    read_meta,
    read_model_summary,
    read_model_summary_text,
    read_note,
    read_predictions,
    read_steps,
    read_tags,
    read_test_images,
    read_train_samples,
    stored_images_shape,
)
from engine.run_validate import PREDICTION_KEYS
from engine.run_writer import RunFormatError, RunWriter, writer_alive

__all__ = [  # the run format's public names; callers import them from here
    "CHECKPOINT_TAGS", "CHECKPOINTS_DIR", "CONFIG_JSON", "DATASET_JSON", "ENVIRONMENT_JSON", "EPOCHS_JSONL",
    "FORMAT_VERSION", "LOAD_ROLES", "LOCK_FILE", "LR_FINDER_JSON", "LR_FINDER_STEPS_JSONL", "MODEL_SUMMARY_JSON",
    "MODEL_SUMMARY_TXT", "PREDICTION_KEYS", "PREDICTION_TAGS", "PREDICTIONS_DIR", "RESUME_STATE", "ROLES",
    "RUN_ID_PATTERN", "RUN_JSON", "STATUSES", "STEPS_JSONL", "TAG_LABELS", "TEST_IMAGES_NPY", "TRAIN_SAMPLES_NPZ",
    "Problem", "Run", "RunFormatError", "RunWriter", "best_epoch", "file_stamps", "is_run_id", "list_runs", "load_run",
    "new_run_id", "parse_run_id", "part_stamp", "printable", "read_config", "read_dataset", "read_environment",
    "read_epochs", "read_lr_finder", "read_lr_finder_steps", "read_meta", "read_model_summary",
    "read_model_summary_text", "read_predictions", "read_steps", "read_test_images", "read_train_samples",
    "resolve_run_dir", "run_dirs", "run_id_suffix", "run_stamp", "short_id", "slugify", "writer_alive",
    "AmbiguousRun", "find_run", "runs_folder",
    # run format 2 (engine/run_layout.py)
    "ARCHIVE_DIR", "BEST", "FINAL", "INDEX_CACHE", "NOTE_TXT", "SUMMARY_JSON", "TAGS_JSON", "Status", "archive_dir",
    "checkpoint_file", "prediction_file", "read_note", "read_tags",
]



# ---------------------------------------------------------------- ids, names, facts


def printable(text: object) -> str:
    """Text safe for a terminal: control and format characters (escape sequences, bidi
    overrides, newlines) are shown escaped, e.g. `\\x1b`, instead of acting."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def best_epoch(epochs: Sequence[dict]) -> tuple[float | None, int | None]:
    """(best test accuracy, its epoch); the earliest epoch wins a tie, as the engine saves
    the best dump on improvement only. The one definition every reader uses."""
    scored = [(row["test_acc"], row.get("epoch")) for row in epochs if row.get("test_acc") is not None]
    return max(scored, key=lambda pair: (pair[0], -(pair[1] or 0)), default=(None, None))


def _see_list(runs_dir: Path) -> str:
    return f"see `{commands.command('list', runs_dir=runs_dir)}`"


def resolve_run_dir(runs_dir: Path, run: str) -> Path:
    """Turn a run id (or a path to a run folder) into its folder, refusing anything that
    would escape the runs folder: `..`, absolute paths elsewhere, NUL bytes, symlinks out."""
    runs_root = Path(runs_dir).resolve()
    if not run or "\x00" in run:
        raise RunFormatError(f"empty run id or one with a NUL byte; {_see_list(runs_dir)}")
    candidate = Path(run)
    if len(candidate.parts) > 1 or candidate.is_absolute():
        resolved = candidate.resolve()
    else:
        if not is_run_id(run):
            raise RunFormatError(
                f"{printable(run)!r} is not a run id (letters, digits, '.', '_' and '-' only, at most 128); "
                f"{_see_list(runs_dir)}")
        resolved = (runs_root / run).resolve()
    if resolved.parent != runs_root:
        raise RunFormatError(f"{printable(run)!r} lies outside the runs folder {runs_root}")
    if not (resolved / RUN_JSON).is_file():
        raise RunFormatError(f"no run {printable(resolved.name)!r} in {runs_root}; {_see_list(runs_dir)}")
    return resolved


MAX_CANDIDATES = 20  # the runs an ambiguous reference lists


class AmbiguousRun(RunFormatError):
    """A reference that fits several runs; `details` lists them, one indented line each."""

    def __init__(self, message: str, details: list[str]):
        super().__init__(message)
        self.details = details


def runs_folder(runs_dir: Path) -> Path:
    """The runs folder a command reads, refused when it is not there: a mistyped path, not an
    empty folder."""
    root = Path(runs_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise RunFormatError(f"the runs folder {printable(root)} {what}; pass the right one with --runs-dir")
    return root


def find_run(runs_dir: Path, reference: str) -> Path:
    """The run folder a person means, wherever a command takes a run: a whole id (or a path to a
    run folder), else the one run whose id starts with `reference` or whose name is `reference`.
    When several fit, AmbiguousRun lists them. A reference that is not a whole id costs one look
    at the folder's listing, and a read of the run.json of the runs it may name."""
    root = runs_folder(runs_dir)
    path = Path(reference)
    if not reference or "\x00" in reference or len(path.parts) > 1 or path.is_absolute():
        return resolve_run_dir(root, reference)  # a path, or no reference at all: its own checks
    if is_run_id(reference) and (root / reference / RUN_JSON).is_file():
        return resolve_run_dir(root, reference)
    slug = slugify(reference)

    def maybe_named(run_id: str) -> bool:  # a generated id ends in its name's slug: read only those
        parts = parse_run_id(run_id)
        return parts is None or parts[2] == slug

    def name_of(folder: Path) -> str | None:
        return (read_meta(folder)[0] or {}).get("name")

    with os.scandir(root) as entries:  # names only: ten thousand runs cost one listing
        ids = sorted((e.name for e in entries if not e.name.startswith(".")
                      and (e.name.startswith(reference) or maybe_named(e.name))), reverse=True)
    found = [root / run_id for run_id in ids if (root / run_id / RUN_JSON).is_file()
             and (run_id.startswith(reference) or name_of(root / run_id) == reference)]
    if not found:
        raise RunFormatError(f"no run {printable(reference)!r} in {printable(root)}: no run id starts with it "
                             f"and no run has that name; {_see_list(runs_dir)}")
    if len(found) > 1:
        details = [f"  {printable(folder.name)}  {printable(name_of(folder) or '')}"
                   for folder in found[:MAX_CANDIDATES]]
        if len(found) > MAX_CANDIDATES:
            details.append(f"  ... and {len(found) - MAX_CANDIDATES} more; {_see_list(runs_dir)}")
        raise AmbiguousRun(f"{printable(reference)!r} matches {len(found)} runs; give more of the id, "
                           "or the whole id of one of these:", details)
    return resolve_run_dir(root, found[0].name)


# ---------------------------------------------------------------- reading a run


@dataclass
class Run:
    """Everything readable in one run folder, every value checked; missing or damaged parts
    are None / empty, each with a `Problem` naming its file."""

    path: Path
    meta: dict
    config: dict | None
    environment: dict | None
    dataset: dict | None
    model_summary: dict | None
    lr_finder: dict | None
    epochs: list[dict]
    problems: list[Problem] = field(default_factory=list)

    def _note(self, problems: list[Problem]) -> None:
        self.problems.extend(p for p in problems if p not in self.problems)

    @property
    def warnings(self) -> list[str]:
        return [str(p) for p in self.problems]

    @property
    def damaged(self) -> list[str]:
        """The files found damaged so far (a cheap header check covers the arrays at load)."""
        return sorted({p.file for p in self.problems if p.damage})

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.id

    @property
    def status(self) -> str:
        return self.meta.get("status", Status.UNKNOWN)

    @property
    def error(self) -> str | None:
        return self.meta.get("error")

    @property
    def created(self) -> str | None:
        return self.meta.get("created")

    @property
    def finished(self) -> str | None:
        return self.meta.get("finished")

    @property
    def epochs_planned(self) -> int | None:
        return self.meta.get("epochs_planned")

    @property
    def class_names(self) -> list[str]:
        return list((self.dataset or {}).get("classes") or [])

    @property
    def num_classes(self) -> int | None:
        return (self.dataset or {}).get("num_classes")

    @property
    def image_shape(self) -> list[int] | None:
        return (self.dataset or {}).get("image_shape")

    @property
    def dataset_name(self) -> str | None:
        return (self.dataset or {}).get("name")

    @property
    def fingerprint(self) -> str | None:
        return (self.dataset or {}).get("fingerprint")

    @property
    def normalisation(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) per channel, as the model was trained with, or None when unknown."""
        data = self.dataset or {}
        return (data["mean"], data["std"]) if "mean" in data and "std" in data else None

    @property
    def device_name(self) -> str | None:
        return (self.environment or {}).get("device_name")

    @property
    def width(self) -> int | None:
        return (self.config or {}).get("width")

    @property
    def total_params(self) -> int | None:
        return (self.model_summary or {}).get("total_params")

    @property
    def used_lr(self) -> float | None:
        """The max LR trained with: the range test's pick, else the config's fixed `lr`."""
        return (self.lr_finder or {}).get("used_lr") or (self.config or {}).get("lr")

    def best_epoch(self) -> tuple[float | None, int | None]:
        return best_epoch(self.epochs)

    def train_seconds(self) -> float | None:
        """Time spent training (evaluation excluded), summed over the recorded epochs."""
        times = [row["train_seconds"] for row in self.epochs if row.get("train_seconds") is not None]
        return sum(times) if times else None

    def duration_seconds(self) -> float | None:
        """Wall-clock time from creation to the recorded end; the epochs' own times without an end."""
        if self.created and self.finished:
            try:
                return (datetime.fromisoformat(self.finished) - datetime.fromisoformat(self.created)).total_seconds()
            except TypeError:  # one time with a zone, one without: fall back on the epochs
                pass
        times = [row["seconds"] for row in self.epochs if row.get("seconds") is not None]
        return sum(times) if times else None

    def summary(self) -> dict:
        """One row for the runs table; `damaged` names the damaged files."""
        best_acc, best = self.best_epoch()
        return {
            "id": self.id, "name": self.name, "status": self.status, "error": self.error,
            "dataset": self.dataset_name, "epochs_done": len(self.epochs), "epochs_planned": self.epochs_planned,
            "best_test_acc": best_acc, "best_epoch": best,
            "final_test_acc": self.epochs[-1].get("test_acc") if self.epochs else None,
            "train_seconds": self.train_seconds(), "duration_seconds": self.duration_seconds(),
            "device": self.device_name, "created": self.created, "fingerprint": self.fingerprint,
            "damaged": self.damaged, "warnings": self.warnings,
        }

    def steps(self) -> list[dict]:
        rows, problems = read_steps(self.path)
        self._note(problems)
        return rows

    def lr_finder_steps(self) -> list[dict]:
        """The range test's rows so far (while it runs; `lr_finder` is the finished curve)."""
        rows, problems = read_lr_finder_steps(self.path)
        self._note(problems)
        return rows

    def model_summary_text(self) -> str | None:
        text, problems = read_model_summary_text(self.path)
        self._note(problems)
        return text

    def prediction_tags(self) -> list[str]:
        return [t for t in PREDICTION_TAGS if layout.prediction_path(self.path, t).exists()]

    def num_test_images(self) -> int | None:
        shape, _ = stored_images_shape(self.path, self.image_shape)
        return None if shape is None else shape[0]

    def predictions(self, tag: str = FINAL) -> dict[str, np.ndarray] | None:
        """The test-set dump for `tag`, fully checked, or None (with a problem when damaged)."""
        dump, problems = read_predictions(self.path, tag, self.num_classes, self.num_test_images())
        self._note(problems)
        return dump

    def test_images(self) -> np.ndarray | None:
        """The test set as uint8 (N, H, W, C), memory-mapped, or None."""
        images, problems = read_test_images(self.path, self.image_shape)
        self._note(problems)
        return images

    def train_samples(self) -> dict[str, np.ndarray] | None:
        samples, problems = read_train_samples(self.path, self.image_shape, self.num_classes)
        self._note(problems)
        return samples

    def checkpoint_path(self, tag: str = FINAL) -> Path | None:
        path = layout.checkpoint_path(self.path, tag)
        return path if tag in CHECKPOINT_TAGS and path.is_file() else None

    def checkpoint_tags(self) -> list[str]:
        return [t for t in CHECKPOINT_TAGS if self.checkpoint_path(t)]

    def resume_state_path(self) -> Path:
        return layout.resume_state_path(self.path)


def load_run(run_dir: Path) -> Run:
    """Read a run folder's small files and check its arrays' headers. Never raises for damaged
    content: problems land in `Run.problems` (as text in `Run.warnings`)."""
    path = Path(run_dir)
    meta, problems = read_meta(path)
    meta = meta if meta is not None else {"id": path.name, "status": Status.UNKNOWN}
    version = meta.get("format_version")
    if version is not None and version > FORMAT_VERSION:
        problems.append(Problem(RUN_JSON, f"written by a newer format (v{version}); upgrade to read all of it",
                                damage=False))
    if meta.get("status") == Status.RUNNING and not writer_alive(path):
        meta = {**meta, "status": Status.INTERRUPTED,
                "error": meta.get("error") or "the training process ended without recording an end"}
    parts = {}
    for key, read in (("config", read_config), ("environment", read_environment), ("dataset", read_dataset),
                      ("model_summary", read_model_summary), ("lr_finder", read_lr_finder), ("epochs", read_epochs)):
        parts[key], found = read(path)
        problems += found
    if parts["epochs"] is None:
        parts["epochs"] = []
    run = Run(path=path, meta=meta, problems=problems, **parts)
    _, found = stored_images_shape(path, run.image_shape)
    run._note(found + check_train_samples_header(path, run.image_shape))
    for tag in PREDICTION_TAGS:
        run._note(check_prediction_header(path, tag, run.num_classes))
    return run


def run_dirs(runs_dir: Path) -> list[Path]:
    """The run folders under `runs_dir`, newest first, without reading them. A non-empty folder
    without run.json still counts, so a damaged run shows up (with a warning) instead of hiding."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [child for child in sorted(root.iterdir(), reverse=True)
            if child.is_dir() and not child.name.startswith(".") and any(child.iterdir())]


def list_runs(runs_dir: Path) -> list[Run]:
    """Every run under `runs_dir`, newest first."""
    return [load_run(path) for path in run_dirs(runs_dir)]


def run_stamp(run_dir: Path) -> tuple:
    """The cache key of `load_run` and `summary()`: the stamps of the files they read
    (LOAD_ROLES; not steps.jsonl, so a live run's step appends keep it) and whether the writer
    is alive."""
    return tuple(part_stamp(run_dir, role) for role in LOAD_ROLES) + (writer_alive(run_dir),)
