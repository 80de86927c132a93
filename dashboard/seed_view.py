"""Seed groups and the verdict, drawn: for the runs on a page (Compare's selection, a sweep's
trials), each group of runs that differ only in seed with its n, mean, standard deviation and 95%
interval of best test accuracy, and for two groups whether the difference is larger than seed
noise. The statistics are engine/seed_stats.py's; this module only lays them out."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from dashboard import data, sweep_data
from engine import seed_stats
from engine.run_index import differing_config_keys
from engine.seed_stats import SeedGroup, Verdict

ONE_RECIPE = "(one recipe)"
PERCENT = st.column_config.NumberColumn(format="%.2f%%")


def group_labels(groups: Sequence[SeedGroup]) -> list[str]:
    """What tells each group apart: its values of the settings that differ between the groups."""
    keys = differing_config_keys([{"config": g.config} for g in groups], ignore=seed_stats.NOT_RECIPE)
    return [", ".join(f"{k}={g.config.get(k)}" for k in keys) or ONE_RECIPE for g in groups]


def _points(value: float | None) -> float | None:
    return None if value is None else value * 100


def groups_table(groups: Sequence[SeedGroup], labels: Sequence[str]) -> pd.DataFrame:
    """One row per group: n, mean, std and the 95% interval of best test accuracy, in percent (None
    where one run cannot give a spread)."""
    return pd.DataFrame({
        "group": list(labels),
        "n": [g.stats.n for g in groups],
        "mean": [_points(g.stats.mean) for g in groups],
        "std": [_points(g.stats.std) for g in groups],
        "95% low": [_points(g.stats.low) for g in groups],
        "95% high": [_points(g.stats.high) for g in groups],
        "seeds": [", ".join(str(s) for s in g.seeds) for g in groups],
    })


def verdict_figures(verdict: Verdict) -> dict[str, str]:
    """The verdict's numbers as text: the difference, its interval and the p-value."""
    level = f"{verdict.confidence:.0%}"
    figures = {"difference A − B (points)": "–" if verdict.difference is None else f"{verdict.difference * 100:+.2f}"}
    if verdict.p_value is not None:
        figures[f"{level} interval (points)"] = f"{verdict.low * 100:+.2f} to {verdict.high * 100:+.2f}"
        figures["p-value"] = f"{verdict.p_value:.3g}"
    return figures


def show(run_ids: Sequence[str], key: str = "seed_groups") -> None:
    """The seed groups of these runs and, for two groups (or the best two of more), the verdict.
    Only completed runs count: a run stopped early has the best accuracy of a shorter run."""
    rows = sweep_data.index_rows(run_ids)
    st.subheader("Seed groups")
    groups = seed_stats.seed_groups(rows)
    left_out = len(rows) - sum(g.stats.n for g in groups)
    if not groups:
        st.info("None of these runs has completed, so there is no seed group to show.")
        return
    labels = group_labels(groups)
    st.dataframe(groups_table(groups, labels), key=key, hide_index=True,
                 column_config={"mean": PERCENT, "std": PERCENT, "95% low": PERCENT, "95% high": PERCENT,
                                "n": st.column_config.NumberColumn("n", help="completed runs in the group")})
    st.caption("Runs whose configs differ only in seed form a group; best test accuracy, its mean, standard "
               "deviation and the 95% t-interval of the mean."
               + (f" {left_out} run(s) left out: not completed." if left_out else ""))
    if len(groups) < 2:
        return
    show_verdict(groups[:2], labels[:2], best_two=len(groups) > 2)


def show_verdict(groups: Sequence[SeedGroup], labels: Sequence[str], best_two: bool = False) -> None:
    a, b = groups
    verdict = seed_stats.compare_groups(a, b)
    st.markdown(("**The best two groups:** " if best_two else "")
                + f"A = {data.md(labels[0])} ({_runs(a)}), B = {data.md(labels[1])} ({_runs(b)})")
    cells = st.columns(3)
    for cell, (label, value) in zip(cells, verdict_figures(verdict).items()):
        cell.metric(label, value)
    if verdict.larger_than_noise:
        st.success(verdict.note, icon=":material/check_circle:")
    else:
        st.info(verdict.note, icon=":material/info:")
    st.caption(f"Method: {verdict.method}.")


def _runs(group: SeedGroup) -> str:
    return f"{group.stats.n} run" + ("s" if group.stats.n != 1 else "")

