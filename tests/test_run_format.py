"""The run format: every value read is checked, a bad file is a named warning (never an
exception), the writer's lock survives readers' probes, and ids are parsed in one place."""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import runs
from engine.config import TrainConfig
from engine.run_validate import EPOCH_ROW, LR_FINDER_STEP_ROW, STATUSES, STEP_ROW
from engine.safe_io import atomic_write_json

CLASSES = ["cat", "dog", "ship"]
N_TEST = 6
EXAMPLES = settings(max_examples=40, deadline=None)


def make_run(root: Path, name: str = "synthetic") -> Path:
    """A small but complete run written through the real RunWriter (no training needed)."""
    rng = np.random.default_rng(0)
    writer = runs.RunWriter.create(root, name, epochs_planned=2)
    writer.write_config({**TrainConfig().to_dict(), "width": 4, "epochs": 2})
    writer.write_environment({"python": "3.12", "torch": "2.x", "device": "cpu", "device_name": "CPU", "cpu_threads": 2,
                              "world_size": 1, "command": ["resnet-runs", "train"]})
    writer.write_dataset({"name": "toy", "classes": CLASSES, "num_classes": 3, "train_size": 8, "test_size": N_TEST,
                          "image_shape": [32, 32, 3], "mean": [0.5] * 3, "std": [0.25] * 3, "fingerprint": "ab" * 8})
    writer.write_model_summary({"input_shape": [8, 3, 32, 32], "total_params": 1000, "trainable_params": 1000,
                                "total_mult_adds": 5000, "layers": [{"name": "conv", "type": "Conv2d", "depth": 1,
                                                                     "output_shape": [8, 4, 32, 32], "params": 108,
                                                                     "mult_adds": 1000}]}, "a table\n")
    writer.write_lr_finder({"lr": [1e-3, 1e-2, 1e-1], "loss": [2.3, 2.0, 2.5], "smoothed_loss": [2.3, 2.1, 2.2],
                            "suggested_lr": 1e-2, "suggestion_index": 1, "method": "steepest", "diverged": False,
                            "used_lr": 1e-2, "start_lr": 1e-3, "end_lr": 1e-1, "num_iter": 3})
    writer.append_lr_finder_steps([{"step": 1, "lr": 1e-3, "loss": 2.3}, {"step": 2, "lr": 1e-2, "loss": 2.0}])
    writer.append_lr_finder_steps([{"step": 3, "lr": 1e-1, "loss": 2.5}])
    writer.write_test_images(rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8))
    samples = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    writer.write_train_samples(samples, samples[::-1].copy(), np.array([0, 1, 2, 0]))
    writer.append_steps([{"step": s, "epoch": 1 + (s > 2), "loss": 2.0 / s, "lr": 0.01} for s in range(1, 5)])
    for epoch, acc in ((1, 0.5), (2, 0.5)):
        writer.append_epoch({"epoch": epoch, "step": 2 * epoch, "lr_start": 0.01, "lr_end": 0.001, "train_loss": 1.0,
                             "train_acc": 0.4, "test_loss": 1.1, "test_acc": acc, "seconds": 3.0,
                             "train_seconds": 2.0, "images_per_s": 4.0})
    for tag in runs.PREDICTION_TAGS:
        writer.write_predictions(tag, valid_dump(rng))
    writer.finish("completed")
    return writer.path


def valid_dump(rng: np.random.Generator) -> dict[str, np.ndarray]:
    probs = rng.dirichlet(np.ones(len(CLASSES)), N_TEST).astype(np.float32)
    pred = probs.argmax(1)
    return {"index": np.arange(N_TEST), "label": rng.integers(0, 3, N_TEST), "pred": pred,
            "confidence": probs.max(1), "probs": probs, "loss": rng.random(N_TEST, dtype=np.float32)}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("template"))


def copy_of(template: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="case-", dir=template.parent.parent))  # under pytest's own tmp
    return Path(shutil.copytree(template, root / template.name))


