"""The run format: the only module that knows the file names inside `runs/<run-id>/`.

Writers never leave a half-written file under a final name (temp file + `os.replace`, or
whole-line appends); readers tolerate partial and damaged runs and report per-file problems
as warnings instead of raising. See docs/run-format.md for the contract.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
ENVIRONMENT_JSON = "environment.json"
DATASET_JSON = "dataset.json"
MODEL_SUMMARY_JSON = "model_summary.json"
MODEL_SUMMARY_TXT = "model_summary.txt"
LR_FINDER_JSON = "lr_finder.json"
EPOCHS_JSONL = "epochs.jsonl"
STEPS_JSONL = "steps.jsonl"
TEST_IMAGES_NPY = "test_images.npy"
TRAIN_SAMPLES_NPZ = "train_samples.npz"
PREDICTIONS_DIR = "predictions"
CHECKPOINTS_DIR = "checkpoints"
RESUME_STATE = "resume.pt"
LOCK_FILE = ".lock"

PREDICTION_TAGS = ("final", "best")
CHECKPOINT_TAGS = ("final", "best")
PREDICTION_KEYS = ("index", "label", "pred", "confidence", "probs", "loss")
STATUSES = ("running", "completed", "failed", "interrupted")

MAX_NAME_LENGTH = 64
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ARRAY_BYTES = 2 * 1024**3


class RunFormatError(Exception):
    """A run folder or run id that cannot be used; the message says why and what to do."""


# ---------------------------------------------------------------- low-level safe writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename: readers see the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (to_strict_json(obj, indent=2) + "\n").encode())


def atomic_save(path: Path, writer) -> None:
    """Let `writer(tmp_path)` produce the file, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        writer(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append whole lines in one unbuffered write, so a crash can only cut the last line; a
    failed write (a full disk) is rolled back so the next append starts on a clean line."""
    data = "".join(to_strict_json(row) + "\n" for row in rows).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _strict(value: Any) -> Any:
    """NaN and infinities have no strict-JSON form: store them as null (drawn as gaps)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        return _strict(value.item())
    return value


def to_strict_json(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_strict(obj), indent=indent, allow_nan=False)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- ids and paths


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    return slug[:40]


def new_run_id(name: str = "") -> str:
    """Sortable by creation time, unique, and safe as a folder name on every filesystem."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    slug = slugify(name)
    return f"{run_id}-{slug}" if slug else run_id


def validate_run_name(name: str) -> str:
    if "\x00" in name:
        raise RunFormatError("run name contains a NUL byte; choose a plain name")
    if len(name) > MAX_NAME_LENGTH:
        raise RunFormatError(
            f"run name is {len(name)} characters; use at most {MAX_NAME_LENGTH}"
        )
    return name


def resolve_run_dir(runs_dir: Path, run: str) -> Path:
    """Turn a run id (or a path to a run folder) into its folder, refusing anything that
    would escape the runs folder: `..`, absolute paths elsewhere, NUL bytes, symlinks out."""
    runs_root = Path(runs_dir).resolve()
    if not run or "\x00" in run:
        raise RunFormatError("empty run id or one with a NUL byte; pass a run id from `python -m engine list`")
    candidate = Path(run)
    if len(candidate.parts) > 1 or candidate.is_absolute():
        resolved = candidate.resolve()
    else:
        if not RUN_ID_PATTERN.match(run):
            raise RunFormatError(
                f"{run!r} is not a run id (letters, digits, '.', '_' and '-' only, at most 128); "
                "see `python -m engine list`"
            )
        resolved = (runs_root / run).resolve()
    if resolved.parent != runs_root:
        raise RunFormatError(f"{run!r} lies outside the runs folder {runs_root}")
    if not (resolved / RUN_JSON).is_file():
        raise RunFormatError(f"no run {resolved.name!r} in {runs_root}; see `python -m engine list`")
    return resolved


# ---------------------------------------------------------------- writing a run


class RunWriter:
    """Owns one run folder for the lifetime of a training process.

    Holds an exclusive lock on `.lock` so two processes never write one run, and so a reader
    can tell a live run from one whose process vanished."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self._lock_handle = None

    @classmethod
    def create(cls, runs_dir: Path, name: str, epochs_planned: int) -> RunWriter:
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id(name)
        path = runs_dir / run_id
        path.mkdir()
        (path / PREDICTIONS_DIR).mkdir()
        (path / CHECKPOINTS_DIR).mkdir()
        meta = {
            "format_version": FORMAT_VERSION,
            "id": run_id,
            "name": name or run_id,
            "status": "running",
            "created": utc_now(),
            "finished": None,
            "error": None,
            "epochs_planned": epochs_planned,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        writer = cls(path, meta)
        writer.lock()
        writer.write_meta()
        return writer

    @classmethod
    def reopen(cls, run_dir: Path) -> RunWriter:
        """Take over an existing run (resume): refuses when another process holds it."""
        path = Path(run_dir)
        meta = json.loads((path / RUN_JSON).read_text())
        writer = cls(path, meta)
        writer.lock()
        for leftover in path.rglob(".*.tmp-*"):  # temporary files of a writer that was killed
            leftover.unlink(missing_ok=True)
        meta.update(status="running", finished=None, error=None, pid=os.getpid(),
                    host=socket.gethostname(), resumed=meta.get("resumed", 0) + 1)
        writer.write_meta()
        return writer

    def lock(self) -> None:
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunFormatError(
                f"run {self.path.name} is being written by another process; wait for it or stop it"
            ) from None
        self._lock_handle = handle

    def release(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def write_meta(self) -> None:
        atomic_write_json(self.path / RUN_JSON, self.meta)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_bytes(self.path / name, text.encode())

    def append_epoch(self, row: dict) -> None:
        append_jsonl(self.path / EPOCHS_JSONL, [row])

    def append_steps(self, rows: list[dict]) -> None:
        append_jsonl(self.path / STEPS_JSONL, rows)

    def write_array(self, name: str, array: np.ndarray) -> None:
        atomic_save(self.path / name, lambda tmp: np.save(tmp, array, allow_pickle=False))

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        atomic_save(self.path / name, lambda tmp: np.savez(tmp, **arrays))

    def write_predictions(self, tag: str, arrays: dict[str, np.ndarray]) -> None:
        missing = set(PREDICTION_KEYS) - set(arrays)
        if missing:
            raise ValueError(f"prediction dump lacks {sorted(missing)}")
        self.write_npz(f"{PREDICTIONS_DIR}/{tag}.npz", arrays)

    def checkpoint_path(self, tag: str) -> Path:
        return self.path / CHECKPOINTS_DIR / f"{tag}.safetensors"

    def write_checkpoint(self, tag: str, state_dict: dict, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        atomic_save(self.checkpoint_path(tag), lambda tmp: save_file(tensors, str(tmp), metadata))

    def truncate_after(self, epoch: int, step: int) -> None:
        """Drop metric rows past a resume point, so resumed epochs replace them, never repeat."""
        for name, key, last in ((EPOCHS_JSONL, "epoch", epoch), (STEPS_JSONL, "step", step)):
            rows = [r for r in read_jsonl(self.path / name, []) if isinstance(r.get(key), int) and r[key] <= last]
            atomic_write_bytes(self.path / name, "".join(to_strict_json(r) + "\n" for r in rows).encode())

    def finish(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES
        self.meta.update(status=status, finished=utc_now(), error=error)
        self.write_meta()
        self.release()


# ---------------------------------------------------------------- reading a run


def _read_json(path: Path, warnings: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.append(f"{path.name} is unreadable ({exc.__class__.__name__}); ignored")
        return None


def read_jsonl(path: Path, warnings: list[str]) -> list[dict]:
    """Whole, parseable lines only. A cut last line is normal for a live or killed run."""
    if not path.exists():
        return []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        warnings.append(f"{path.name} is unreadable ({exc}); ignored")
        return []
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the final newline: empty, or a line still being written
    rows, bad = [], 0
    for line in lines:
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        warnings.append(f"{path.name}: {bad} damaged line(s) skipped")
    if tail.strip():
        warnings.append(f"{path.name}: an unfinished last line was ignored")
    return rows


def _writer_alive(path: Path) -> bool:
    """True when some process holds the run's lock, i.e. its writer is still running."""
    lock = path / LOCK_FILE
    if not lock.exists():
        return False
    try:
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


@dataclass
class Run:
    """Everything readable in one run folder; missing or damaged parts are None / empty,
    with a line in `warnings` for each."""

    path: Path
    meta: dict
    config: dict | None
    environment: dict | None
    dataset: dict | None
    model_summary: dict | None
    lr_finder: dict | None
    epochs: list[dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.id)

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    @property
    def class_names(self) -> list[str]:
        return list((self.dataset or {}).get("classes") or [])

    def steps(self) -> list[dict]:
        """Per-step rows are read on demand: they are the largest JSON file."""
        return read_jsonl(self.path / STEPS_JSONL, self.warnings)

    def summary(self) -> dict:
        """One row for the runs table."""
        accs = [(e.get("test_acc"), e.get("epoch")) for e in self.epochs if e.get("test_acc") is not None]
        best_acc, best_epoch = max(accs, default=(None, None))
        seconds = sum(e.get("seconds") or 0.0 for e in self.epochs)
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "error": self.meta.get("error"),
            "dataset": (self.dataset or {}).get("name"),
            "epochs_done": len(self.epochs),
            "epochs_planned": self.meta.get("epochs_planned"),
            "best_test_acc": best_acc,
            "best_epoch": best_epoch,
            "final_test_acc": self.epochs[-1].get("test_acc") if self.epochs else None,
            "train_seconds": seconds,
            "device": (self.environment or {}).get("device_name"),
            "created": self.meta.get("created"),
            "warnings": len(self.warnings),
        }

    def prediction_tags(self) -> list[str]:
        return [t for t in PREDICTION_TAGS if (self.path / PREDICTIONS_DIR / f"{t}.npz").exists()]

    def predictions(self, tag: str = "final") -> dict[str, np.ndarray] | None:
        """The test-set dump for `tag`, checked for keys and consistent lengths, or None."""
        path = self.path / PREDICTIONS_DIR / f"{tag}.npz"
        if tag not in PREDICTION_TAGS or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in PREDICTION_KEYS}
        except Exception as exc:  # zip, pickle and shape errors all mean "damaged"
            self.warnings.append(f"predictions/{tag}.npz is unreadable ({exc.__class__.__name__}); ignored")
            return None
        n = len(arrays["index"])
        if any(len(a) != n for a in arrays.values()) or arrays["probs"].ndim != 2:
            self.warnings.append(f"predictions/{tag}.npz has inconsistent array lengths; ignored")
            return None
        return arrays

    def test_images(self) -> np.ndarray | None:
        """The test set as uint8 (N, 32, 32, 3), memory-mapped, or None."""
        path = self.path / TEST_IMAGES_NPY
        if not path.exists():
            return None
        try:
            images = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            self.warnings.append(f"{TEST_IMAGES_NPY} is unreadable ({exc.__class__.__name__}); ignored")
            return None
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            self.warnings.append(f"{TEST_IMAGES_NPY} has shape {images.shape} {images.dtype}; ignored")
            return None
        return images

    def train_samples(self) -> dict[str, np.ndarray] | None:
        path = self.path / TRAIN_SAMPLES_NPZ
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in ("images", "labels")}
        except Exception as exc:
            self.warnings.append(f"{TRAIN_SAMPLES_NPZ} is unreadable ({exc.__class__.__name__}); ignored")
            return None

    def checkpoint_path(self, tag: str = "final") -> Path | None:
        path = self.path / CHECKPOINTS_DIR / f"{tag}.safetensors"
        return path if tag in CHECKPOINT_TAGS and path.exists() else None

    def checkpoint_tags(self) -> list[str]:
        return [t for t in CHECKPOINT_TAGS if self.checkpoint_path(t)]

    def resume_state_path(self) -> Path:
        return self.path / CHECKPOINTS_DIR / RESUME_STATE


def load_run(run_dir: Path) -> Run:
    """Read a run folder. Never raises for damaged content: problems land in `Run.warnings`."""
    path = Path(run_dir)
    warnings: list[str] = []
    meta = _read_json(path / RUN_JSON, warnings)
    if not isinstance(meta, dict):
        if meta is not None:
            warnings.append(f"{RUN_JSON} does not hold an object; ignored")
        elif not (path / RUN_JSON).exists():
            warnings.append(f"{RUN_JSON} is missing")
        meta = {"id": path.name, "status": "unknown"}
    version = meta.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        warnings.append(f"written by a newer format (v{version}); upgrade to read all of it")
    if meta.get("status") == "running" and not _writer_alive(path):
        meta = {**meta, "status": "interrupted",
                "error": meta.get("error") or "the training process ended without recording an end"}

    def as_dict(name: str) -> dict | None:
        value = _read_json(path / name, warnings)
        if value is not None and not isinstance(value, dict):
            warnings.append(f"{name} does not hold an object; ignored")
            return None
        return value

    epochs = read_jsonl(path / EPOCHS_JSONL, warnings)
    return Run(
        path=path,
        meta=meta,
        config=as_dict(CONFIG_JSON),
        environment=as_dict(ENVIRONMENT_JSON),
        dataset=as_dict(DATASET_JSON),
        model_summary=as_dict(MODEL_SUMMARY_JSON),
        lr_finder=as_dict(LR_FINDER_JSON),
        epochs=epochs,
        warnings=warnings,
    )


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


def file_stamp(path: Path) -> tuple[float, int]:
    """(mtime, size) of a file, for cache keys: a folder's mtime misses appends to its files."""
    try:
        st = os.stat(path)
        return (st.st_mtime, st.st_size)
    except OSError:
        return (0.0, -1)


def run_stamp(run_dir: Path) -> tuple:
    """A cheap fingerprint of everything a reader depends on in one run."""
    path = Path(run_dir)
    names = [RUN_JSON, EPOCHS_JSONL, STEPS_JSONL, LR_FINDER_JSON, CONFIG_JSON,
             *(f"{PREDICTIONS_DIR}/{t}.npz" for t in PREDICTION_TAGS),
             *(f"{CHECKPOINTS_DIR}/{t}.safetensors" for t in CHECKPOINT_TAGS)]
    return tuple(file_stamp(path / n) for n in names) + (_writer_alive(path),)


def seconds_since(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return time.time() - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
