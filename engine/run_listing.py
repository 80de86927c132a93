"""What `resnet-runs list` prints, from the index's rows (engine/run_index.py): the runs table and
the JSON array for scripts, and the filters it takes (`--status`, `--tag`, `--where`).

The table keeps whole ids and names (either can be typed to name a run), shows the tags, names
the damaged files under a damaged run, and adds the settings that tell the listed runs apart as
columns while they fit the terminal. Text read from a run reaches the terminal through
`runs.printable`; the JSON escapes every character outside ASCII, so it is safe on a terminal too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine import runs
from engine.run_index import differing_config_keys
from engine.run_layout import Status
from engine.run_query import Query, QueryError
from engine.run_summary import public
from engine.run_validate import TAG_PATTERN
from engine.safe_io import is_number, to_strict_json

STATUS_NAMES = tuple(status.value for status in Status)
STATUS_WIDTH, DATASET_WIDTH, TAGS_WIDTH, SETTING_WIDTH = 21, 24, 30, 16
_ENCODER = json.JSONEncoder(allow_nan=False, check_circular=False)  # rows come from JSON: no cycles


class BadFilter(ValueError):
    """A filter that cannot be used: the message is the `error:` line, `details` the lines under it
    (an expression with a caret under the column)."""

    def __init__(self, message: str, details: Sequence[str] = ()):
        super().__init__(message)
        self.details = list(details)


# ---------------------------------------------------------------- filters


def parse_statuses(values: Iterable[str]) -> frozenset[str]:
    """`--status completed,failed --status running` -> those statuses; BadFilter names the valid ones."""
    found = set()
    for value in values:
        for word in value.split(","):
            status = word.strip().lower()
            if status not in STATUS_NAMES:
                raise BadFilter(f"--status {runs.printable(word.strip())!r} is not a status; give one of "
                                f"{', '.join(STATUS_NAMES)} (repeat --status, or separate them with commas)")
            found.add(status)
    return frozenset(found)


def check_tags(values: Iterable[str]) -> tuple[str, ...]:
    """The tags of `--tag T` (repeatable: a run must carry every one); BadFilter for one that is no tag."""
    tags = tuple(values)
    for tag in tags:
        if TAG_PATTERN.match(tag) is None:
            raise BadFilter(f"--tag {runs.printable(tag)!r} is not a tag: a tag is a letter, digit or _, then "
                            "letters, digits or . : / @ - _ (at most 64); repeat --tag for runs that carry "
                            "several")
    return tags


def expression_refusal(error: QueryError) -> BadFilter:
    """`--where` refused: one `error:` line, then the expression with a caret under the column."""
    if not error.column:
        return BadFilter(f"--where: {runs.printable(error)}")
    expression = error.expression.replace("\r", " ").replace("\n", " ").replace("\t", " ")  # as compiled
    caret = " " * len(runs.printable(expression[: error.column - 1])) + "^"
    return BadFilter(f"--where: {runs.printable(error)}", [f"  {runs.printable(expression)}", f"  {caret}"])


@dataclass(frozen=True)
class Selection:
    """The runs `list` shows: every filter given must hold (statuses: any of them)."""

    statuses: frozenset[str] = frozenset()
    tags: tuple[str, ...] = ()
    query: Query | None = None

    def apply(self, rows: Sequence[dict]) -> list[dict]:
        chosen = list(rows)
        if self.statuses:
            chosen = [row for row in chosen if row["status"] in self.statuses]
        if self.tags:
            wanted = set(self.tags)
            chosen = [row for row in chosen if wanted.issubset(row.get("tags") or ())]
        if self.query is not None:
            chosen = self.query.filter(chosen)
        return chosen

    def describe(self) -> str:
        """The filters as flags, for the line that says nothing matched."""
        words = [f"--status {','.join(sorted(self.statuses))}"] if self.statuses else []
        words += [f"--tag {tag}" for tag in self.tags]
        if self.query is not None:
            words.append(f"--where {self.query.text!r}")
        return runs.printable(" ".join(words))


# ---------------------------------------------------------------- JSON


def json_text(rows: Iterable[dict]) -> str:
    """One JSON array, one object per run (its summary without bookkeeping), an object a line."""
    parts = []
    for row in rows:
        obj = public(row)
        try:
            parts.append(_ENCODER.encode(obj))
        except ValueError:  # a non-finite number: null, as the run files store it
            parts.append(to_strict_json(obj))
    return "[\n" + ",\n".join(parts) + "\n]" if parts else "[]"


# ---------------------------------------------------------------- the table


def cell(value: object, width: int) -> str:
    """`value` printable, cut to `width` with `~` as its last character when longer."""
    text = runs.printable(value)
    return text if len(text) <= width else text[:width - 1] + "~"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.2%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.1f}m" if seconds < 3600 else f"{seconds / 3600:.1f}h"


def setting_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return cell(value, SETTING_WIDTH)


def problem_lines(row: dict, indent: str) -> list[str]:
    """One line per problem of a row, naming the file: `damaged: epochs.jsonl: line 3 ...`; a
    problem of a file that is not damaged (the unfinished last line of a live run) is a note."""
    damaged = set(row.get("damaged") or ())
    return [f"{indent}{'damaged' if text.split(': ', 1)[0] in damaged else 'note'}: {runs.printable(text)}"
            for text in row.get("warnings") or ()]


def table_lines(rows: Sequence[dict], width: int) -> list[str]:
    """The runs table: header, rule, one line per run (and its problems under it). The settings
    that tell the rows apart follow as columns, in config order, each while the line stays within
    `width`; a last line names those that did not fit."""
    base = []
    for row in rows:
        status = f"{row['status']} (damaged)" if row.get("damaged") else str(row["status"])
        base.append((runs.printable(row["id"]), runs.printable(row["name"]), status,
                     cell(row.get("dataset") or "-", DATASET_WIDTH),
                     f"{row.get('epochs_done') or 0}/{row.get('epochs_planned') or '?'}",
                     percent(row.get("best_test_acc")), percent(row.get("final_test_acc")),
                     cell(", ".join(row.get("tags") or ()) or "-", TAGS_WIDTH)))
    id_width = max(len("id"), *(len(b[0]) for b in base))
    name_width = max(len("name"), *(len(b[1]) for b in base))
    tags_width = max(len("tags"), *(len(b[7]) for b in base))

    def line(run_id, name, status, dataset, epochs, best, final, tags) -> str:
        return (f"{run_id:<{id_width}}  {name:<{name_width}}  {status:<{STATUS_WIDTH}} {dataset:<{DATASET_WIDTH}} "
                f"{epochs:>7} {best:>9} {final:>9}  {tags:<{tags_width}}")

    header = line("id", "name", "status", "dataset", "epochs", "best acc", "final acc", "tags")
    used = len(header)
    columns, hidden = [], []
    for key in differing_config_keys(rows):
        values = [(row.get("config") or {}).get(key) for row in rows]
        texts = [setting_text(v) for v in values]
        column_width = max(len(key), *(len(t) for t in texts))
        if used + 2 + column_width > width:
            hidden.append(key)
            continue
        right = all(is_number(v) or v is None for v in values)
        columns.append((key, texts, column_width, right))
        used += 2 + column_width

    def settings(texts: Sequence[str]) -> str:
        return "".join(f"  {t:>{w}}" if right else f"  {t:<{w}}"
                       for t, (_, _, w, right) in zip(texts, columns))

    lines = [(header + settings([key for key, *_ in columns])).rstrip(), "-" * used]
    for i, (row, cells) in enumerate(zip(rows, base)):
        lines.append((line(*cells) + settings([texts[i] for _, texts, _, _ in columns])).rstrip())
        lines.extend(problem_lines(row, "    "))
    if hidden:
        lines.append(f"(settings that differ but do not fit {width} columns: {', '.join(hidden)}; "
                     "a wider terminal shows them, `--json` has every setting)")
    return lines
