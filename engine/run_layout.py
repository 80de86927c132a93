"""The layout of a runs folder, spelled once: file names and paths in a run folder, the run-id
format, the format version and the status names.

Everything else (the writer, the readers, the index, the CLI, the dashboard) reads these names
from here, usually through engine.runs, so a renamed file changes one line. docs/run-format.md
describes what each file holds.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from enum import StrEnum
from pathlib import Path

FORMAT_VERSION = 2  # 2: summary.json, tags.json, note.txt, the archive folder; runs of version 1 still read


class Status(StrEnum):
    """A run's status. The first four are recorded in run.json; UNKNOWN is what a reader says
    when run.json is missing or has no valid status. Members are strings: `Status.RUNNING ==
    "running"`, and they are written to JSON as their value."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


# the ones run.json may hold, as plain strings (what a reader of the JSON gets back)
STATUSES = tuple(s.value for s in (Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.INTERRUPTED))

# ---------------------------------------------------------------- files of a run folder

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
ENVIRONMENT_JSON = "environment.json"
DATASET_JSON = "dataset.json"
MODEL_SUMMARY_JSON = "model_summary.json"
MODEL_SUMMARY_TXT = "model_summary.txt"
LR_FINDER_JSON = "lr_finder.json"
LR_FINDER_STEPS_JSONL = "lr_finder_steps.jsonl"
EPOCHS_JSONL = "epochs.jsonl"
STEPS_JSONL = "steps.jsonl"
TEST_IMAGES_NPY = "test_images.npy"
TRAIN_SAMPLES_NPZ = "train_samples.npz"
PREDICTIONS_DIR = "predictions"
DYNAMICS_DIR = "dynamics"  # what every image did at every epoch (engine/dynamics.py)
DYNAMICS_LABELS = f"{DYNAMICS_DIR}/labels.npz"
CHECKPOINTS_DIR = "checkpoints"
RESUME_STATE = "resume.pt"
LOCK_FILE = ".lock"
# written by the writer, derived from the files above (a cache a reader may rebuild)
SUMMARY_JSON = "summary.json"
# a person's, written by `resnet-runs tag` / `note` and the dashboard, never by training
TAGS_JSON = "tags.json"
NOTE_TXT = "note.txt"

# the two moments a dump and a checkpoint are kept for
FINAL = "final"
BEST = "best"
PREDICTION_TAGS = (FINAL, BEST)
CHECKPOINT_TAGS = (FINAL, BEST)
TAG_LABELS = {FINAL: "final epoch", BEST: "best epoch"}

# ---------------------------------------------------------------- entries of a runs folder

ARCHIVE_DIR = ".archive"  # archived runs, out of the tables; hidden, like every entry that is no run
INDEX_CACHE = ".index.json"  # the index's cache of summaries; deleting it loses nothing
SWEEPS_DIR = ".sweeps"  # one plan per sweep, <sweep id>.json (engine/sweep_plan.py), and its lock, <sweep id>.lock


def sweep_plan_path(runs_dir: Path, sweep_id: str) -> Path:
    """The plan of sweep `sweep_id` (its trials and their parameters) in `runs_dir`."""
    return Path(runs_dir) / SWEEPS_DIR / f"{sweep_id}.json"


def sweep_lock_path(runs_dir: Path, sweep_id: str) -> Path:
    """Held (flock) by the process running sweep `sweep_id`, so two never run one sweep's trials."""
    return Path(runs_dir) / SWEEPS_DIR / f"{sweep_id}.lock"


def prediction_file(tag: str) -> str:
    """The dump of `tag` (final, best), relative to the run folder."""
    return f"{PREDICTIONS_DIR}/{tag}.npz"


def checkpoint_file(tag: str) -> str:
    """The weights of `tag` (final, best), relative to the run folder."""
    return f"{CHECKPOINTS_DIR}/{tag}.safetensors"


RESUME_STATE_FILE = f"{CHECKPOINTS_DIR}/{RESUME_STATE}"
DYNAMICS_EPOCH = re.compile(r"epoch-(\d{4,7})\.npz\Z")  # the epoch files in DYNAMICS_DIR (use fullmatch)


