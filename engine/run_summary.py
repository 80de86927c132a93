"""A run's summary (summary.json): the one small file that the runs table, `resnet-runs list` and
search read instead of every file of every run.

The writer rewrites it at creation, at each epoch's end and at each status change. It is derived:
it records the stamps of the files it was built from (`SUMMARY_SOURCES`), and a reader uses it only
while every stamp still matches; otherwise `summary_of` rebuilds it from the run's files, which stay
the truth. The rules are in docs/run-format.md ("summary.json").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine import runs
from engine.run_layout import FORMAT_VERSION, RUN_JSON, SUMMARY_JSON, SUMMARY_SOURCES, Status
from engine.run_reader import read_note, read_summary, read_tags
from engine.run_validate import CURVE_POINTS
from engine.run_writer import writer_alive
from engine.safe_io import atomic_write_json, file_identity

# The keys of a summary, in the order they are written. `sources` and `format_version` are
# bookkeeping; everything else is a fact about the run.
SUMMARY_KEYS = (
    "id", "name", "status", "error", "dataset", "created", "finished", "epochs_done", "epochs_planned",
    "best_test_acc", "best_epoch", "final_test_acc", "final_test_loss", "final_train_acc", "final_train_loss",
    "used_lr", "duration_seconds", "train_seconds", "device", "fingerprint", "tags", "note", "sweep", "config",
    "test_acc_curve", "damaged", "warnings", "format_version", "sources",
)
BOOKKEEPING = ("format_version", "sources")


def source_stamps(run_dir: Path) -> dict[str, list[int] | None]:
    """{file: [mtime_ns, size, inode] or None when absent} for each file a summary is built from."""
    folder = os.fspath(run_dir)  # plain strings: pathlib costs more than the stat itself here
    stamps = {}
    for name in SUMMARY_SOURCES:
        found = file_identity(f"{folder}/{name}")
        stamps[name] = None if found is None else list(found)
    return stamps


def short_curve(values: Sequence[float | None], points: int = CURVE_POINTS) -> list[float | None]:
    """At most `points` values, evenly spaced, the first and the last kept; rounded to 4 digits."""
    values = list(values)
    if len(values) > points:
        last = len(values) - 1
        values = [values[round(i * last / (points - 1))] for i in range(points)]
    return [None if v is None else round(v, 4) for v in values]


def build_summary(run_dir: Path, stamps: dict[str, list[int] | None] | None = None) -> dict:
    """The summary of a run, read from its files. Pass the stamps taken *before* reading (the
    default takes them first): a file that changes meanwhile then makes the summary stale, never
    wrongly fresh. Never raises for damaged content: damage is named in `damaged` / `warnings`."""
    path = Path(run_dir)
    stamps = source_stamps(path) if stamps is None else stamps
    run = runs.load_run(path)
    tags, tag_problems = read_tags(path)
    note, note_problems = read_note(path)
    problems = list(run.problems) + [p for p in tag_problems + note_problems if p not in run.problems]
    base = run.summary()
    last = run.epochs[-1] if run.epochs else {}
    summary = {
        "id": run.id, "name": run.name, "status": run.status, "error": run.error, "dataset": run.dataset_name,
        "created": run.created, "finished": run.finished, "epochs_done": len(run.epochs),
        "epochs_planned": run.epochs_planned, "best_test_acc": base["best_test_acc"], "best_epoch": base["best_epoch"],
        "final_test_acc": last.get("test_acc"), "final_test_loss": last.get("test_loss"),
        "final_train_acc": last.get("train_acc"), "final_train_loss": last.get("train_loss"),
        "used_lr": run.used_lr, "duration_seconds": base["duration_seconds"], "train_seconds": base["train_seconds"],
        "device": run.device_name, "fingerprint": run.fingerprint, "tags": tags, "note": note,
        "sweep": (run.meta.get("sweep") or {}).get("id"),  # the sweep's id (run.json's sweep record), or None
        "config": run.config, "test_acc_curve": short_curve([row.get("test_acc") for row in run.epochs]),
        "damaged": sorted({p.file for p in problems if p.damage}), "warnings": [str(p) for p in problems],
        "format_version": FORMAT_VERSION, "sources": stamps,
    }
    return {key: summary[key] for key in SUMMARY_KEYS}


def write_summary(run_dir: Path) -> dict:
    """Build the summary and write it atomically; returns it. The writer calls this."""
    summary = build_summary(run_dir)
    atomic_write_json(Path(run_dir) / SUMMARY_JSON, summary)
    return summary


def staleness(run_dir: Path, summary: dict, stamps: dict[str, list[int] | None] | None = None) -> str | None:
    """Why `summary` no longer describes the run in `run_dir`, or None while it does. `stamps`
    are the current source stamps (taken here when not given)."""
    path = Path(run_dir)
    if summary.get("format_version") != FORMAT_VERSION:
        return f"written by format version {summary.get('format_version')}, not {FORMAT_VERSION}"
    if summary.get("id") != path.name:
        return f"describes {summary.get('id')!r}, not this folder"
    recorded = summary.get("sources")
    if not isinstance(recorded, dict):
        return "records no source stamps"
    stamps = source_stamps(path) if stamps is None else stamps
    changed = [name for name in SUMMARY_SOURCES if recorded.get(name) != stamps[name]]
    if changed:
        return f"older than {', '.join(changed)}"
    if summary.get("status") == Status.RUNNING and not writer_alive(path):
        return "says running, but no process holds the run's lock"
    return None


def stored_summary_state(run_dir: Path) -> str | None:
    """Why the stored summary.json cannot be used as it is (missing, damaged, stale), or None."""
    path = Path(run_dir)
    stamps = source_stamps(path)
    stored, why = read_summary(path)
    if stored is None:
        return why if why == "missing" else f"damaged: {why}"
    return staleness(path, stored, stamps)


def summary_of(run_dir: Path, write_back: bool = True) -> dict:
    """The run's summary: summary.json while it is fresh, else rebuilt from the run's files.

    A rebuilt summary is written back (atomically, best-effort) unless a live writer owns the
    run, which rewrites it itself. Never raises for damaged content."""
    path = Path(run_dir)
    stamps = source_stamps(path)  # before reading anything
    stored, _ = read_summary(path)
    if stored is not None and staleness(path, stored, stamps) is None:
        return stored
    summary = build_summary(path, stamps)
    # not running: no live writer at load time; no run.json: a folder being created, nothing to keep
    if write_back and summary["status"] != Status.RUNNING and stamps[RUN_JSON] is not None:
        try:
            atomic_write_json(path / SUMMARY_JSON, summary)
        except OSError:  # a read-only folder, or the run moved meanwhile: the summary stays derived
            pass
    return summary


def public(summary: dict) -> dict:
    """The summary without its bookkeeping (`sources`, `format_version`): for `list --json`."""
    return {key: value for key, value in summary.items() if key not in BOOKKEEPING}