def read_everything(run_dir: Path) -> runs.Run:
    """Load a run and call every accessor a page or the CLI uses; any exception fails the test."""
    run = runs.load_run(run_dir)
    for name in ("id", "name", "status", "error", "created", "finished", "epochs_planned", "class_names",
                 "num_classes", "image_shape", "dataset_name", "fingerprint", "normalisation", "device_name",
                 "width", "total_params", "used_lr", "damaged", "warnings"):
        getattr(run, name)
    run.best_epoch(), run.train_seconds(), run.duration_seconds(), run.steps(), run.model_summary_text()
    for row in run.lr_finder_steps():
        assert type(row["step"]) is int and row["step"] >= 1 and type(row["lr"]) is float and row["lr"] > 0
    for tag in runs.PREDICTION_TAGS:
        dump = run.predictions(tag)
        if dump is not None:
            check_dump(dump, run)
    images, samples = run.test_images(), run.train_samples()
    assert images is None or (images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3))
    assert samples is None or samples["labels"].max(initial=0) < (run.num_classes or 10**9)
    summary = run.summary()
    assert summary["damaged"] == run.damaged and all(isinstance(w, str) for w in summary["warnings"])
    check_types(run)
    return run


def check_types(run: runs.Run) -> None:
    """What every page may rely on without checking again."""
    assert isinstance(run.name, str) and run.status in (*STATUSES, "unknown")
    assert run.epochs_planned is None or (type(run.epochs_planned) is int and run.epochs_planned >= 1)
    assert all(run.meta.get(k) is None or isinstance(run.meta[k], str) for k in ("id", "error", "created", "host"))
    assert run.num_classes is None or (isinstance(run.num_classes, int) and run.num_classes >= 1)
    assert all(isinstance(c, str) for c in run.class_names)
    assert not run.class_names or len(run.class_names) == run.num_classes
    for row in run.epochs:
        check_row(row, "epoch")
    assert [r["epoch"] for r in run.epochs] == sorted({r["epoch"] for r in run.epochs})
    curve = run.lr_finder or {}
    assert len({len(curve[k]) for k in ("lr", "loss", "smoothed_loss") if k in curve}) <= 1
    for key in ("used_lr", "suggested_lr"):
        assert curve.get(key) is None or curve[key] > 0
    assert run.best_epoch()[1] is None or any(r["epoch"] == run.best_epoch()[1] for r in run.epochs)


def check_row(row: dict, key: str) -> None:
    """A metric row's contract: its key a positive int, accuracies fractions, times, rates and
    epoch losses non-negative, everything a finite number or None."""
    assert type(row[key]) is int and row[key] >= 1
    for field, value in row.items():
        assert value is None or (type(value) in (int, float) and math.isfinite(value)), (field, value)
        if value is not None and field.endswith("_acc"):
            assert 0 <= value <= 1, (field, value)
        elif value is not None and field != "loss":
            assert value >= 0, (field, value)


def check_dump(dump: dict, run: runs.Run) -> None:
    n, classes = len(dump["index"]), dump["probs"].shape[1]
    assert all(len(a) == n for a in dump.values()) and dump["probs"].ndim == 2
    assert run.num_classes is None or classes == run.num_classes
    for key in ("label", "pred"):
        assert dump[key].dtype == np.int64 and ((dump[key] >= 0) & (dump[key] < classes)).all()
    assert len(np.unique(dump["index"])) == n and (dump["index"] >= 0).all()
    assert run.num_test_images() is None or (dump["index"] < run.num_test_images()).all()


def named(run: runs.Run, file: str) -> bool:
    return any(p.file == file for p in run.problems)


# ---------------------------------------------------------------- JSON files, field by field

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**60, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8) | st.sampled_from(["0.97", "", "-1"])
    | st.lists(st.floats(0.001, 10), max_size=5) | st.sampled_from(list(STATUSES) + ["RUNNING"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
JSON_FILES = {runs.RUN_JSON: "meta", runs.CONFIG_JSON: "config", runs.ENVIRONMENT_JSON: "environment",
              runs.DATASET_JSON: "dataset", runs.MODEL_SUMMARY_JSON: "model_summary",
              runs.LR_FINDER_JSON: "lr_finder"}


def same(a, b) -> bool:
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, float) and a == b)


