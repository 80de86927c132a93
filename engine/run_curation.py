"""What a person does to organise runs: tags, a note, archive and restore. Nothing here touches a
training file, and nothing is ever deleted.

Tags (tags.json) and the note (note.txt) are files of their own, each replaced by an atomic write,
so they are safe while the run trains: the writer never writes them, it only reads them into the
run's summary. Both are sources of the summary (engine/run_summary.py), so changing either makes
the summary stale and the next read rebuilds it from the run's files, training files untouched;
the index sees the change on its next refresh (the atomic write moves the run folder's mtime).

Archiving moves a run folder into the runs folder's archive folder (`.archive/`, out of the
tables); restoring moves it back. Both hold the run's lock while they move it, so a running run is
refused and no writer can start meanwhile.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine import run_validate as check
from engine.run_layout import NOTE_TXT, RUN_JSON, TAGS_JSON, archive_dir, is_run_id
from engine.run_reader import read_tags
from engine.run_writer import RunFormatError, held_lock
from engine.safe_io import atomic_write_bytes, atomic_write_json, locked_folder

TAG_HELP = "a letter, digit or _, then letters, digits or . : / @ - _; at most 64 characters"


def parse_tag_changes(words: Iterable[str]) -> tuple[list[str], list[str]]:
    """`+baseline -bad seed1` -> (to add ['baseline', 'seed1'], to remove ['bad']). A bare word
    adds. Raises ValueError naming the first word that is not a tag."""
    add, remove = [], []
    for word in words:
        sign, name = (word[0], word[1:]) if word[:1] in "+-" and word else ("+", word)
        if check.TAG_PATTERN.match(name) is None:
            raise ValueError(f"{word!r} is not a tag change: write +TAG to add, -TAG to remove; a tag is {TAG_HELP}")
        (add if sign == "+" else remove).append(name)
    return add, remove


def _run_folder(run_dir: Path) -> Path:
    path = Path(run_dir)
    if not (path / RUN_JSON).is_file():
        raise RunFormatError(f"{path} is not a run folder (it has no {RUN_JSON})")
    return path


def set_tags(run_dir: Path, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
    """Add and remove tags (added in order, after the existing ones); returns the run's tags.
    Safe while the run trains, and between processes (the read-modify-write holds a lock on the
    folder). A damaged tags.json keeps its readable tags."""
    path = _run_folder(run_dir)
    bad = [name for name in (*add, *remove) if not isinstance(name, str) or check.TAG_PATTERN.match(name) is None]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a tag: a tag is {TAG_HELP}")
    with locked_folder(path):
        tags, _ = read_tags(path)
        dropped, kept = set(remove), set(tags)
        new = [t for t in tags if t not in dropped] + [t for t in dict.fromkeys(add) if t not in kept | dropped]
        if len(new) > check.MAX_TAGS:
            raise ValueError(f"a run holds at most {check.MAX_TAGS} tags; this would make {len(new)}")
        if new != tags or not (path / TAGS_JSON).is_file():
            atomic_write_json(path / TAGS_JSON, new)
    return new


def change_tags(run_dir: Path, words: Iterable[str]) -> list[str]:
    """`resnet-runs tag RUN +baseline -bad` in one call: parse the words, apply them."""
    add, remove = parse_tag_changes(words)
    return set_tags(run_dir, add, remove)


def set_note(run_dir: Path, text: str) -> str:
    """Replace the run's note (plain UTF-8 text, at most 16,384 characters; "" clears it)."""
    path = _run_folder(run_dir)
    if len(text) > check.NOTE_MAX_CHARS:
        raise ValueError(f"a note holds at most {check.NOTE_MAX_CHARS} characters; this one has {len(text)}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the note is not valid text ({exc.reason} at character {exc.start})") from None
    with locked_folder(path):
        atomic_write_bytes(path / NOTE_TXT, data)
    return text


# ---------------------------------------------------------------- archive and restore


def archive_run(runs_dir: Path, run_id: str) -> Path:
    """Move a run out of the tables into `runs_dir/.archive/`; returns its new folder. Refuses a
    running run and an id the archive already holds."""
    return _move(Path(runs_dir), archive_dir(runs_dir), run_id, "archive")


def restore_run(runs_dir: Path, run_id: str) -> Path:
    """Move an archived run back into `runs_dir`; returns its folder. Refuses when the id is taken."""
    return _move(archive_dir(runs_dir), Path(runs_dir), run_id, "restore")


def _move(source_root: Path, target_root: Path, run_id: str, verb: str) -> Path:
    if not is_run_id(run_id):
        raise RunFormatError(f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-', at most 128)")
    source, target = source_root / run_id, target_root / run_id
    where = "archived runs" if verb == "restore" else "runs"
    if source.is_symlink() or not source.is_dir():
        raise RunFormatError(f"no run {run_id} among the {where} in {source_root}")
    if os.path.lexists(target):
        raise RunFormatError(f"cannot {verb} {run_id}: {target} already exists; nothing was moved")
    target_root.mkdir(exist_ok=True)
    try:
        with held_lock(source):
            os.rename(source, target)
    except RunFormatError:
        raise RunFormatError(f"cannot {verb} {run_id}: it is running (its training process holds the run's lock); "
                             f"stop it or let it finish first; nothing was moved") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise RunFormatError(f"cannot {verb} {run_id}: {target} already exists; nothing was moved") from None
        raise RunFormatError(f"cannot {verb} {run_id}: moving {source} to {target} failed "
                             f"({exc.strerror or exc}); nothing was moved") from None
    return target
