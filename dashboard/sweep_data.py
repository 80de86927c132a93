"""Cached reads for the Sweep page and the seed groups, through the engine only: the sweeps' plans
(engine/sweep_plan.py), each sweep's trials (engine/sweep.py) and the runs' summaries from the run
index (engine/run_index.py). Pages call these; they never read files themselves.

Caches are keyed on what changes: the plans on their files' (name, mtime, size), a sweep's trials
on its plan's stamp and the index's `generation` (which moves whenever any run's summary changed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import data, sweep_chart
from engine import sweep, sweep_plan
from engine.run_index import RunIndex
from engine.sweep_plan import SweepError, SweepPlan

TRIAL_COLUMNS = ["trial", "status", "run_id", "name"]  # then the swept fields, then the results


def index() -> RunIndex:
    """The dashboard's one run index of its runs folder (dashboard/data.py), as of this script run."""
    view = data.runs_view()
    view.rows()
    return view.index


def index_rows(run_ids: Sequence[str]) -> list[dict]:
    """The index's summaries of these runs (those it knows), in the order given."""
    return [row for row in (data.run_row(run_id) for run_id in run_ids) if row is not None]


def _plan_stamps(root: Path) -> tuple:
    stamps = []
    for path in sweep_plan.plan_paths(root):
        try:
            stat = path.stat()
        except OSError:  # removed while listed
            continue
        stamps.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


@st.cache_data(max_entries=16, show_spinner=False)
def _sweeps(root: str, stamps: tuple) -> tuple[list[SweepPlan], list[str]]:
    return sweep_plan.list_sweeps(Path(root))


def sweeps() -> tuple[list[SweepPlan], list[str]]:
    """Every readable sweep of the runs folder, newest first, and one line per damaged plan."""
    root = data.runs_root()
    return _sweeps(str(root), _plan_stamps(root))


def find(reference: str) -> tuple[SweepPlan | None, str | None]:
    """The sweep a link names (its id, a unique start of it, or its name), or None and why not."""
    try:
        return sweep_plan.find_sweep(data.runs_root(), reference), None
    except SweepError as exc:
        return None, str(exc)


@st.cache_data(max_entries=32, show_spinner=False)
def _trials(root: str, sweep_id: str, plan_stamp: tuple, generation: int, _plan: SweepPlan,
            _rows: list[dict]) -> pd.DataFrame:
    states = sweep.trial_states(_plan, Path(root), rows=_rows)
    records = []
    for state in states:
        record = {"trial": state.trial.number, "status": str(state.status), "run_id": state.run_id,
                  "name": _plan.trial_name(state.trial)}
        for field in _plan.swept:
            record[field] = state.trial.seed if field == "seed" else state.trial.params.get(field)
        for column in (sweep_chart.BEST, sweep_chart.FINAL):
            value = state.value(column)
            record[column] = None if value is None else float(value) * 100
        records.append(record)
    columns = [*TRIAL_COLUMNS, *_plan.swept, sweep_chart.BEST, sweep_chart.FINAL]
    table = data.numbers(pd.DataFrame(records, columns=columns), [sweep_chart.BEST, sweep_chart.FINAL])
    return table.sort_values([sweep_chart.BEST, "trial"], ascending=[False, True], na_position="last",
                             kind="stable").reset_index(drop=True)


def trials(plan: SweepPlan) -> pd.DataFrame:
    """One row per trial of the sweep: its number, status, run (None while pending), swept values
    and best and final test accuracy in percent; sorted by best test accuracy, best first."""
    root = data.runs_root()
    found = index()
    stamp = next((s for s in _plan_stamps(root) if s[0] == f"{plan.id}.json"), None)
    return _trials(str(root), plan.id, stamp, found.generation, plan, found.rows)