@pytest.mark.parametrize("file", sorted(JSON_FILES))
@EXAMPLES
@given(data=st.data(), value=json_values)
def test_any_value_in_any_json_field_is_checked_and_a_dropped_one_is_reported(template, file, data, value):
    run_dir = copy_of(template)
    original = json.loads((run_dir / file).read_text())
    key = data.draw(st.sampled_from(sorted(original) + ["extra"]), label="key")
    atomic_write_json(run_dir / file, {**original, key: value})
    run = read_everything(run_dir)
    loaded = getattr(run, JSON_FILES[file])
    if file == runs.RUN_JSON:
        loaded = runs.read_meta(run_dir)[0]
    written = {**original, key: value}
    loaded = loaded or {}
    changed = [k for k in written if k != "extra" and not (k in loaded and same(written[k], loaded[k]))]
    if changed:
        assert named(run, file), f"{changed} of {file} changed without a warning: {value!r} -> {run.warnings}"


@pytest.mark.parametrize("change", ["no keys", "a key missing", "a key more"])
def test_a_model_summary_layer_row_unlike_the_engines_drops_the_layers_with_a_warning(template, change):
    """Found by the property test above: a row {"": null} was read as an empty layer, silently."""
    run_dir = copy_of(template)
    summary = json.loads((run_dir / runs.MODEL_SUMMARY_JSON).read_text())
    row = summary["layers"][0]
    bad = {"no keys": {"": None}, "a key missing": {k: v for k, v in row.items() if k != "params"},
           "a key more": {**row, "colour": "red"}}[change]
    atomic_write_json(run_dir / runs.MODEL_SUMMARY_JSON, {**summary, "layers": [bad, *summary["layers"][1:]]})
    run = read_everything(run_dir)
    assert "layers" not in run.model_summary and named(run, runs.MODEL_SUMMARY_JSON)
    assert run.model_summary["total_params"] == summary["total_params"]  # the rest is kept


@pytest.mark.parametrize("file", sorted(JSON_FILES))
@settings(max_examples=10, deadline=None)
@given(value=json_values)
def test_a_json_file_holding_anything_but_an_object_is_reported(template, file, value):
    run_dir = copy_of(template)
    atomic_write_json(run_dir / file, value if not isinstance(value, dict) else [value])
    run = read_everything(run_dir)
    assert named(run, file) and file in run.summary()["damaged"]


def test_the_examples_from_the_issue_are_warnings_naming_their_files(template):
    run_dir = copy_of(template)
    with open(run_dir / runs.EPOCHS_JSONL, "a") as handle:
        handle.write('{"epoch": 3, "test_acc": "0.97"}\n{"epoch": -1, "test_acc": 0.9}\n')
    dataset = json.loads((run_dir / runs.DATASET_JSON).read_text())
    atomic_write_json(run_dir / runs.DATASET_JSON, {**dataset, "classes": 7})
    run = read_everything(run_dir)
    assert [r["epoch"] for r in run.epochs] == [1, 2, 3] and "test_acc" not in run.epochs[2]
    assert run.damaged == [runs.DATASET_JSON, runs.EPOCHS_JSONL]
    assert any("'test_acc' is '0.97'" in w and w.startswith(runs.EPOCHS_JSONL) for w in run.warnings)
    assert run.class_names == [] and run.num_classes == 3  # the count alone is still sound


# ---------------------------------------------------------------- JSON-lines rows

row_values = json_values | st.floats(min_value=-10, max_value=10) | st.integers(min_value=-3, max_value=30)


ROW_FILES = {runs.EPOCHS_JSONL: (EPOCH_ROW, "epoch", lambda run: run.epochs),
             runs.STEPS_JSONL: (STEP_ROW, "step", lambda run: run.steps()),
             runs.LR_FINDER_STEPS_JSONL: (LR_FINDER_STEP_ROW, "step", lambda run: run.lr_finder_steps())}


