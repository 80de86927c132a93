"""An index over a runs folder: one summary row per run (engine/run_summary.py), kept current
cheaply enough for ten thousand runs.

    index = RunIndex(runs_dir)      # one per runs folder, per process (the dashboard keeps one)
    rows = index.refresh()          # summaries, newest first; call again to pick up changes

The first `refresh()` reads the index's cache file (`.index.json` in the runs folder) when there is
one and checks every cached summary against its run's files (every source stamp, as `summary_of`
does), and reads or rebuilds the summary of each run the cache lacks. Later calls look only at
what can have changed:

- the folder listing (one `os.scandir`): runs added, removed, archived, restored;
- one stat of each run *folder* (not of its files): creating, replacing or removing a file in a
  folder changes the folder's mtime, and every write that changes a finished run does one of
  those (tags, a note, a resume's rewritten run.json, a rebuilt summary);
- the runs whose status is running: their summary's source stamps and their lock, every time.

A folder whose mtime lies within `RACY_NS` of the moment it was looked at is looked at again on the
next refresh: a change made in that instant may not have moved its mtime (git's "racily clean").
The cache is an accelerator only: written atomically, deleting it loses nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from engine.run_layout import FORMAT_VERSION, INDEX_CACHE, RUN_JSON, Status, short_id
from engine.run_summary import SUMMARY_KEYS, source_stamps, staleness, summary_of
from engine.safe_io import MiB, Unreadable, atomic_write_bytes, read_json, to_strict_json

RACY_NS = 2_000_000_000  # coarser than any filesystem's mtime tick we expect (NFS: 1 s)
CACHE_VERSION = 2
CACHE_CAP = 1024 * MiB
CACHE_INTERVAL_S = 60.0  # a long-lived index rewrites its cache at most this often
BASE_SAMPLE = 256  # runs whose configs choose the cache's shared config values
_ABSENT = object()


@dataclass
class _Entry:
    mtime_ns: int  # of the run folder, when it was last looked at
    summary: dict
    recheck: bool  # running, or looked at within RACY_NS of its mtime: look again next refresh


# the summary's keys the cache stores as columns (the config and the stamps are stored apart);
# a row's values are these in summary order, so a row becomes a summary by putting the config back
VALUE_KEYS = tuple(key for key in SUMMARY_KEYS if key not in ("config", "sources"))
_CONFIG_AT = SUMMARY_KEYS.index("config")
assert SUMMARY_KEYS[-1] == "sources" and VALUE_KEYS == SUMMARY_KEYS[:_CONFIG_AT] + SUMMARY_KEYS[_CONFIG_AT + 1:-1]


class RunIndex:
    """The summaries of the runs in one folder. Thread-safe; `refresh()` returns the rows (the
    summaries themselves, treat them as read-only) newest first, and `generation` counts the
    refreshes that changed anything, as a cache key for whatever is built from the rows."""

    def __init__(self, runs_dir: Path, use_cache: bool = True):
        self.runs_dir = Path(runs_dir)
        self.use_cache = use_cache
        self.generation = 0
        self._entries: dict[str, _Entry] = {}
        self._rows: list[dict] = []
        self._loaded = False
        self._dirty = False
        self._cache_written = 0.0
        self._lock = threading.Lock()

    @property
    def cache_path(self) -> Path:
        return self.runs_dir / INDEX_CACHE

    @property
    def rows(self) -> list[dict]:
        """The rows as of the last refresh (no file is looked at)."""
        return self._rows

    def get(self, run_id: str) -> dict | None:
        """The row of one run as of the last refresh, or None."""
        entry = self._entries.get(run_id)
        return None if entry is None else entry.summary

    def refresh(self) -> list[dict]:
        """Bring the rows up to date (see the module's docstring for what is looked at)."""
        with self._lock:
            first = not self._loaded
            cached = self._read_cache() if first and self.use_cache else {}
            now = time.time_ns()
            listing = self._listing()
            changed = first
            for name in self._entries.keys() - listing.keys():
                del self._entries[name]
                changed = True
            for name, mtime in listing.items():
                old = self._entries.get(name)
                known = old if old is not None else cached.get(name)
                if known is not None and known.mtime_ns == mtime and not known.recheck:
                    self._entries[name] = known  # a settled run whose folder did not change
                    continue
                entry, kept = self._look(name, mtime, now, known)
                if entry is None:
                    self._entries.pop(name, None)
                    continue
                self._entries[name] = entry
                self._dirty |= known is not None and known.recheck and not entry.recheck  # settled: cache it so
                if old is None or entry.summary is not old.summary:
                    changed = True
                    self._dirty |= not kept and entry.summary["status"] != Status.RUNNING
            self._dirty |= first and cached.keys() != self._entries.keys()
            if changed:
                self._rows = [self._entries[name].summary for name in sorted(self._entries, reverse=True)]
                self.generation += 1
            self._loaded = True
            if self.use_cache and self._dirty and (first or time.monotonic() - self._cache_written >= CACHE_INTERVAL_S):
                self.save_cache()
            return self._rows

    def _look(self, name: str, mtime: int, now: int, known: _Entry | None) -> tuple[_Entry | None, bool]:
        """(entry, whether its summary is `known`'s): `known`'s summary when its source stamps
        still match, else the run's summary as `summary_of` gives it. None for an empty folder."""
        path = self.runs_dir / name
        if known is not None and staleness(path, known.summary, source_stamps(path)) is None:
            summary = known.summary
        else:
            summary = summary_of(path)
            if RUN_JSON in summary["damaged"] and _is_empty(path):
                return None, False  # a run folder being created, or left empty: not a run (as runs.run_dirs)
        recheck = summary["status"] == Status.RUNNING or now - mtime < RACY_NS
        return _Entry(mtime, summary, recheck), summary is (known.summary if known else None)

    def _listing(self) -> dict[str, int]:
        """{folder name: its mtime} of the run folders: not hidden (the archive, the cache), folders."""
        found = {}
        try:
            with os.scandir(self.runs_dir) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir():
                            found[entry.name] = entry.stat().st_mtime_ns
                    except OSError:  # removed while listed
                        continue
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return found

    # ------------------------------------------------------------ the cache file

    def save_cache(self) -> bool:
        """Write the cache now (atomically); False when the folder cannot be written (a read-only
        runs folder still indexes, only without the head start)."""
        entries = {name: entry for name, entry in self._entries.items()}
        try:
            atomic_write_bytes(self.cache_path, to_strict_json(_cache_document(entries)).encode())
        except OSError:
            return False
        finally:
            self._cache_written = time.monotonic()
        self._dirty = False
        return True

    def _read_cache(self) -> dict[str, _Entry]:
        """The cached entries, or {} when the cache is missing, damaged, or of another version.
        Each entry is still checked against its run's files before it is used."""
        if not self.cache_path.is_file():
            return {}
        try:
            document = read_json(self.cache_path, CACHE_CAP)
        except Unreadable:
            return {}
        return _cache_entries(document)


def _is_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return True


# ---------------------------------------------------------------- cache document
# One row per run, its values in VALUE_KEYS order (no key repeated 10,000 times). Configs of runs in
# one folder share most values, so the cache stores the most common value of each config key once
# (`config_base`) and per run only the keys that differ: fewer tokens to parse. A settled run's row
# leaves out its source stamps: the first load trusts it while its folder's mtime is unchanged,
# and reads its summary.json otherwise. A row to be rechecked keeps them.


def _same(a: Any, b: Any) -> bool:
    """Equal as a config value: of one type and equal, or of one spelling (NaN is NaN). 1, 1.0 and
    True are equal in Python, not here."""
    return type(a) is type(b) and (a == b or repr(a) == repr(b))


def _config_base(entries: Iterable[_Entry]) -> dict:
    """Each config key's most common value among the first BASE_SAMPLE runs: the cache stays correct
    with any base (a run's row holds whatever differs from it), so a sample is enough to make the
    rows short, and it keeps a rewrite of a 10,000-run cache cheap."""
    counts: dict[str, Counter] = {}
    for entry in islice(entries, BASE_SAMPLE):
        for key, value in (entry.summary.get("config") or {}).items():
            counts.setdefault(key, Counter())[(type(value).__name__, json.dumps(value))] += 1
    return {key: json.loads(count.most_common(1)[0][0][1]) for key, count in counts.items()}


def _cache_document(entries: dict[str, _Entry]) -> dict:
    base = _config_base(entries.values())
    rows = []
    for name, entry in entries.items():
        summary, config, diff, absent = entry.summary, entry.summary["config"], None, []
        if config is not None:
            diff = {k: v for k, v in config.items() if not _same(base.get(k, _ABSENT), v)}
            absent = [k for k in base if k not in config]
        sources = summary["sources"] if entry.recheck else None
        rows.append([name, entry.mtime_ns, entry.recheck, diff, absent, sources, *(summary[k] for k in VALUE_KEYS)])
    return {"cache_version": CACHE_VERSION, "format_version": FORMAT_VERSION, "columns": list(VALUE_KEYS),
            "config_base": base, "runs": rows}


def _cache_entries(document: Any) -> dict[str, _Entry]:
    """Entries from a cache document; {} for one of another version or shape. The cache is the
    index's own file: a row is checked for its shape only (a row of the wrong shape is dropped),
    and used only while its run's folder (or, for a row to recheck, its sources) is unchanged."""
    if (not isinstance(document, dict) or document.get("cache_version") != CACHE_VERSION
            or document.get("format_version") != FORMAT_VERSION or document.get("columns") != list(VALUE_KEYS)
            or not isinstance(document.get("runs"), list) or not isinstance(document.get("config_base"), dict)):
        return {}
    base, width = document["config_base"], 6 + len(VALUE_KEYS)
    entries = {}
    for row in document["runs"]:
        if not isinstance(row, list) or len(row) != width:
            continue
        name, mtime, recheck, diff, absent, sources = row[:6]
        if (not isinstance(name, str) or type(mtime) is not int or type(recheck) is not bool
                or not isinstance(diff, (dict, type(None))) or not isinstance(absent, list)
                or not isinstance(sources, (dict, type(None)))):
            continue
        config = None
        if diff is not None:
            config = {**base, **diff}
            for key in absent:
                config.pop(key, None)
        values = row[6:]
        values[_CONFIG_AT:_CONFIG_AT] = (config,)
        values.append(sources)
        entries[name] = _Entry(mtime, dict(zip(SUMMARY_KEYS, values)), recheck or sources is not None)
    return entries


# ---------------------------------------------------------------- helpers over rows


def run_labels(rows: Sequence[dict]) -> dict[str, str]:
    """{run id: what people read}: the run's name, with the short id after it where names clash,
    and the whole id where even that clashes (copies of one run). Linear in the number of rows."""
    names = [str(row.get("name") or row["id"]) for row in rows]
    name_counts = Counter(names)
    labels = [f"{name} · {short_id(row['id'])}" if name_counts[name] > 1 else name for row, name in zip(rows, names)]
    label_counts = Counter(labels)
    return {row["id"]: f"{name} · {row['id']}" if label_counts[label] > 1 else label
            for row, name, label in zip(rows, names, labels)}


# config keys that differ between runs without telling them apart as experiments
NOT_SETTINGS = ("name", "runs_dir", "data_dir")


def differing_config_keys(rows: Sequence[dict], ignore: Sequence[str] = NOT_SETTINGS) -> list[str]:
    """The config keys whose values differ between the rows (a missing key counts as a value; 1,
    1.0 and True are three values, NaN one), in config order: the settings that tell the listed
    runs apart. A row whose config could not be read is left out: it has no settings to compare
    (its damage is shown apart), and counting its config as empty made every key of every run
    "differ" once one damaged run was listed. Linear in rows x keys: each value is compared with
    the first value of its key."""
    reference: dict[str, Any] = {}  # key -> the first value seen, in the order keys were first seen
    differing: set[str] = set()
    key_set = None  # the first readable config's keys: a key not in every config differs
    pending: list[str] = []  # the keys of key_set not known to differ yet: the only ones compared
    for row in rows:
        config = row.get("config")
        if config is None:
            continue
        if key_set is None:
            key_set, pending = config.keys(), list(config)
            reference.update(config)
            continue
        if config.keys() != key_set:  # a key missing somewhere: it differs (cheap set compare)
            differing.update(config.keys() ^ key_set)
            for key, value in config.items():
                reference.setdefault(key, value)
            pending = [key for key in pending if key not in differing]
        found = False
        for key in pending:
            first, value = reference[key], config[key]
            if first is not value and not _same(first, value):
                differing.add(key)
                found = True
        if found:
            pending = [key for key in pending if key not in differing]
    return [key for key in reference if key in differing and key not in ignore]
