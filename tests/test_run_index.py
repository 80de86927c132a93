"""The run index: rows for every run in a folder, kept current by looking only at what can have
changed (the listing, each run folder's mtime, the running runs), with a cache that loses nothing
when deleted."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from bench.many_runs import generate, hold_locks
from engine import run_index
from engine import run_layout as layout
from engine.run_curation import archive_run, restore_run, set_note, set_tags
from engine.run_index import RACY_NS, RunIndex, differing_config_keys, run_labels
from engine.run_summary import public, summary_of, write_summary
from engine.safe_io import atomic_write_json
from tests.runs_for_tests import epoch_row, open_run, start_killable_writer, write_run


def by_id(rows):
    return {row["id"]: row for row in rows}


def settle():
    """Let folder mtimes age past RACY_NS, so the index stops re-looking at them."""
    time.sleep(RACY_NS / 1e9 + 0.1)


def facts(rows):
    """The rows without bookkeeping, for comparing two loads."""
    return {row["id"]: public(row) for row in rows}


def test_rows_are_the_runs_summaries_newest_first(tmp_path):
    paths = [write_run(tmp_path, f"run{i}") for i in range(3)]
    (tmp_path / "README.md").write_text("not a run")
    (tmp_path / "an-empty-folder").mkdir()
    rows = RunIndex(tmp_path).refresh()
    assert [row["id"] for row in rows] == sorted((p.name for p in paths), reverse=True)
    assert all(row == summary_of(tmp_path / row["id"]) for row in rows)


def test_a_run_added_or_removed_shows_on_the_next_refresh(tmp_path):
    first = write_run(tmp_path, "first")
    index = RunIndex(tmp_path)
    assert [r["id"] for r in index.refresh()] == [first.name]
    generation = index.generation
    index.refresh()
    assert index.generation == generation  # nothing changed: the same rows
    second = write_run(tmp_path, "second")
    assert {r["id"] for r in index.refresh()} == {first.name, second.name} and index.generation > generation
    archive_run(tmp_path, first.name)
    assert [r["id"] for r in index.refresh()] == [second.name]
    restore_run(tmp_path, first.name)
    assert {r["id"] for r in index.refresh()} == {first.name, second.name}


def test_a_running_run_is_followed_epoch_by_epoch_and_finishes(tmp_path):
    done = write_run(tmp_path, "done")
    index = RunIndex(tmp_path)
    writer = open_run(tmp_path, "live", epochs=3, done=1)
    rows = by_id(index.refresh())
    assert rows[writer.path.name]["status"] == "running" and rows[writer.path.name]["epochs_done"] == 1
    settle()
    index.refresh()
    with open(writer.path / layout.EPOCHS_JSONL, "a") as handle:  # an append moves no folder mtime
        handle.write(json.dumps(epoch_row(2, 0.5)) + "\n")
    assert index.get(writer.path.name)["epochs_done"] == 1
    assert by_id(index.refresh())[writer.path.name]["epochs_done"] == 2  # a running run is looked at each time
    writer.append_epoch(epoch_row(3, 0.6))
    writer.finish(layout.Status.COMPLETED)
    row = by_id(index.refresh())[writer.path.name]
    assert row["status"] == "completed" and row["epochs_done"] == 3
    assert index.get(done.name)["status"] == "completed"


def test_a_run_whose_process_is_killed_turns_interrupted(tmp_path):
    proc, path = start_killable_writer(tmp_path)
    index = RunIndex(tmp_path)
    try:
        assert index.refresh()[0]["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    row = index.refresh()[0]
    assert row["status"] == "interrupted" and row["epochs_done"] == 1


def test_runs_held_by_a_live_process_stay_running_and_the_generated_mix_reads_truthfully(tmp_path):
    mix = {"interrupted": 0.1, "failed": 0.1, "killed": 0.1, "running": 0.1, "torn": 0.3}
    states = generate(tmp_path, 100, mix=mix)
    running = [tmp_path / run_id for run_id in states["running"]]
    with hold_locks(running):
        rows = by_id(RunIndex(tmp_path).refresh())
        assert {rows[p.name]["status"] for p in running} == {"running"}
    assert {by_id(RunIndex(tmp_path).refresh())[p.name]["status"] for p in running} == {"interrupted"}
    assert {rows[run_id]["status"] for run_id in states["killed"]} == {"interrupted"}
    assert {rows[run_id]["status"] for run_id in states["failed"]} == {"failed"}
    for kind, damaged in (("garbage config", [layout.CONFIG_JSON]), ("no run.json", [layout.RUN_JSON]),
                          ("truncated dump", [layout.prediction_file(layout.FINAL)]), ("cut epoch row", []),
                          ("damaged summary", []), ("stale summary", [])):
        assert states[f"torn: {kind}"], kind
        assert {tuple(rows[run_id]["damaged"]) for run_id in states[f"torn: {kind}"]} == {tuple(damaged)}, kind
    assert all(rows[run_id]["epochs_done"] == rows[run_id]["epochs_planned"] + 1
               for run_id in states["torn: stale summary"])  # the row appended after its summary counts
    assert len(rows) == 100 and all(row == summary_of(tmp_path / run_id) for run_id, row in rows.items()
                                    if row["status"] != "running")


@pytest.mark.parametrize("case", ["missing", "stale", "damaged"])
def test_a_missing_stale_or_damaged_summary_is_rebuilt_by_the_index(tmp_path, case):
    path = write_run(tmp_path, "summary", epochs=3)
    if case == "missing":
        (path / layout.SUMMARY_JSON).unlink()
    elif case == "stale":
        with open(path / layout.EPOCHS_JSONL, "a") as handle:
            handle.write(json.dumps(epoch_row(4, 0.9)) + "\n")
    else:
        (path / layout.SUMMARY_JSON).write_text('{"id": ')
    row = RunIndex(tmp_path).refresh()[0]
    assert row["epochs_done"] == (4 if case == "stale" else 3) and row["damaged"] == []


def test_a_finished_run_is_not_stated_file_by_file_but_a_replaced_file_is_seen(tmp_path):
    """The documented rule: an in-place edit of a finished run's file does not move its folder's
    mtime, so a warm index does not see it (summary_of does); any atomic write does."""
    path = write_run(tmp_path, "finished", epochs=3)
    index = RunIndex(tmp_path)
    index.refresh()
    settle()
    index.refresh()
    with open(path / layout.EPOCHS_JSONL, "a") as handle:
        handle.write(json.dumps(epoch_row(4, 0.9)) + "\n")
    assert index.refresh()[0]["epochs_done"] == 3  # not looked at
    assert summary_of(path, write_back=False)["epochs_done"] == 4
    set_tags(path, add=["seen"])  # an atomic write: the folder's mtime moves
    row = index.refresh()[0]
    assert row["tags"] == ["seen"] and row["epochs_done"] == 4


def test_a_change_in_the_same_instant_as_a_refresh_is_still_seen(tmp_path):
    path = write_run(tmp_path, "racy")
    index = RunIndex(tmp_path)
    index.refresh()
    os.utime(path, ns=(time.time_ns(), time.time_ns()))  # the folder was just looked at ...
    index.refresh()
    mtime = os.stat(path).st_mtime_ns
    set_note(path, "same tick")
    os.utime(path, ns=(mtime, mtime))  # ... and this change did not move its mtime (a coarse clock)
    assert index.refresh()[0]["note"] == "same tick"


def test_tags_and_notes_show_on_the_next_refresh(tmp_path):
    path = write_run(tmp_path, "curated")
    index = RunIndex(tmp_path)
    index.refresh()
    settle()
    index.refresh()
    set_tags(path, add=["baseline", "keep"])
    set_note(path, "the reference")
    row = index.refresh()[0]
    assert row["tags"] == ["baseline", "keep"] and row["note"] == "the reference"
    set_tags(path, remove=["keep"])
    assert index.refresh()[0]["tags"] == ["baseline"]


def test_a_summary_written_while_the_index_reads_never_breaks_a_refresh(tmp_path):
    paths = [write_run(tmp_path, f"busy{i}") for i in range(4)]
    writer = open_run(tmp_path, "busy-live", epochs=50, done=1)
    stop, failures = threading.Event(), []

    def write_all_the_time():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                for path in paths:
                    write_summary(path)  # what a writer or another reader does
                    set_tags(path, add=[f"t{n % 3}"])
                writer.append_epoch(epoch_row(2 + n, 0.5))
                with open(paths[0] / layout.SUMMARY_JSON, "w") as handle:  # a non-atomic writer, torn mid-way
                    handle.write('{"id": "')
                os.utime(paths[0])
            except Exception as exc:  # noqa: BLE001 - any failure of the writer side fails the test
                failures.append(exc)
                return
            if n >= 45:
                return

    thread = threading.Thread(target=write_all_the_time)
    thread.start()
    index = RunIndex(tmp_path)
    try:
        while thread.is_alive():
            rows = index.refresh()
            assert len(rows) == 5 and all(row["damaged"] == [] for row in rows)
    finally:
        stop.set()
        thread.join(60)
    writer.finish(layout.Status.COMPLETED)
    assert failures == []
    time.sleep(RACY_NS / 1e9 + 0.1)
    index.refresh()
    assert facts(index.refresh()) == facts(summary_of(tmp_path / p.name) for p in [*paths, writer.path])


@pytest.mark.parametrize("base_sample", [256, 2])  # the shared config values chosen from every run, or from two
def test_the_cache_loses_nothing_when_deleted_or_damaged(tmp_path, monkeypatch, base_sample):
    monkeypatch.setattr(run_index, "BASE_SAMPLE", base_sample)
    for i in range(5):
        write_run(tmp_path, f"cached{i}", lr=0.01 * (i + 1), width=16 if i < 2 else 32)
    set_tags(next(tmp_path.iterdir()), add=["x"])
    rows = RunIndex(tmp_path).refresh()
    assert (tmp_path / layout.INDEX_CACHE).is_file()
    settle()
    RunIndex(tmp_path).refresh()  # settled rows go into the cache without their stamps
    from_cache = RunIndex(tmp_path).refresh()
    assert facts(from_cache) == facts(rows)
    assert [r["config"] for r in from_cache] == [r["config"] for r in rows]  # rebuilt from the shared base
    (tmp_path / layout.INDEX_CACHE).write_bytes(b"\x00 not json")
    assert facts(RunIndex(tmp_path).refresh()) == facts(rows)
    atomic_write_json(tmp_path / layout.INDEX_CACHE, {"cache_version": 999})
    assert facts(RunIndex(tmp_path).refresh()) == facts(rows)
    (tmp_path / layout.INDEX_CACHE).unlink()
    assert facts(RunIndex(tmp_path, use_cache=False).refresh()) == facts(rows)
    assert not (tmp_path / layout.INDEX_CACHE).exists()


def test_the_first_load_trusts_a_cached_row_only_while_its_folder_is_unchanged(tmp_path):
    path = write_run(tmp_path, "trusted", epochs=3)
    RunIndex(tmp_path).refresh()
    settle()
    RunIndex(tmp_path).refresh()
    with open(path / layout.EPOCHS_JSONL, "a") as handle:  # in place: the folder's mtime stays
        handle.write(json.dumps(epoch_row(4, 0.9)) + "\n")
    assert RunIndex(tmp_path).refresh()[0]["epochs_done"] == 3  # the cached row (the documented limit)
    assert RunIndex(tmp_path, use_cache=False).refresh()[0]["epochs_done"] == 4  # every summary checked
    set_note(path, "moved the folder's mtime")
    assert RunIndex(tmp_path).refresh()[0]["epochs_done"] == 4


def test_a_runs_folder_that_is_missing_or_cannot_take_the_summary_or_the_cache_still_indexes(tmp_path):
    assert RunIndex(tmp_path / "nowhere").refresh() == []
    path = write_run(tmp_path, "unwritable")
    (path / layout.SUMMARY_JSON).unlink()
    (path / layout.SUMMARY_JSON).mkdir()  # neither a write-back ...
    (tmp_path / layout.INDEX_CACHE).mkdir()  # ... nor the cache can be written: works the same, slower
    index = RunIndex(tmp_path)
    assert index.refresh()[0]["status"] == "completed" and index.save_cache() is False


def test_labels_add_a_short_id_only_where_names_clash():
    rows = [{"id": "20260101-120000-aaaaaa-sweep", "name": "sweep"}, {"id": "20260101-120001-bbbbbb-sweep",
                                                                         "name": "sweep"},
            {"id": "20260101-120002-cccccc-solo", "name": "solo"}, {"id": "copy-1", "name": "dup"},
            {"id": "copy-2", "name": "dup"}, {"id": "no-name", "name": None},
            {"id": "20260101-090000-dddddd-x", "name": "twin"}, {"id": "20260102-090000-dddddd-x", "name": "twin"}]
    assert run_labels(rows) == {
        "20260101-120000-aaaaaa-sweep": "sweep · 120000-aaaaaa",
        "20260101-120001-bbbbbb-sweep": "sweep · 120001-bbbbbb",
        "20260101-120002-cccccc-solo": "solo", "copy-1": "dup · copy-1", "copy-2": "dup · copy-2",
        "no-name": "no-name", "20260101-090000-dddddd-x": "twin · 20260101-090000-dddddd-x",
        "20260102-090000-dddddd-x": "twin · 20260102-090000-dddddd-x"}  # even the short ids clash


def test_labels_take_linear_time_when_every_run_shares_a_name():
    """100,000 runs of one name: about 0.3 s when linear; minutes with a list.count per run."""
    rows = [{"id": f"20260101-000000-{i:06x}-sweep", "name": "sweep"} for i in range(100_000)]
    start = time.perf_counter()
    labels = run_labels(rows)
    elapsed = time.perf_counter() - start
    assert len(set(labels.values())) == 100_000
    assert elapsed < 20.0, f"{elapsed:.1f} s for 100,000 runs of one name: quadratic?"


def test_the_settings_that_tell_runs_apart():
    rows = [{"config": {"lr": 0.1, "preset": "fast", "seed": 1, "name": "a"}},
            {"config": {"lr": 0.2, "preset": "fast", "seed": 1, "name": "b"}},
            {"config": {"lr": 0.2, "preset": "fast", "seed": 1, "name": "c", "new_flag": True}}, {"config": None}]
    assert differing_config_keys(rows[:3]) == ["lr", "new_flag"]
    assert differing_config_keys(rows) == ["lr", "new_flag"]  # an unreadable config adds no column
    # a value of another type differs (1, 1.0, True); NaN is one value; equal lists are one value
    typed = [{"config": {"a": 1, "b": 1, "c": float("nan"), "d": [1, 2], "e": 0}},
             {"config": {"a": 1.0, "b": True, "c": float("nan"), "d": [1, 2], "e": 0}},
             {"config": {"a": 1, "b": 1, "c": float("nan"), "d": [1, 2], "e": 1}}]
    assert differing_config_keys(typed) == ["a", "b", "e"]
    assert differing_config_keys([{"config": None}, *rows[:1]]) == []
    assert differing_config_keys([{"config": {"lr": 0.1}}, {"config": {}}]) == ["lr"]  # readable, key missing
    # keys come in the order first seen; a row that lacks one key still has its other values compared
    assert differing_config_keys([{"config": {"a": 1, "b": 1}}, {"config": {"a": 1, "c": 2}},
                                  {"config": {"a": 2, "c": 2}}]) == ["a", "b", "c"]
    assert differing_config_keys([{"config": {"a": 1, "b": 1}}, {"config": {"a": 2}}]) == ["a", "b"]