@pytest.mark.parametrize("file", list(ROW_FILES))
@EXAMPLES
@given(data=st.data())
def test_any_rows_give_checked_rows_and_every_dropped_row_or_field_is_reported(template, file, data):
    schema, key, read = ROW_FILES[file]
    keys = sorted(schema) + ["other"]
    rows = data.draw(st.lists(st.dictionaries(st.sampled_from(keys), row_values, max_size=5)
                              | json_values, max_size=6), label="rows")
    for number, row in enumerate(rows, 1):  # most rows get a sound key, so their other fields are what is tested
        if isinstance(row, dict) and data.draw(st.booleans(), label="sound key"):
            row[key] = number
    run_dir = copy_of(template)
    (run_dir / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = read_everything(run_dir)
    got = read(run)
    objects = [r for r in rows if isinstance(r, dict)]
    fields_written = sum(len(set(r) & set(schema)) for r in objects)
    if len(objects) < len(rows) or len(got) < len(objects) or sum(map(len, got)) < fields_written:
        assert named(run, file), f"rows of {file} were dropped silently: {rows} -> {got}"
    for row in got:
        check_row(row, key)


def test_a_bad_range_test_row_is_dropped_and_named_and_the_rest_kept(template):
    run_dir = copy_of(template)
    good = [{"step": 1, "lr": 1e-3, "loss": 2.3}, {"step": 5, "lr": 0.1, "loss": None}]
    bad = [{"step": 2, "lr": "0.1", "loss": 2.1}, {"step": 3, "lr": -0.01, "loss": 2.0},
           {"step": 0, "lr": 0.01, "loss": 2.0}]
    (run_dir / runs.LR_FINDER_STEPS_JSONL).write_text("".join(json.dumps(r) + "\n" for r in [good[0], *bad, good[1]]))
    run = runs.load_run(run_dir)
    assert run.lr_finder_steps() == good
    assert [str(p) for p in run.problems if p.file == runs.LR_FINDER_STEPS_JSONL] == [
        f"{runs.LR_FINDER_STEPS_JSONL}: line 2 dropped ('lr' is '0.1', not a finite number above 0)",
        f"{runs.LR_FINDER_STEPS_JSONL}: line 3 dropped ('lr' is -0.01, not a finite number above 0)",
        f"{runs.LR_FINDER_STEPS_JSONL}: line 4 dropped ('step' is 0, not an integer >= 1)"]


# ---------------------------------------------------------------- prediction dumps

DTYPES = [np.int8, np.int64, np.uint8, np.float16, np.float32, np.float64, np.bool_, np.complex64]


@st.composite
def damaged_dumps(draw) -> dict[str, np.ndarray]:
    dump = valid_dump(np.random.default_rng(draw(st.integers(0, 100))))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(dump)))
        how = draw(st.sampled_from(["values", "dtype", "shape", "length", "drop"]))
        if how == "values" and dump[key].size:
            dump[key] = dump[key].copy()
            dtype = dump[key].dtype
            bad = ([-1, 3, 5, 10**6, np.nan, np.inf] if dtype.kind in "fc" else
                   [v for v in (-1, 3, 5, 10**6) if np.iinfo(dtype).min <= v <= np.iinfo(dtype).max]
                   if dtype.kind in "iu" else [])
            if bad:  # only values the array's dtype can hold (an earlier "dtype" step may have narrowed it)
                dump[key].flat[draw(st.integers(0, dump[key].size - 1))] = draw(st.sampled_from(bad))
        elif how == "dtype":
            dump[key] = dump[key].astype(draw(st.sampled_from(DTYPES)))
        elif how == "shape":
            dump[key] = dump[key].reshape(-1) if dump[key].ndim == 2 else np.stack([dump[key]] * 2, 1)
        elif how == "length":
            dump[key] = dump[key][: draw(st.integers(0, N_TEST - 1))]
        else:
            del dump[key]
    return dump


