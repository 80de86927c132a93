"""One reader per file of a run folder, each bounded and validated (the names: engine/run_layout.py).

Every reader takes the run folder and returns `(value, problems)`: the checked value (None or
empty when the file is missing or bad) and a `Problem` per thing wrong, naming the file. Each
reader depends only on its own file (plus the small facts passed in, such as the class count),
so a cache keyed on `part_stamp(run_dir, role)` re-reads only the file that changed.
engine/runs.py builds `Run` from these and is the public face; import them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import run_validate as check
from engine.run_layout import (
    CONFIG_JSON,
    DATASET_JSON,
    ENVIRONMENT_JSON,
    EPOCHS_JSONL,
    LR_FINDER_JSON,
    LR_FINDER_STEPS_JSONL,
    MODEL_SUMMARY_JSON,
    MODEL_SUMMARY_TXT,
    NOTE_TXT,
    PREDICTION_TAGS,
    ROLES,
    RUN_JSON,
    STEPS_JSONL,
    SUMMARY_JSON,
    TAGS_JSON,
    TEST_IMAGES_NPY,
    TRAIN_SAMPLES_NPZ,
    prediction_file,
)
from engine.safe_io import (
    MiB,
    Unreadable,
    file_stamp,
    load_npy_mapped,
    load_npz,
    npy_info,
    npz_headers,
    parse_jsonl,
    read_bytes,
    read_json,
)

# The largest file each reader accepts (for .npz: the members' uncompressed sizes together).
# CIFAR-10 needs far less: its test images take 30 MB, a dump of 10,000 x 10 probs under 1 MB.
JSON_CAP = 16 * MiB
EPOCHS_CAP = 64 * MiB
STEPS_CAP = 256 * MiB
LR_FINDER_STEPS_CAP = 16 * MiB  # a row is ~60 bytes: room for 250,000 range-test steps
TEST_IMAGES_CAP = 1024 * MiB  # memory-mapped, never read whole
TRAIN_SAMPLES_CAP = 64 * MiB
PREDICTIONS_CAP = 256 * MiB
TAGS_CAP = 64 * 1024
NOTE_CAP = 4 * check.NOTE_MAX_CHARS  # UTF-8 takes at most 4 bytes a character
SUMMARY_CAP = 1 * MiB


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a run: the file (relative to the run folder) and what is wrong.
    `damage` is False for a normal state such as the unfinished last line of a live run."""

    file: str
    message: str
    damage: bool = True

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def file_stamps(run_dir: Path) -> dict[str, tuple[int, int] | None]:
    """{role: (mtime_ns, size) or None when absent} for every file a reader depends on."""
    return {role: file_stamp(Path(run_dir) / name) for role, name in ROLES.items()}


def part_stamp(run_dir: Path, role: str) -> tuple[int, int] | None:
    """The stamp of one file (see ROLES): the cache key of that file's reader."""
    return file_stamp(Path(run_dir) / ROLES[role])


def _found(messages: list[str], file: str, limit: int = 3) -> list[Problem]:
    """At most `limit` problems per file, then one line counting the rest."""
    out = [Problem(file, m) for m in messages[:limit]]
    if len(messages) > limit:
        out.append(Problem(file, f"and {len(messages) - limit} more problem(s)"))
    return out


def _read_object(run_dir: Path, name: str, validate: Callable[[Any], tuple[Any, list[str]]], cap: int = JSON_CAP
                 ) -> tuple[Any, list[Problem]]:
    path = Path(run_dir) / name
    if not path.exists():
        return None, []
    try:
        value, messages = validate(read_json(path, cap))
    except Unreadable as exc:
        return None, [Problem(name, f"{exc}; ignored")]
    if value is None:
        messages = [f"{m}; ignored" for m in messages]
    return value, _found(messages, name)


