"""Tags, notes, archive and restore: a person's changes never touch a training file, are safe while
the run trains, and never delete anything."""

from __future__ import annotations

import hashlib
import signal
import threading

import pytest

from engine import run_layout as layout
from engine import runs
from engine.run_curation import (
    archive_run,
    change_tags,
    parse_tag_changes,
    restore_run,
    set_note,
    set_tags,
)
from engine.run_index import RunIndex
from engine.run_summary import stored_summary_state, summary_of
from engine.run_writer import held_lock
from tests.runs_for_tests import open_run, start_killable_writer, start_training, wait_for, write_run

PERSONAL = {layout.TAGS_JSON, layout.NOTE_TXT, layout.SUMMARY_JSON}  # the summary is derived from them too


def fingerprints(run_dir):
    """{file: sha256} of every file in a run folder but the lock."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != layout.LOCK_FILE}


def training_files(run_dir):
    return {k: v for k, v in fingerprints(run_dir).items() if k not in PERSONAL}


def test_tags_are_added_and_removed_in_order_without_duplicates(tmp_path):
    path = write_run(tmp_path, "tagged")
    assert set_tags(path, add=["baseline", "lr-0.1", "baseline"]) == ["baseline", "lr-0.1"]
    assert change_tags(path, ["+keep", "-lr-0.1", "extra"]) == ["baseline", "keep", "extra"]
    assert runs.read_tags(path) == (["baseline", "keep", "extra"], [])
    assert set_tags(path, remove=["absent"]) == ["baseline", "keep", "extra"]


@pytest.mark.parametrize("words", [["+has space"], ["+"], ["+-x"], ["a,b"], ["+" + "x" * 65], ["+ü\n"]])
def test_a_bad_tag_is_refused_and_nothing_is_written(tmp_path, words):
    path = write_run(tmp_path, "refused")
    before = fingerprints(path)
    with pytest.raises(ValueError, match="tag"):
        change_tags(path, words)
    assert fingerprints(path) == before


def test_set_tags_checks_tags_itself(tmp_path):
    path = write_run(tmp_path, "direct")
    for bad in ("has space", "", "-x", "a,b"):
        with pytest.raises(ValueError, match="is not a tag"):
            set_tags(path, add=[bad])
    assert not (path / layout.TAGS_JSON).exists()


def test_tags_added_at_once_by_many_writers_are_all_kept(tmp_path):
    path = write_run(tmp_path, "crowded")

    def add(k):
        for i in range(8):
            set_tags(path, add=[f"w{k}-{i}"])

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(runs.read_tags(path)[0]) == sorted(f"w{k}-{i}" for k in range(4) for i in range(8))


def test_tag_changes_parse_plus_minus_and_bare_words():
    assert parse_tag_changes(["+a", "-b", "c", "ü.x:y/z@w"]) == (["a", "c", "ü.x:y/z@w"], ["b"])


def test_a_note_is_kept_as_plain_text_and_can_be_cleared(tmp_path):
    path = write_run(tmp_path, "noted")
    set_note(path, "lr too high?\nsee run 12 ✓")
    assert runs.read_note(path) == ("lr too high?\nsee run 12 ✓", [])
    set_note(path, "")
    assert runs.read_note(path) == ("", [])
    with pytest.raises(ValueError, match="at most"):
        set_note(path, "x" * 20_000)
    with pytest.raises(ValueError, match="not valid text"):
        set_note(path, "\udcff")


def test_tags_and_notes_change_no_training_file_and_the_summary_follows(tmp_path):
    path = write_run(tmp_path, "untouched")
    before = training_files(path)
    set_tags(path, add=["a", "b"])
    set_note(path, "hello")
    set_tags(path, remove=["a"])
    assert training_files(path) == before
    assert stored_summary_state(path) == "older than tags.json, note.txt"
    summary = summary_of(path)
    assert summary["tags"] == ["b"] and summary["note"] == "hello" and training_files(path) == before


def test_tags_and_notes_written_while_a_real_run_trains_the_same_folder(tmp_path, sample):
    proc = start_training(tmp_path, "--epochs", "4", "--step-log-every", "1", "--name", "busy")
    index, written = RunIndex(tmp_path), 0
    try:
        wait_for(lambda: any(p.is_dir() for p in tmp_path.iterdir()), proc=proc, what="the run folder")
        (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        wait_for(lambda: (run_dir / layout.RUN_JSON).is_file(), proc=proc, what="run.json")
        while proc.poll() is None:  # tag and note as fast as we can, the whole run long
            written += 1
            set_tags(run_dir, add=[f"t{written}"], remove=[f"t{written - 2}"])
            set_note(run_dir, f"note {written}")
            rows = index.refresh()
            assert len(rows) == 1 and rows[0]["damaged"] == [] and rows[0]["status"] in ("running", "completed")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert written > 20
    run = runs.load_run(run_dir)
    assert run.status == "completed" and [e["epoch"] for e in run.epochs] == [1, 2, 3, 4] and run.warnings == []
    assert run.predictions(layout.FINAL) is not None and len(run.steps()) == 4 * 8
    tags = [f"t{written - 1}", f"t{written}"]
    assert runs.read_tags(run_dir) == (tags, []) and runs.read_note(run_dir) == (f"note {written}", [])
    row = index.refresh()[0]
    assert row["status"] == "completed" and row["tags"] == tags and row["note"] == f"note {written}"
    assert row["epochs_done"] == 4 and row == summary_of(run_dir)
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]


def test_archive_and_restore_move_the_whole_run_and_delete_nothing(tmp_path):
    path = write_run(tmp_path, "shelved")
    set_tags(path, add=["old"])
    kept = write_run(tmp_path, "kept")
    index = RunIndex(tmp_path)
    assert len(index.refresh()) == 2  # (rewrites the summary the tag made stale)
    before = fingerprints(path)
    archived = archive_run(tmp_path, path.name)
    assert archived == layout.archive_dir(tmp_path) / path.name and not path.exists()
    assert fingerprints(archived) == before
    assert [r["id"] for r in index.refresh()] == [kept.name]
    assert [r["id"] for r in RunIndex(layout.archive_dir(tmp_path)).refresh()] == [path.name]
    assert [r.id for r in runs.list_runs(tmp_path)] == [kept.name]  # out of today's tables too
    assert restore_run(tmp_path, path.name) == path and fingerprints(path) == before
    assert {r["id"] for r in index.refresh()} == {path.name, kept.name}


def test_archive_refuses_a_taken_id_and_restore_refuses_a_taken_id(tmp_path):
    path = write_run(tmp_path, "twice")
    archive_run(tmp_path, path.name)
    path.mkdir()  # an id taken again in the runs folder (here: an empty folder)
    with pytest.raises(runs.RunFormatError, match="already exists; nothing was moved"):
        restore_run(tmp_path, path.name)
    (path / "something").write_text("x")
    with pytest.raises(runs.RunFormatError, match="already exists; nothing was moved"):
        restore_run(tmp_path, path.name)
    other = layout.archive_dir(tmp_path) / path.name
    assert (other / layout.RUN_JSON).is_file()
    (path / "something").unlink()
    path.rmdir()
    restore_run(tmp_path, path.name)
    (layout.archive_dir(tmp_path) / path.name).mkdir()
    with pytest.raises(runs.RunFormatError, match="already exists; nothing was moved"):
        archive_run(tmp_path, path.name)
    assert (path / layout.RUN_JSON).is_file()


@pytest.mark.parametrize("run_id", ["../escape", "", "no-such-run", ".archive", "a/b"])
def test_archive_refuses_what_is_not_a_run_here(tmp_path, run_id):
    write_run(tmp_path, "present")
    with pytest.raises(runs.RunFormatError):
        archive_run(tmp_path, run_id)


def test_a_running_run_is_neither_archived_nor_restored(tmp_path):
    writer = open_run(tmp_path, "live", epochs=3, done=1)  # this process holds the lock
    with pytest.raises(runs.RunFormatError, match="it is running"):
        archive_run(tmp_path, writer.path.name)
    assert writer.path.is_dir()
    writer.finish(layout.Status.COMPLETED)
    archive_run(tmp_path, writer.path.name)


def test_a_killed_run_can_be_archived(tmp_path):
    proc, path = start_killable_writer(tmp_path)
    with pytest.raises(runs.RunFormatError, match="it is running"):
        archive_run(tmp_path, path.name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    archived = archive_run(tmp_path, path.name)
    assert summary_of(archived)["status"] == "interrupted"


def test_no_writer_starts_while_a_run_is_being_moved(tmp_path):
    """Archive holds the run's lock while it moves: resume's writer would be refused, not
    left writing into a folder that moved away."""
    path = write_run(tmp_path, "moving")
    with held_lock(path, patience=0):
        with pytest.raises(runs.RunFormatError, match="being written by another process"):
            runs.RunWriter.reopen(path)