@EXAMPLES
@given(tag=st.sampled_from(runs.PREDICTION_TAGS), dump=damaged_dumps())
def test_any_damaged_dump_is_refused_or_passes_every_check_and_a_refusal_names_the_file(template, tag, dump):
    run_dir = copy_of(template)
    np.savez(run_dir / runs.PREDICTIONS_DIR / f"{tag}.npz", **dump)
    run = read_everything(run_dir)
    if runs.load_run(run_dir).predictions(tag) is None:
        assert f"predictions/{tag}.npz" in run.summary()["damaged"]


@EXAMPLES
@given(key=st.sampled_from(["label", "pred", "index"]), position=st.integers(0, N_TEST - 1),
       bad=st.sampled_from([-1, 2, 3, 5, N_TEST, 10**6]), dtype=st.sampled_from([np.int64, np.int32, np.uint16]))
def test_labels_predictions_and_indices_out_of_range_are_refused(template, key, position, bad, dtype):
    run_dir = copy_of(template)
    dump = valid_dump(np.random.default_rng(3))
    dump[key] = dump[key].astype(np.int64)
    others = np.delete(dump[key], position)
    dump[key][position] = bad
    dump[key] = dump[key].astype(dtype)
    limit = N_TEST if key == "index" else len(CLASSES)
    invalid = int(dump[key][position]) >= limit or bad < 0 or (key == "index" and bad in others)
    np.savez(run_dir / "predictions" / "final.npz", **dump)
    run = read_everything(run_dir)
    assert (run.predictions("final") is None) == invalid
    assert named(run, "predictions/final.npz") == invalid


def test_a_garbage_dump_shows_in_the_summary_before_anything_reads_it(template):
    run_dir = copy_of(template)
    (run_dir / "predictions" / "final.npz").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    summary = runs.load_run(run_dir).summary()
    assert summary["damaged"] == ["predictions/final.npz"] and "not a valid .npz" in summary["warnings"][0]


def test_a_dump_for_another_class_count_is_flagged_at_load(template):
    run_dir = copy_of(template)
    dump = valid_dump(np.random.default_rng(1))
    dump["probs"] = np.ones((N_TEST, 10), np.float32) / 10
    np.savez(run_dir / "predictions" / "best.npz", **dump)
    assert runs.load_run(run_dir).summary()["damaged"] == ["predictions/best.npz"]


def test_a_zip_bomb_dump_is_refused_at_load_without_inflating(template):
    run_dir = copy_of(template)
    path = run_dir / "predictions" / "final.npz"
    np.savez_compressed(path, **valid_dump(np.random.default_rng(2)))
    raw = bytearray(path.read_bytes())
    # Declare 3 GiB uncompressed for the probs member in the central directory.
    start = raw.rfind(b"PK\x01\x02", 0, raw.find(b"probs.npy", raw.find(b"PK\x01\x02")) + 1)
    raw[start + 24:start + 28] = (3 * 1024**3).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    run = runs.load_run(run_dir)
    assert run.predictions("final") is None
    assert any(w.startswith("predictions/final.npz: is 3.0 GiB") for w in run.warnings), run.warnings


# ---------------------------------------------------------------- arrays beside the dumps


@pytest.mark.parametrize("images", [np.zeros((N_TEST, 32, 32, 3), np.float32), np.zeros((N_TEST, 28, 28, 1), np.uint8),
                                    np.zeros((N_TEST, 32, 32), np.uint8)])
def test_test_images_of_another_shape_or_dtype_are_refused(template, images):
    run_dir = copy_of(template)
    np.save(run_dir / runs.TEST_IMAGES_NPY, images)
    run = read_everything(run_dir)
    assert run.test_images() is None and runs.TEST_IMAGES_NPY in run.damaged


def test_train_samples_with_labels_outside_the_classes_are_refused(template):
    run_dir = copy_of(template)
    samples = np.zeros((2, 32, 32, 3), np.uint8)
    np.savez(run_dir / runs.TRAIN_SAMPLES_NPZ, images=samples, augmented=samples, labels=np.array([0, 7]))
    run = read_everything(run_dir)
    assert run.train_samples() is None and runs.TRAIN_SAMPLES_NPZ in run.damaged


