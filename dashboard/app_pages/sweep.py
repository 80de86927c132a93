"""One sweep (`resnet-runs sweep`): its swept settings against test accuracy in parallel
coordinates, where a box dragged over an axis's points narrows the trials table too,
the trials best first (a click opens one on the Run page, ticked rows go
to Compare), and its seed groups. The sweep shown is kept in the URL (`sweep=`)."""

import zlib

import streamlit as st

from dashboard import data, section_tabs, seed_view, sweep_chart, sweep_data, widgets
from engine import commands

SWEEP_PARAM = "sweep"
CHOSEN, PICKER = "sweep_chosen", "sweep_picker"  # a plain key survives page switches; the widget's does not
PICKED = "sweep_picked_runs"  # the ticked trials' run ids, by sweep

st.title("Sweep")
plans, problems = sweep_data.sweeps()
for problem in problems:
    st.warning(data.md(problem), icon=":material/warning:")
if not plans:
    st.info(f"No sweeps in `{data.runs_root()}` yet. Start one with "
            f"`{commands.command('sweep', '--grid', 'lr=0.02,0.05', '--seeds', '2', runs_dir=data.runs_root())}`.")
    st.stop()
by_id = {plan.id: plan for plan in plans}

asked = widgets.new_url_params([SWEEP_PARAM])
if asked:  # a link, a reload, the back button: the URL names the sweep
    plan, why = sweep_data.find(asked[SWEEP_PARAM][0])
    if plan is None:
        st.warning(f"The link's sweep cannot be shown: {data.md(why)}", icon=":material/warning:")
    else:
        st.session_state[CHOSEN] = plan.id
if st.session_state.get(CHOSEN) not in by_id:
    st.session_state[CHOSEN] = plans[0].id


def _keep_choice() -> None:
    st.session_state[CHOSEN] = st.session_state[PICKER]


st.session_state[PICKER] = st.session_state[CHOSEN]
st.selectbox("Sweep", list(by_id), key=PICKER, on_change=_keep_choice,
             format_func=lambda i: f"{by_id[i].name} · {by_id[i].created[:16].replace('T', ' ')} · {i}")
plan = by_id[st.session_state[CHOSEN]]
widgets.write_url({SWEEP_PARAM: plan.id})

table = sweep_data.trials(plan)
counts = table["status"].value_counts()
st.caption(f"`{plan.id}` · {len(plan.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
           + f" · swept: {', '.join(plan.swept) or 'nothing'}")

# ---------------------------------------------------------------- parallel coordinates and the brush
axes = sweep_chart.axes(table, plan.swept)
brushes = {}
if table[sweep_chart.BEST].notna().any() and axes:
    # Keyed by the sweep only: the chart's selection lives as long as its figure (a trial that
    # finishes draws a new one, with no boxes), and the figure never depends on the selection.
    event = st.plotly_chart(sweep_chart.parallel_coordinates(table, axes), key=f"sweep_chart_{plan.id}",
                            on_select="rerun", selection_mode="box", config=sweep_chart.CONFIG)
    brushes = sweep_chart.brushes_from(event.selection.box if event else [], axes)
    st.caption("Drag a box over an axis's points to keep the trials in that range, in the table below; hold "
               "Shift to add a box (boxes on several axes keep the trials inside all of them); double-click "
               "the chart to clear them.")
else:
    st.info("No trial has a test accuracy yet: the chart appears once the first epoch ends.")

# ---------------------------------------------------------------- the trials, best first
shown = sweep_chart.brushed(table, axes, brushes).reset_index(drop=True)
st.subheader(f"Trials ({len(shown)} of {len(table)})")
picked = st.session_state.setdefault(PICKED, {}).setdefault(plan.id, [])
# A table of other rows is another widget: a selection kept by row position must not land on other trials.
table_key = f"trials_{plan.id}_{zlib.crc32(repr(shown['trial'].tolist()).encode())}"


def _pick_rows() -> None:
    rows = st.session_state[table_key].selection.rows
    on_view = set(shown["run_id"])
    hidden = [r for r in st.session_state[PICKED][plan.id] if r not in on_view]  # ticked, then brushed away
    st.session_state[PICKED][plan.id] = hidden + [shown["run_id"].iloc[r] for r in rows if shown["run_id"].iloc[r]]


event = st.dataframe(
    shown, key=table_key, hide_index=True, on_select=_pick_rows,
    selection_mode=["multi-row", "single-cell"],
    selection_default={"selection": {"rows": [i for i, r in enumerate(shown["run_id"]) if r in picked]}},
    column_order=["trial", "status", *plan.swept, sweep_chart.BEST, sweep_chart.FINAL, "name"],
    column_config={"trial": st.column_config.NumberColumn("trial", format="%d"),
                   sweep_chart.BEST: st.column_config.NumberColumn("best acc", format="%.2f%%"),
                   sweep_chart.FINAL: st.column_config.NumberColumn("final acc", format="%.2f%%"),
                   "name": st.column_config.TextColumn("run")})
st.caption("Click a trial to open it on the Run page; tick trials, then compare them.")
cells = event.selection.cells if event else []
if cells:
    run_id = shown["run_id"].iloc[cells[0][0]]
    if run_id:
        selected = widgets.selected_runs()
        if selected and run_id not in selected:  # the Run page shows a run among the selection
            st.session_state[widgets.SELECTED] = [*selected, run_id]
        st.session_state[widgets.FOCUS] = run_id
        st.switch_page("app_pages/run.py", query_params=widgets.url_state())
    st.info(f"Trial {shown['trial'].iloc[cells[0][0]]} has no run yet.")

if st.button(f"Compare the {len(picked)} ticked trials", disabled=len(picked) < 2, key="sweep_compare",
             help="Opens them on the Compare page, with their seed groups and whether they differ by more "
                  "than seed noise."):
    st.session_state[widgets.SELECTED] = list(picked)
    section_tabs.COMPARE.open_next("Seed groups")
    st.switch_page("app_pages/compare.py", query_params=widgets.url_state())

# ---------------------------------------------------------------- seed groups
seed_view.show([r for r in table["run_id"] if r], key=f"sweep_groups_{plan.id}")
