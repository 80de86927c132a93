"""Finding runs among thousands on the Runs page: which rows match the search box and the filters,
in what order, and the settings shown as columns. Pure functions over the index's rows (summaries,
engine/run_index.py) and row positions, no Streamlit, so they are tested without a page. Each is
linear in the number of rows: at 10,000 runs a rerun must stay well under a second."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine.run_query import Query
from engine.safe_io import is_number

# the columns people sort the whole list by (the table's own header click sorts one page)
SORTS = {"created": "created", "name": "name", "status": "status", "best_test_acc": "best acc",
         "final_test_acc": "final acc", "epochs_done": "epochs done", "duration_seconds": "time"}
SETTING_PREFIX = "config."


@dataclass(frozen=True)
class Filters:
    """What the Runs page's controls ask for; an empty field asks for nothing."""

    search: str = ""
    statuses: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    sweeps: tuple[str, ...] = ()
    query: Query | None = None

    def key(self) -> tuple:
        """A hashable stand-in for these filters (the query by its text)."""
        return (self.search, self.statuses, self.datasets, self.tags, self.sweeps,
                None if self.query is None else self.query.text)


def matching(rows: Sequence[dict], search_texts: Sequence[str], filters: Filters) -> list[int]:
    """Positions of the rows every filter holds for: each word of the search in the row's search
    text (see data.search_text), its status and dataset among those asked for, every asked tag,
    its sweep among those asked for, and the expression."""
    words = filters.search.lower().split()
    statuses, datasets, sweeps = set(filters.statuses), set(filters.datasets), set(filters.sweeps)
    tags = set(filters.tags)
    test = filters.query.test if filters.query is not None else None
    found = []
    for position, (row, text) in enumerate(zip(rows, search_texts)):
        if words and not all(word in text for word in words):
            continue
        if statuses and row["status"] not in statuses:
            continue
        if datasets and row["dataset"] not in datasets:
            continue
        if sweeps and row["sweep"] not in sweeps:
            continue
        if tags and not tags.issubset(row["tags"] or ()):
            continue
        if test is not None and not test(row):
            continue
        found.append(position)
    return found


def choices(rows: Sequence[dict]) -> dict[str, list[str]]:
    """The values the filters offer: statuses, datasets and sweeps present, tags most used first."""
    tag_counts = Counter(tag for row in rows for tag in row["tags"] or ())
    return {"status": sorted({str(row["status"]) for row in rows}),
            "dataset": sorted({row["dataset"] for row in rows if row["dataset"]}),
            "sweep": sorted({row["sweep"] for row in rows if row["sweep"]}),
            "tags": [tag for tag, _ in tag_counts.most_common()]}


def value(row: dict, column: str) -> object:
    """A row's value of a summary column or of a setting (`config.lr`)."""
    if column.startswith(SETTING_PREFIX):
        return (row.get("config") or {}).get(column[len(SETTING_PREFIX):])
    return row.get(column)


def sort_positions(rows: Sequence[dict], positions: Sequence[int], column: str, descending: bool) -> list[int]:
    """`positions` ordered by a column over every matching row (not one page): numbers before
    text, runs without a value last either way. Ties keep the newest first."""
    numbers, texts, missing = [], [], []
    for position in positions:
        v = value(rows[position], column)
        if is_number(v):
            numbers.append((v, position))
        elif v is None or v == "" or (isinstance(v, float) and v != v):
            missing.append(position)
        else:
            texts.append((str(v).lower(), position))
    order = []
    for part in (numbers, texts):
        part.sort(key=lambda pair: pair[0], reverse=descending)  # stable: ties keep their order
        order += [position for _, position in part]
    return order + missing


def in_order(order: Sequence[int], positions: Sequence[int]) -> list[int]:
    """`positions` as they come in `order` (every row's position, sorted once by `sort_positions`):
    the same as sorting them alone, since that sort is stable over positions in rising order."""
    if len(positions) == len(order):
        return list(order)
    wanted = set(positions)
    return [position for position in order if position in wanted]


def page_of(positions: Sequence[int], page: int, per_page: int) -> list[int]:
    """The positions on page `page` (1-based) of `per_page` rows."""
    start = (max(page, 1) - 1) * per_page
    return list(positions[start:start + per_page])


def pick(shared: Sequence[str], shown: Sequence[str], ticked: Sequence[str]) -> list[str]:
    """The shared selection after ticking rows in a table that shows `shown`: runs not shown stay
    selected (picked on another page of the table, or under another filter), shown runs are
    selected exactly when ticked; the order of picking is kept."""
    shown_set, ticked_set = set(shown), set(ticked)
    kept = [run_id for run_id in shared if run_id not in shown_set or run_id in ticked_set]
    kept_set = set(kept)
    return kept + [run_id for run_id in ticked if run_id not in kept_set]