def test_a_healthy_run_reads_back_what_was_written_without_warnings(template):
    run = read_everything(template)
    assert run.warnings == [] and run.status == "completed" and run.class_names == CLASSES
    assert run.best_epoch() == (0.5, 1)  # a tie goes to the earliest epoch
    assert run.summary()["train_seconds"] == 4.0  # training only, summed over epoch rows
    assert run.used_lr == 0.01 and run.device_name == "CPU" and run.model_summary_text() == "a table\n"
    with zipfile.ZipFile(template / "predictions" / "final.npz") as archive:
        assert sorted(archive.namelist()) == sorted(f"{k}.npy" for k in runs.PREDICTION_KEYS)


def test_per_file_stamps_change_only_for_the_file_written(template):
    run_dir = copy_of(template)
    before, whole = runs.file_stamps(run_dir), runs.run_stamp(run_dir)
    with open(run_dir / runs.STEPS_JSONL, "a") as handle:
        handle.write('{"step": 5, "epoch": 2, "loss": 0.1, "lr": 0.001}\n')
    after = runs.file_stamps(run_dir)
    assert [role for role in before if before[role] != after[role]] == ["steps"]
    assert after["resume_state"] is None and runs.part_stamp(run_dir, "steps") == after["steps"]
    assert runs.run_stamp(run_dir) == whole  # a live run's step appends keep the run's summary cached
    with open(run_dir / runs.EPOCHS_JSONL, "a") as handle:
        handle.write('{"epoch": 3, "test_acc": 0.6}\n')
    assert runs.run_stamp(run_dir) != whole


# ---------------------------------------------------------------- the lock


def test_a_writer_waits_out_a_readers_lock_probe(tmp_path):
    path = runs.RunWriter.create(tmp_path, "probe", 1).path  # the lock is released with the writer object
    reader = open(path / runs.LOCK_FILE, "a+")
    fcntl.flock(reader, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what writer_alive does, held still
    asked, released, failure = threading.Event(), threading.Event(), []
    writer = runs.RunWriter(path, {})

    def wait(seconds: float) -> None:
        asked.set()
        released.wait(30)

    def take() -> None:
        try:
            writer.lock(wait=wait)
        except runs.RunFormatError as exc:
            failure.append(exc)

    thread = threading.Thread(target=take)
    thread.start()
    assert asked.wait(30), "the writer never met the reader's lock"
    reader.close()
    released.set()
    thread.join(30)
    assert not thread.is_alive(), "the writer did not take the lock within 30 s of the reader letting go"
    assert failure == [] and runs.writer_alive(path)
    writer.release()


def test_a_writer_held_by_another_process_is_still_refused(tmp_path):
    path = runs.RunWriter.create(tmp_path, "held", 1).path
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
                               str(path / runs.LOCK_FILE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runs.RunFormatError, match="being written by another process"):
            runs.RunWriter.reopen(path)
    finally:
        holder.stdin.close()
        holder.wait(30)
    runs.RunWriter.reopen(path).finish("completed")


# ---------------------------------------------------------------- ids and names


def test_run_ids_are_parsed_in_one_place():
    run_id = runs.new_run_id("my run!")
    stamp, token, slug = runs.parse_run_id(run_id)
    assert run_id == f"{stamp}-{token}-{slug}" and slug == "my-run"
    assert runs.short_id(run_id) == f"{stamp[9:]}-{token}" and runs.run_id_suffix(run_id) == "my-run"
    assert runs.parse_run_id("imported-folder") is None and runs.run_id_suffix("imported-folder") == "imported-folder"
    assert runs.is_run_id(run_id) and not runs.is_run_id(run_id + "\n") and not runs.is_run_id("evil\n")


def test_names_are_printed_with_control_characters_escaped():
    assert runs.printable("a\x1b[2Jb\nc\u202e") == "a\\x1b[2Jb\\nc\\u202e"
    assert runs.printable("plain name é") == "plain name é"
