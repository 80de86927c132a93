"""summary.json: kept fresh by the writer, used by readers only while it matches the run's files,
rebuilt from them when it is missing, stale or damaged; a torn run is named damaged, never raises."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading

import pytest

from engine import run_layout as layout
from engine import runs
from engine.run_curation import set_note, set_tags
from engine.run_reader import read_summary
from engine.run_summary import (
    SUMMARY_KEYS,
    build_summary,
    short_curve,
    staleness,
    stored_summary_state,
    summary_of,
    write_summary,
)
from engine.safe_io import atomic_write_json
from tests.runs_for_tests import epoch_row, open_run, start_killable_writer, write_run


def stored(run_dir):
    summary, why = read_summary(run_dir)
    assert summary is not None, why
    return summary


def test_the_writer_keeps_the_summary_fresh_at_creation_each_epoch_and_each_status_change(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "fresh", epochs_planned=2)
    assert stored_summary_state(writer.path) is None and stored(writer.path)["status"] == "running"
    writer.write_config({"width": 4, "epochs": 2})
    assert stored_summary_state(writer.path) == "older than config.json"  # until the epoch ends
    writer.append_epoch(epoch_row(1, 0.4))
    assert stored_summary_state(writer.path) is None
    assert stored(writer.path)["epochs_done"] == 1 and stored(writer.path)["config"]["width"] == 4
    writer.append_epoch(epoch_row(2, 0.6))
    writer.finish(layout.Status.COMPLETED)
    summary = stored(writer.path)
    assert stored_summary_state(writer.path) is None and summary["status"] == "completed" and summary["finished"]
    assert summary["test_acc_curve"] == [0.4, 0.6] and summary["best_test_acc"] == 0.6


def test_a_summary_holds_what_the_runs_table_and_search_need(tmp_path):
    path = write_run(tmp_path, "table", epochs=3, lr=0.05, preset="fast")
    set_tags(path, add=["baseline"])
    set_note(path, "a note")
    summary = summary_of(path)
    assert list(summary) == list(SUMMARY_KEYS)
    run = runs.load_run(path)
    assert summary["id"] == path.name and summary["name"] == "table" and summary["status"] == "completed"
    assert summary["dataset"] == "toy" and summary["created"] == run.created and summary["finished"] == run.finished
    assert (summary["epochs_done"], summary["epochs_planned"]) == (3, 3)
    assert summary["best_test_acc"] == run.summary()["best_test_acc"] == pytest.approx(0.6)
    assert summary["final_test_acc"] == pytest.approx(0.6) and summary["final_test_loss"] == 1.1
    assert summary["duration_seconds"] == run.duration_seconds() and summary["used_lr"] == 0.05
    assert summary["config"] == run.config and summary["config"]["preset"] == "fast"
    assert summary["tags"] == ["baseline"] and summary["note"] == "a note" and summary["sweep"] is None
    assert summary["test_acc_curve"] == [0.4, 0.5, 0.6] and summary["format_version"] == layout.FORMAT_VERSION
    assert summary["damaged"] == [] and summary["warnings"] == []


def test_the_curve_is_short_and_keeps_both_ends():
    curve = short_curve([i / 1000 for i in range(1000)])
    assert len(curve) == 100 and curve[0] == 0.0 and curve[-1] == 0.999
    assert short_curve([0.123456, None]) == [0.1235, None]


def append_in_place(run_dir, name, text):
    with open(run_dir / name, "a") as handle:
        handle.write(text)


# (what is done to a completed run's files, what the stored summary is then said to be, a check on the rebuilt one)
STALE = {
    "missing": (lambda p: (p / layout.SUMMARY_JSON).unlink(), "missing", lambda s: s["epochs_done"] == 3),
    "garbage": (lambda p: (p / layout.SUMMARY_JSON).write_bytes(b"\x00{garbage"), "damaged: is not valid JSON",
                lambda s: s["epochs_done"] == 3),
    "cut": (lambda p: (p / layout.SUMMARY_JSON).write_bytes((p / layout.SUMMARY_JSON).read_bytes()[:100]),
            "damaged: is not valid JSON", lambda s: s["epochs_done"] == 3),
    "wrong type": (lambda p: atomic_write_json(p / layout.SUMMARY_JSON, {**stored(p), "best_test_acc": "0.9"}),
                   "damaged: 'best_test_acc' is '0.9'", lambda s: s["best_test_acc"] == pytest.approx(0.6)),
    "an epoch appended": (lambda p: append_in_place(p, layout.EPOCHS_JSONL, json.dumps(epoch_row(4, 0.9)) + "\n"),
                          "older than epochs.jsonl", lambda s: s["epochs_done"] == 4 and s["best_test_acc"] == 0.9),
    "config replaced": (lambda p: atomic_write_json(p / layout.CONFIG_JSON, {**runs.load_run(p).config, "lr": 0.3}),
                        "older than config.json", lambda s: s["config"]["lr"] == 0.3),
    "tagged": (lambda p: set_tags(p, add=["new"]), "older than tags.json", lambda s: s["tags"] == ["new"]),
    "noted": (lambda p: set_note(p, "later"), "older than note.txt", lambda s: s["note"] == "later"),
    "dump replaced": (lambda p: shutil.copy(p / layout.RUN_JSON, p / layout.prediction_file(layout.FINAL)),
                      "older than predictions/final.npz",
                      lambda s: s["damaged"] == [layout.prediction_file(layout.FINAL)]),
    "older format": (lambda p: atomic_write_json(p / layout.SUMMARY_JSON, {**stored(p), "format_version": 1}),
                     "written by format version 1", lambda s: s["format_version"] == layout.FORMAT_VERSION),
}


@pytest.mark.parametrize("case", list(STALE))
def test_a_missing_stale_or_damaged_summary_is_rebuilt_from_the_runs_files(tmp_path, case):
    change, said, holds = STALE[case]
    path = write_run(tmp_path, "stale", epochs=3)
    assert stored_summary_state(path) is None
    change(path)
    assert stored_summary_state(path).startswith(said)
    summary = summary_of(path)
    assert holds(summary), summary
    assert stored_summary_state(path) is None and stored(path) == summary  # written back


def test_a_copied_run_does_not_trust_the_summary_it_brought(tmp_path):
    path = write_run(tmp_path, "copied")
    copy = tmp_path / "copy-of-it"
    shutil.copytree(path, copy)
    assert "describes" in stored_summary_state(copy)
    assert summary_of(copy)["id"] == "copy-of-it"


def test_a_run_whose_writer_was_killed_reads_interrupted(tmp_path):
    proc, path = start_killable_writer(tmp_path)
    try:
        assert stored(path)["status"] == "running" and summary_of(path)["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert stored(path)["status"] == "running"  # what the writer left
    assert stored_summary_state(path) == "says running, but no process holds the run's lock"
    summary = summary_of(path)
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 1 and summary["error"]
    assert stored(path)["status"] == "interrupted" and stored_summary_state(path) is None


def test_a_live_runs_summary_is_rebuilt_in_memory_and_left_to_its_writer(tmp_path):
    writer = open_run(tmp_path, "live", epochs=3, done=1)
    set_tags(writer.path, add=["watched"])  # stale now; the writer rewrites it at the next epoch's end
    before = (writer.path / layout.SUMMARY_JSON).read_bytes()
    summary = summary_of(writer.path)
    assert summary["status"] == "running" and summary["tags"] == ["watched"]
    assert (writer.path / layout.SUMMARY_JSON).read_bytes() == before
    writer.append_epoch(epoch_row(2, 0.5))
    assert stored_summary_state(writer.path) is None and stored(writer.path)["tags"] == ["watched"]
    writer.finish(layout.Status.COMPLETED)


DAMAGE = {"empty": lambda data: b"", "half": lambda data: data[: len(data) // 2],
          "garbage": lambda data: b"\xff" * 40 + b"\n"}
JSON_FILES = [layout.RUN_JSON, layout.CONFIG_JSON, layout.DATASET_JSON, layout.TAGS_JSON]


def named_damaged(name: str, damage: str) -> bool:
    """Whether the reader must call this damage damage: any damage to a JSON object; garbage lines
    in epochs.jsonl (a cut last line or no line is a live run's normal state); a note that is not
    UTF-8 (a shorter note is still a note)."""
    return name in JSON_FILES or damage == "garbage"


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", [*JSON_FILES, layout.EPOCHS_JSONL, layout.NOTE_TXT])
def test_a_torn_run_is_named_damaged_and_never_raises(tmp_path, name, damage):
    path = write_run(tmp_path, "torn", epochs=3)
    set_tags(path, add=["kept"])
    set_note(path, "kept")
    target = path / name
    target.write_bytes(DAMAGE[damage](target.read_bytes()))  # in place, as a crash or a disk would
    summary = summary_of(path)
    assert stored_summary_state(path) is None and summary == build_summary(path)
    assert (name in summary["damaged"]) == named_damaged(name, damage), summary["warnings"]
    if name == layout.RUN_JSON:
        assert summary["status"] == "unknown" and summary["name"] == path.name


def test_a_run_folder_without_any_file_gets_a_summary_but_nothing_is_written_into_it(tmp_path):
    empty = tmp_path / "20260101-000000-abcdef-empty"
    empty.mkdir()
    summary = summary_of(empty)
    assert summary["status"] == "unknown" and layout.RUN_JSON in summary["damaged"]
    assert list(empty.iterdir()) == []


def test_a_version_1_run_still_opens_and_gets_a_summary(tmp_path):
    path = write_run(tmp_path, "old", epochs=2)
    meta = json.loads((path / layout.RUN_JSON).read_text())
    atomic_write_json(path / layout.RUN_JSON, {**meta, "format_version": 1})
    (path / layout.SUMMARY_JSON).unlink()  # version 1 had none
    run = runs.load_run(path)
    assert run.warnings == [] and run.status == "completed"
    assert [r.id for r in runs.list_runs(tmp_path)] == [path.name]
    summary = summary_of(path)
    assert summary["epochs_done"] == 2 and summary["damaged"] == [] and stored_summary_state(path) is None


def test_staleness_compares_every_source_stamp(tmp_path):
    path = write_run(tmp_path, "stamps")
    summary = stored(path)
    assert set(summary["sources"]) == set(layout.SUMMARY_SOURCES)
    assert staleness(path, summary) is None
    os.utime(path / layout.DATASET_JSON, ns=(1, 1))  # the same bytes, another mtime
    assert staleness(path, summary) == "older than dataset.json"


def test_a_file_replaced_within_one_tick_of_the_clock_is_still_seen(tmp_path):
    """Same size, same mtime (a coarse clock): the atomic replacement's new inode gives it away."""
    path = write_run(tmp_path, "tick", lr=0.1)
    config = path / layout.CONFIG_JSON
    before = os.stat(config)
    text = config.read_text()
    atomic_write_json(config, {**json.loads(text), "lr": 0.2})
    assert len(config.read_text()) == len(text)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stored_summary_state(path) == "older than config.json"
    assert summary_of(path)["config"]["lr"] == 0.2


def test_two_threads_rewriting_one_summary_never_tear_it(tmp_path):
    """A dashboard serves several sessions from threads of one process: each write has its own
    temporary file, so two rewrites of one summary at once cannot mix."""
    path = write_run(tmp_path, "threads")
    failures, seen = [], []

    def rewrite():
        try:
            for _ in range(30):
                write_summary(path)
                seen.append(read_summary(path)[1])
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            failures.append(exc)

    threads = [threading.Thread(target=rewrite) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and set(seen) == {None} and stored_summary_state(path) is None