def read_meta(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    """run.json, checked; None (with a problem) when it is missing or not an object."""
    if not (Path(run_dir) / RUN_JSON).exists():
        return None, [Problem(RUN_JSON, "is missing")]
    return _read_object(run_dir, RUN_JSON, lambda v: check.fields(v, check.META))


def read_config(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    return _read_object(run_dir, CONFIG_JSON, check.config)


def read_environment(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    return _read_object(run_dir, ENVIRONMENT_JSON, lambda v: check.fields(v, check.ENVIRONMENT))


def read_dataset(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    return _read_object(run_dir, DATASET_JSON, check.dataset)


def read_model_summary(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    return _read_object(run_dir, MODEL_SUMMARY_JSON, lambda v: check.fields(v, check.MODEL_SUMMARY))


def read_lr_finder(run_dir: Path) -> tuple[dict | None, list[Problem]]:
    return _read_object(run_dir, LR_FINDER_JSON, check.lr_finder)


def read_tags(run_dir: Path) -> tuple[list[str], list[Problem]]:
    """The run's tags (tags.json), checked; [] when there are none."""
    tags, problems = _read_object(run_dir, TAGS_JSON, check.tags, TAGS_CAP)
    return tags or [], problems


def read_note(run_dir: Path) -> tuple[str, list[Problem]]:
    """The run's note (note.txt, UTF-8 text); "" when there is none."""
    text, problems = _read_text(run_dir, NOTE_TXT, NOTE_CAP)
    if text is None:
        return "", problems
    text, messages = check.note(text)
    return text or "", problems + [Problem(NOTE_TXT, f"{m}; ignored") for m in messages]


def read_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """summary.json as stored, checked whole: (summary, None), or (None, why it cannot be used:
    missing or damaged). Whether it is still fresh is engine/run_summary.py's question."""
    path = Path(run_dir) / SUMMARY_JSON
    if not path.exists():
        return None, "missing"
    try:
        return check.summary(read_json(path, SUMMARY_CAP))
    except Unreadable as exc:
        return None, str(exc)


def _read_text(run_dir: Path, name: str, cap: int) -> tuple[str | None, list[Problem]]:
    path = Path(run_dir) / name
    if not path.exists():
        return None, []
    try:
        return read_bytes(path, cap).decode("utf-8"), []
    except Unreadable as exc:
        return None, [Problem(name, f"{exc}; ignored")]
    except UnicodeDecodeError:
        return None, [Problem(name, "is not UTF-8 text; ignored")]


def read_model_summary_text(run_dir: Path) -> tuple[str | None, list[Problem]]:
    return _read_text(run_dir, MODEL_SUMMARY_TXT, JSON_CAP)


def _read_rows(run_dir: Path, name: str, cap: int, schema: dict, key: str, required: tuple[str, ...] = ()
               ) -> tuple[list[dict], list[Problem]]:
    path = Path(run_dir) / name
    if not path.exists():
        return [], []
    try:
        parsed, bad, unfinished = parse_jsonl(read_bytes(path, cap))
    except Unreadable as exc:
        return [], [Problem(name, f"{exc}; ignored")]
    rows, messages = check.rows(parsed, schema, key, required)
    problems = [Problem(name, f"{bad} damaged line(s) skipped")] if bad else []
    problems += _found(messages, name)
    if unfinished:  # a live writer's next line, or the cut line of a killed one: both normal
        problems.append(Problem(name, "an unfinished last line was ignored", damage=False))
    return rows, problems


def read_epochs(run_dir: Path) -> tuple[list[dict], list[Problem]]:
    """One checked row per completed epoch, in epoch order."""
    return _read_rows(run_dir, EPOCHS_JSONL, EPOCHS_CAP, check.EPOCH_ROW, "epoch")


def read_steps(run_dir: Path) -> tuple[list[dict], list[Problem]]:
    """The per-step rows (the largest JSON file: read on demand)."""
    return _read_rows(run_dir, STEPS_JSONL, STEPS_CAP, check.STEP_ROW, "step")


def read_lr_finder_steps(run_dir: Path) -> tuple[list[dict], list[Problem]]:
    """The range test's progress rows (step, lr, loss), written while it runs; lr_finder.json
    holds the finished curve."""
    return _read_rows(run_dir, LR_FINDER_STEPS_JSONL, LR_FINDER_STEPS_CAP, check.LR_FINDER_STEP_ROW, "step",
                      required=("lr",))


def stored_images_shape(run_dir: Path, image_shape: list[int] | None = None
                      ) -> tuple[tuple[int, ...] | None, list[Problem]]:
    """The stored test images' shape from the .npy header alone (cheap), checked."""
    path = Path(run_dir) / TEST_IMAGES_NPY
    if not path.exists():
        return None, []
    try:
        shape, dtype, _ = npy_info(path, TEST_IMAGES_CAP)
    except Unreadable as exc:
        return None, [Problem(TEST_IMAGES_NPY, f"{exc}; ignored")]
    wrong = check.images(shape, dtype, image_shape, "the images")
    return (None, [Problem(TEST_IMAGES_NPY, f"{wrong}; ignored")]) if wrong else (shape, [])


def read_test_images(run_dir: Path, image_shape: list[int] | None = None) -> tuple[np.ndarray | None, list[Problem]]:
    """The test set as uint8 (N, H, W, C), memory-mapped (nothing is read until indexed)."""
    shape, problems = stored_images_shape(run_dir, image_shape)
    if shape is None:
        return None, problems
    try:
        return load_npy_mapped(Path(run_dir) / TEST_IMAGES_NPY, TEST_IMAGES_CAP), []
    except Unreadable as exc:
        return None, [Problem(TEST_IMAGES_NPY, f"{exc}; ignored")]


def read_train_samples(run_dir: Path, image_shape: list[int] | None = None, num_classes: int | None = None
                       ) -> tuple[dict[str, np.ndarray] | None, list[Problem]]:
    """A few training images: `images` (originals), `augmented`, `labels`."""
    path = Path(run_dir) / TRAIN_SAMPLES_NPZ
    if not path.exists():
        return None, []
    try:
        arrays = load_npz(path, TRAIN_SAMPLES_CAP, ("images", "augmented", "labels"))
    except Unreadable as exc:
        return None, [Problem(TRAIN_SAMPLES_NPZ, f"{exc}; ignored")]
    value, messages = check.train_samples(arrays, image_shape, num_classes)
    return value, _found(messages, TRAIN_SAMPLES_NPZ)


def check_train_samples_header(run_dir: Path, image_shape: list[int] | None = None) -> list[Problem]:
    """A cheap check of the samples' zip directory and array headers (see check_prediction_header)."""
    path = Path(run_dir) / TRAIN_SAMPLES_NPZ
    if not path.exists():
        return []
    try:
        headers = npz_headers(path, TRAIN_SAMPLES_CAP)
    except Unreadable as exc:
        return [Problem(TRAIN_SAMPLES_NPZ, f"{exc}; ignored")]
    missing = [k for k in ("images", "augmented", "labels") if k not in headers]
    wrong = (f"lacks {missing}" if missing else check.images(*headers["images"], image_shape, "images")
             or check.images(*headers["augmented"], image_shape, "augmented images"))
    return [Problem(TRAIN_SAMPLES_NPZ, f"{wrong}; ignored")] if wrong else []


def check_prediction_header(run_dir: Path, tag: str, num_classes: int | None = None) -> list[Problem]:
    """A cheap check of a dump (zip directory and array headers only), so a run's summary
    can flag a damaged dump without reading it."""
    name = prediction_file(tag)
    path = Path(run_dir) / name
    if tag not in PREDICTION_TAGS or not path.exists():
        return []
    try:
        problem = check.dump_shapes(npz_headers(path, PREDICTIONS_CAP), num_classes)
    except Unreadable as exc:
        problem = f"{exc}; ignored"
    return [Problem(name, problem)] if problem else []


def read_predictions(run_dir: Path, tag: str, num_classes: int | None = None, num_images: int | None = None
                     ) -> tuple[dict[str, np.ndarray] | None, list[Problem]]:
    """The test-set dump for `tag`, every array checked, labels and predictions against the
    class count and indices against the number of stored test images (when known)."""
    name = prediction_file(tag)
    path = Path(run_dir) / name
    if tag not in PREDICTION_TAGS or not path.exists():
        return None, []
    try:
        arrays = load_npz(path, PREDICTIONS_CAP, check.PREDICTION_KEYS)
    except Unreadable as exc:
        return None, [Problem(name, f"{exc}; ignored")]
    value, messages = check.predictions(arrays, num_classes, num_images)
    return value, _found(messages, name)
