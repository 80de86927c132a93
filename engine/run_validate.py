"""Checks for every value read from a run folder: types, ranges and shapes, once, at the boundary.

Each check returns a clean value plus a list of problems (plain sentences, without the file's
name: engine/run_reader.py adds it). A bad field is dropped, a bad row is dropped, a bad array
makes its whole file unusable; nothing here raises for bad content.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from engine.config import TrainConfig
from engine.run_layout import STATUSES, SUMMARY_SOURCES, Status

PREDICTION_KEYS = ("index", "label", "pred", "confidence", "probs", "loss")
MAX_TEXT = 64 * 1024  # longest string kept from any JSON field (an error message, a command)
MAX_INT = 2**63 - 1


class Bad(ValueError):
    """One value that failed its check; the message says what was expected."""


Check = Callable[[Any], Any]  # returns the clean value or raises Bad


def shown(value: Any) -> str:
    """A short, single-line picture of a bad value for a warning."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text.encode("unicode_escape").decode("ascii")


def integer(lo: int = -MAX_INT, hi: int = MAX_INT) -> Check:
    def check(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise Bad(f"an integer in [{lo}, {hi}]" if hi < MAX_INT else f"an integer >= {lo}")
        return int(v)
    return check


def number(lo: float = -math.inf, hi: float = math.inf, above: float | None = None) -> Check:
    def check(v: Any) -> float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok and isinstance(v, int):
            ok = abs(v) <= 2**53
        if ok:
            v = float(v)
            ok = math.isfinite(v) and lo <= v <= hi and (above is None or v > above)
        if not ok:
            return _bad_number(lo, hi, above)
        return v
    return check


def _bad_number(lo: float, hi: float, above: float | None) -> typing.NoReturn:
    if above is not None:
        raise Bad(f"a finite number above {above:g}")
    if math.isinf(lo) and math.isinf(hi):
        raise Bad("a finite number")
    raise Bad(f"a finite number in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f"a finite number >= {lo:g}")


def text(max_len: int = MAX_TEXT) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or len(v) > max_len:
            raise Bad(f"a string of at most {max_len} characters")
        return v
    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Bad("true or false")
    return v


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            raise Bad(f"one of {', '.join(choices)}")
        return v
    return check


def timestamp(v: Any) -> str:
    try:
        datetime.fromisoformat(text(64)(v))
    except (Bad, ValueError):
        raise Bad("an ISO 8601 time") from None
    return v


def list_of(item: Check, max_len: int = 1_000_000, length: int | None = None) -> Check:
    def check(v: Any) -> list:
        size = f"{length}" if length is not None else f"at most {max_len}"
        if not isinstance(v, list) or len(v) > max_len or (length is not None and len(v) != length):
            raise Bad(f"a list of {size} items")
        try:
            return [item(x) for x in v]
        except Bad as exc:
            raise Bad(f"a list of {size} items, each {exc}") from None
    return check


def nullable(check: Check) -> Check:
    def maybe(v: Any) -> Any:
        return None if v is None else check(v)
    return maybe


def scalar(v: Any) -> Any:
    """Any JSON scalar: a short string, a finite number, a bool or null."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        return text()(v)
    return number()(v) if isinstance(v, float) else integer()(v)


def fields(obj: Any, schema: Mapping[str, Check], keep_unknown: Check | None = None) -> tuple[dict | None, list[str]]:
    """Check an object field by field: a bad field is dropped with a problem; unknown keys are
    dropped, or kept when `keep_unknown` accepts them. Not an object: (None, [problem])."""
    if not isinstance(obj, dict):
        return None, [f"holds {type(obj).__name__}, not an object"]
    clean, problems = {}, []
    for key, value in obj.items():
        check = schema.get(key, keep_unknown)
        if check is None:
            continue
        try:
            clean[key] = check(value)
        except Bad as exc:
            problems.append(f"{shown(key)} is {shown(value)}, not {exc}")
    return clean, problems


# ---------------------------------------------------------------- the JSON files

def _params(v: Any) -> dict:
    if not isinstance(v, dict):
        raise Bad("an object of config fields and values")
    return {text(256)(k): scalar(x) for k, x in v.items()}


_SWEEP_RECORD = {"id": text(256), "name": text(1024), "trial": integer(1, 1_000_000), "params": _params,
                 "seed": integer()}


def sweep_record(v: Any) -> dict:
    """run.json's `sweep` (engine/sweep_plan.py): the sweep's id and name, the trial's number, its
    swept parameters (field -> scalar) and its seed; all of it or none."""
    clean, problems = fields(v, _SWEEP_RECORD)
    if clean is None or problems or set(clean) != set(_SWEEP_RECORD):
        raise Bad("a sweep record (id, name, trial, params, seed)")
    return clean


_PLAN = {"batch_size": integer(1), "processes": integer(1), "steps_per_epoch": integer(1),
         "epochs": integer(1, 1_000_000), "total_steps": integer(1), "warmup_steps": integer(0),
         "max_lr": nullable(number(above=0))}


def plan_record(v: Any) -> dict:
    """run.json's `plan` (engine/training_plan.py): every field sound, or none of it."""
    clean, problems = fields(v, _PLAN)
    if clean is None or problems or set(clean) != set(_PLAN):
        raise Bad("a training plan (" + ", ".join(_PLAN) + ")")
    return clean


META = {
    "format_version": integer(1), "id": text(256), "name": text(1024), "status": one_of(*STATUSES),
    "created": timestamp, "finished": nullable(timestamp), "error": nullable(text()),
    "epochs_planned": integer(1, 1_000_000), "host": nullable(text(1024)), "pid": nullable(integer(0)),
    "resumed": integer(0), "sweep": nullable(sweep_record), "plan": plan_record,
}

ENVIRONMENT = {
    **{k: nullable(text(1024)) for k in ("python", "torch", "torchvision", "platform", "hostname", "device",
                                         "device_name", "cuda", "git_commit")},
    "cudnn": nullable(integer(0)), "cpu_threads": nullable(integer(0)), "world_size": nullable(integer(1)),
    "command": list_of(text(), 10_000),
}

_shape = list_of(integer(1, 1_000_000), 8)

DATASET = {
    "name": text(4096), "classes": list_of(text(1024), 100_000), "num_classes": integer(1, 100_000),
    "train_size": integer(0), "test_size": integer(0), "image_shape": list_of(integer(1, 4096), 3, length=3),
    "mean": list_of(number(), 4), "std": list_of(number(above=0), 4), "fingerprint": text(128),
}

_layer = {"name": text(1024), "type": text(1024), "depth": integer(0, 1000), "output_shape": nullable(_shape),
          "params": integer(0), "mult_adds": integer(0)}


def _layers(v: Any) -> list[dict]:
    rows = list_of(lambda row: row, 100_000)(v)
    out = []
    for row in rows:  # exactly the keys the engine writes: a row missing one, or with others, is not a layer
        clean, problems = fields(row, _layer)
        if clean is None or problems or set(row) != set(_layer):
            raise Bad("a list of layer rows (name, type, depth, output_shape, params, mult_adds)")
        out.append(clean)
    return out


MODEL_SUMMARY = {"input_shape": _shape, "total_params": integer(0), "trainable_params": integer(0),
                 "total_mult_adds": integer(0), "layers": _layers}

_curve = list_of(nullable(number()))
def _object(v: Any) -> dict:
    if not isinstance(v, dict) or len(v) > 16:
        raise Bad("an object of at most 16 suggestions")
    return v


def _suggestion(v: Any) -> dict:
    """One named suggestion of lr_finder.json: its `lr` and its `index` into the curve."""
    clean, problems = fields(v, {"lr": number(above=0), "index": integer(0)})
    if clean is None or problems or len(clean) != 2:
        raise Bad("a suggestion (lr, index)")
    return clean


LR_FINDER = {
    "lr": list_of(nullable(number(above=0))), "loss": _curve, "smoothed_loss": _curve,
    "suggested_lr": nullable(number(above=0)), "suggestion_index": nullable(integer(0)),
    "method": text(1024), "diverged": boolean, "used_lr": nullable(number(above=0)),
    "start_lr": number(above=0), "end_lr": number(above=0), "num_iter": integer(1),
    "suggestions": lambda v: {text(64)(name): _suggestion(x) for name, x in _object(v).items()},
    "warnings": list_of(text(1024), 16),
}


def lr_finder(obj: Any) -> tuple[dict | None, list[str]]:
    """The range-test curve: lr, loss and smoothed_loss must have one point each per iteration."""
    clean, problems = fields(obj, LR_FINDER)
    if clean is None:
        return None, problems
    lengths = {k: len(clean[k]) for k in ("lr", "loss", "smoothed_loss") if k in clean}
    if len(set(lengths.values())) > 1 or (lengths and "lr" not in lengths):
        problems.append(f"the curve's lists differ in length ({lengths}); curve dropped")
        for key in lengths:
            clean.pop(key)
    index = clean.get("suggestion_index")
    if index is not None and index >= len(clean.get("lr", [])):
        problems.append(f"suggestion_index {index} lies outside the curve; dropped")
        clean.pop("suggestion_index")
    return clean, problems


def _config_check(hint: Any) -> Check:
    args = typing.get_args(hint)
    base = next((a for a in args if a is not type(None)), hint)
    check = {bool: boolean, int: integer(), float: number(), str: text(4096)}.get(base, scalar)
    return nullable(check) if type(None) in args else check


CONFIG = {f.name: _config_check(typing.get_type_hints(TrainConfig)[f.name]) for f in dataclasses.fields(TrainConfig)}
CONFIG.update(width=integer(1, 100_000), epochs=integer(1, 1_000_000), batch_size=integer(1),
              eval_batch_size=integer(1), lr=nullable(number(above=0)), seed=integer())


def config(obj: Any) -> tuple[dict | None, list[str]]:
    """The saved config: known fields by their type in TrainConfig; other keys (another
    version's fields) kept only when they are plain scalars."""
    return fields(obj, CONFIG, keep_unknown=scalar)


def dataset(obj: Any) -> tuple[dict | None, list[str]]:
    clean, problems = fields(obj, DATASET)
    if clean is None:
        return None, problems
    classes, count = clean.get("classes"), clean.get("num_classes")
    if classes is not None and count is not None and len(classes) != count:
        problems.append(f"num_classes is {count} but classes lists {len(classes)}; trusting neither")
        clean.pop("classes")
        clean.pop("num_classes")
    elif classes is not None:
        clean["num_classes"] = len(classes)
    channels = (clean.get("image_shape") or [None] * 3)[2]
    for key in ("mean", "std"):
        if key in clean and channels is not None and len(clean[key]) != channels:
            problems.append(f"{key} has {len(clean[key])} values for {channels} channels; dropped")
            clean.pop(key)
    return clean, problems


# ---------------------------------------------------------------- a person's tags and note

# A tag: a letter, digit or `_`, then those or `.:/@-`; at most 64 characters. No spaces, commas
# or a leading `+` / `-`, which `resnet-runs tag RUN +add -remove` reads as operations.
TAG_PATTERN = re.compile(r"\w[\w.:/@-]{0,63}\Z")
MAX_TAGS = 100
NOTE_MAX_CHARS = 16_384


def tag(v: Any) -> str:
    if not isinstance(v, str) or TAG_PATTERN.match(v) is None:
        raise Bad("a tag (a letter, digit or _, then those or .:/@-; at most 64 characters)")
    return v


def tags(obj: Any) -> tuple[list[str] | None, list[str]]:
    """tags.json: a list of distinct tags; a bad one is dropped, past MAX_TAGS the rest too."""
    if not isinstance(obj, list):
        return None, [f"holds {type(obj).__name__}, not a list of tags"]
    clean, problems = [], []
    for value in obj:
        try:
            value = tag(value)
        except Bad as exc:
            problems.append(f"{shown(value)} is not {exc}; dropped")
            continue
        if value not in clean:
            clean.append(value)
    if len(clean) > MAX_TAGS:
        problems.append(f"{len(clean)} tags, more than {MAX_TAGS}; the rest dropped")
        clean = clean[:MAX_TAGS]
    return clean, problems


def note(value: str) -> tuple[str | None, list[str]]:
    if len(value) > NOTE_MAX_CHARS:
        return None, [f"holds {len(value)} characters, more than {NOTE_MAX_CHARS}"]
    return value, []


# ---------------------------------------------------------------- summary.json

_stamp = nullable(list_of(integer(0), length=3))


def _sources(v: Any) -> dict:
    if not isinstance(v, dict) or set(v) != set(SUMMARY_SOURCES):
        raise Bad(f"an object with exactly the keys {', '.join(SUMMARY_SOURCES)}")
    return {k: _stamp(s) for k, s in v.items()}


def _whole_config(v: Any) -> dict:
    clean, problems = config(v)
    if clean is None or problems:
        raise Bad("a valid config")
    return clean


def _sweep(v: Any) -> Any:
    """Null for now (issue 20 will name a run's sweep): a scalar or an object of scalars."""
    if isinstance(v, dict):
        return {text(256)(k): scalar(x) for k, x in v.items()}
    return scalar(v)


CURVE_POINTS = 100  # the summary's test-accuracy curve is cut down to at most this many points
SUMMARY = {
    "format_version": integer(1), "id": text(256), "name": text(1024), "status": one_of(*Status),
    "error": nullable(text()), "dataset": nullable(text(4096)), "created": nullable(timestamp),
    "finished": nullable(timestamp), "epochs_done": integer(0), "epochs_planned": nullable(integer(1, 1_000_000)),
    "best_test_acc": nullable(number(0, 1)), "best_epoch": nullable(integer(1, 1_000_000)),
    "final_test_acc": nullable(number(0, 1)), "final_test_loss": nullable(number(0)),
    "final_train_acc": nullable(number(0, 1)), "final_train_loss": nullable(number(0)),
    "used_lr": nullable(number(above=0)), "duration_seconds": nullable(number()), "train_seconds": nullable(number(0)),
    "device": nullable(text(1024)), "fingerprint": nullable(text(128)), "config": nullable(_whole_config),
    "tags": list_of(tag, MAX_TAGS), "note": text(NOTE_MAX_CHARS), "sweep": _sweep,
    "test_acc_curve": list_of(nullable(number(0, 1)), CURVE_POINTS), "damaged": list_of(text(1024), 1000),
    "warnings": list_of(text(), 1000), "sources": _sources,
}


def summary(obj: Any) -> tuple[dict | None, str | None]:
    """summary.json is derived, so it is used whole or not at all: (the summary, None), or
    (None, what is wrong) and the caller rebuilds it from the run's files."""
    clean, problems = fields(obj, SUMMARY)
    if clean is None:
        return None, problems[0]
    missing = [k for k in SUMMARY if k not in obj]
    if problems or missing:
        return None, problems[0] if problems else f"lacks {', '.join(missing)}"
    return clean, None


# ---------------------------------------------------------------- the JSON-lines rows

_acc, _nonneg = nullable(number(0, 1)), nullable(number(0))
EPOCH_ROW = {
    "epoch": integer(1, 1_000_000), "step": nullable(integer(0)), "lr_start": _nonneg, "lr_end": _nonneg,
    "train_loss": _nonneg, "train_acc": _acc, "test_loss": _nonneg, "test_acc": _acc, "seconds": _nonneg,
    "train_seconds": _nonneg, "images_per_s": _nonneg, "compile_seconds": _nonneg,
}
STEP_ROW = {"step": integer(1), "epoch": integer(1, 1_000_000), "loss": nullable(number()), "lr": _nonneg}


LR_FINDER_STEP_ROW = {"step": integer(1), "lr": number(above=0), "loss": nullable(number())}


def rows(parsed: list[Any], schema: Mapping[str, Check], key: str,
         required: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """Rows of a JSON-lines file: a row whose `key` (or a `required` field) is bad or missing, or
    whose `key` does not increase, is dropped; a bad optional field in a good row is dropped alone."""
    out, problems, last = [], [], 0
    for number_, row in enumerate(parsed, 1):
        clean, bad = fields(row, schema)
        lacking = [k for k in (key, *required) if clean is None or k not in clean]
        if lacking:
            why = next((b for b in bad if b.startswith(shown(lacking[0]))), bad[0] if bad else f"no {lacking[0]}")
            problems.append(f"line {number_} dropped ({why})")
            continue
        if clean[key] <= last:
            problems.append(f"line {number_} dropped ({key} {clean[key]} does not follow {last})")
            continue
        last = clean[key]
        problems.extend(f"line {number_}: {p}; field dropped" for p in bad)
        out.append(clean)
    return out, problems


# ---------------------------------------------------------------- arrays


def predictions(arrays: dict[str, np.ndarray], num_classes: int | None,
                num_images: int | None) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """A test-set dump: equal lengths, probs (N, classes), labels and preds in range, each
    index unique and within the stored test images. Any failure drops the whole dump."""
    problem = dump_shapes({k: (a.shape, a.dtype) for k, a in arrays.items()}, num_classes)
    if problem:
        return None, [problem]
    classes = arrays["probs"].shape[1]
    index, label, pred = (arrays[k] for k in ("index", "label", "pred"))
    checks = [
        (label.size and (label.min() < 0 or label.max() >= classes), f"label outside 0..{classes - 1}"),
        (pred.size and (pred.min() < 0 or pred.max() >= classes), f"pred outside 0..{classes - 1}"),
        (index.size and index.min() < 0, "a negative index"),
        (num_images is not None and index.size and index.max() >= num_images,
         f"an index past the {num_images} stored test images"),
        (len(np.unique(index)) != len(index), "a repeated index"),
        (not all(np.isfinite(arrays[k]).all() for k in ("confidence", "probs", "loss")), "NaN or infinite values"),
    ]
    bad = [message for failed, message in checks if failed]
    if bad:
        return None, [f"holds {', '.join(bad)}; ignored"]
    ints = {k: arrays[k].astype(np.int64) for k in ("index", "label", "pred")}
    return {k: ints.get(k, arrays[k]) for k in PREDICTION_KEYS}, []


def dump_shapes(shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]], num_classes: int | None) -> str | None:
    """What is wrong with a dump's keys, dtypes and shapes (from headers alone), or None."""
    missing = [k for k in PREDICTION_KEYS if k not in shapes]
    if missing:
        return f"lacks {missing}; ignored"
    kinds = {"index": "iu", "label": "iu", "pred": "iu", "confidence": "f", "probs": "f", "loss": "f"}
    wrong = [f"{k} is {shapes[k][1]}" for k, kind in kinds.items() if shapes[k][1].kind not in kind]
    if wrong:
        return f"has the wrong dtypes ({', '.join(wrong)}); ignored"
    probs = shapes["probs"][0]
    if len(probs) != 2 or any(len(shapes[k][0]) != 1 for k in PREDICTION_KEYS if k != "probs"):
        return "has arrays of the wrong rank (probs must be (N, classes), the rest (N,)); ignored"
    lengths = {k: shapes[k][0][0] for k in PREDICTION_KEYS}
    if len(set(lengths.values())) != 1:
        return f"has arrays of different lengths ({lengths}); ignored"
    if num_classes is not None and probs[1] != num_classes:
        return f"has probs for {probs[1]} classes but the dataset has {num_classes}; ignored"
    if probs[1] < 1:
        return "has probs for no class; ignored"
    return None


def images(shape: tuple[int, ...], dtype: np.dtype, image_shape: list[int] | None, what: str) -> str | None:
    """What is wrong with an image stack's shape and dtype, or None: (N, H, W, C) uint8 with
    (H, W, C) as dataset.json declares, else (32, 32, 3)."""
    expected = tuple(image_shape) if image_shape else (32, 32, 3)
    if dtype != np.uint8 or len(shape) != 4 or tuple(shape[1:]) != expected:
        return f"{what} are {tuple(shape)} {dtype}, not (N, {', '.join(map(str, expected))}) uint8"
    return None


def train_samples(arrays: dict[str, np.ndarray], image_shape: list[int] | None,
                  num_classes: int | None) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    images_, augmented, labels = arrays["images"], arrays["augmented"], arrays["labels"]
    problem = (images(images_.shape, images_.dtype, image_shape, "images")
               or images(augmented.shape, augmented.dtype, image_shape, "augmented images"))
    if problem is None and augmented.shape != images_.shape:
        problem = "augmented and original images differ in shape"
    if problem is None and (labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images_)):
        problem = f"labels are {labels.shape} {labels.dtype}, not one integer per image"
    if problem is None and labels.size and (labels.min() < 0 or (num_classes and labels.max() >= num_classes)):
        problem = "labels lie outside the dataset's classes"
    if problem:
        return None, [f"{problem}; ignored"]
    return {"images": images_, "augmented": augmented, "labels": labels.astype(np.int64)}, []