def dynamics_file(epoch: int) -> str:
    """The recorded training dynamics of `epoch` (1-based), relative to the run folder."""
    return f"{DYNAMICS_DIR}/epoch-{epoch:04d}.npz"


def prediction_path(run_dir: Path, tag: str) -> Path:
    return Path(run_dir) / prediction_file(tag)


def checkpoint_path(run_dir: Path, tag: str) -> Path:
    return Path(run_dir) / checkpoint_file(tag)


def resume_state_path(run_dir: Path) -> Path:
    return Path(run_dir) / RESUME_STATE_FILE


def archive_dir(runs_dir: Path) -> Path:
    """Where archived runs of `runs_dir` live (a runs folder itself: the index reads it the same way)."""
    return Path(runs_dir) / ARCHIVE_DIR


# {role: file relative to the run folder}: the names `part_stamp` and the per-file caches use
ROLES = {
    "run": RUN_JSON, "config": CONFIG_JSON, "environment": ENVIRONMENT_JSON, "dataset": DATASET_JSON,
    "model_summary": MODEL_SUMMARY_JSON, "model_summary_text": MODEL_SUMMARY_TXT, "lr_finder": LR_FINDER_JSON,
    "lr_finder_steps": LR_FINDER_STEPS_JSONL, "epochs": EPOCHS_JSONL, "steps": STEPS_JSONL,
    "test_images": TEST_IMAGES_NPY, "train_samples": TRAIN_SAMPLES_NPZ,
    **{f"predictions/{t}": prediction_file(t) for t in PREDICTION_TAGS},
    **{f"checkpoint/{t}": checkpoint_file(t) for t in CHECKPOINT_TAGS},
    "resume_state": RESUME_STATE_FILE,
    "tags": TAGS_JSON, "note": NOTE_TXT,
}
# The files `load_run` reads (whole, or only their headers for the arrays).
LOAD_ROLES = ("run", "config", "environment", "dataset", "model_summary", "lr_finder", "epochs", "test_images",
              "train_samples", *(f"predictions/{tag}" for tag in PREDICTION_TAGS))
# The files a summary is built from: what `load_run` reads plus the tags and the note. A summary
# records their stamps and is stale when any of them differs (docs/run-format.md, "summary.json").
SUMMARY_SOURCES = tuple(ROLES[role] for role in (*LOAD_ROLES, "tags", "note"))

# ---------------------------------------------------------------- run ids

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # use fullmatch; \Z refuses "id\n"
_GENERATED_ID = re.compile(r"(\d{8}-\d{6})-([0-9a-f]{6})(?:-([A-Za-z0-9._-]+))?")
SLUG_LENGTH = 40


def slugify(name: str) -> str:
    """A name made safe for a folder name: letters, digits, `.`, `_`, `-`; at most 40 characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    return slug[:SLUG_LENGTH]


def new_run_id(name: str = "") -> str:
    """`YYYYMMDD-HHMMSS-xxxxxx[-slug]`: sortable by creation time, unique, safe as a folder name."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    slug = slugify(name)
    return f"{run_id}-{slug}" if slug else run_id


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID_PATTERN.fullmatch(text) is not None


def parse_run_id(run_id: str) -> tuple[str, str, str] | None:
    """(stamp `YYYYMMDD-HHMMSS`, random token, name slug or "") of a generated id, else None."""
    found = _GENERATED_ID.fullmatch(run_id) if is_run_id(run_id) else None
    return None if found is None else (found[1], found[2], found[3] or "")


def short_id(run_id: str) -> str:
    """Time of day plus token (`HHMMSS-xxxxxx`): tells apart two runs that share a name."""
    parts = parse_run_id(run_id)
    return run_id if parts is None else f"{parts[0][9:]}-{parts[1]}"


def run_id_suffix(run_id: str) -> str:
    """The name part of an id (its slug), or the whole id when it is not a generated one."""
    parts = parse_run_id(run_id)
    return run_id if parts is None else parts[2]
