"""Every run in the runs folder, sortable; the rows picked here are the runs the other pages show."""

import streamlit as st

from dashboard import data, widgets
from engine import commands

st.title("Runs")
table = data.runs_table()
if table.empty:
    widgets.no_runs_message()
    st.caption(f"Train a run with `{commands.command('train', '--preset', 'demo', runs_dir=data.runs_root())}`, "
               f"or open another runs folder with `{commands.command('dashboard', '--runs-dir', 'PATH')}`.")
    st.stop()

labels = data.run_labels()
view = table.assign(
    name=[labels[run_id] for run_id in table["id"]],
    best_test_acc=table["best_test_acc"] * 100,
    final_test_acc=table["final_test_acc"] * 100,
    epochs=[f"{done} / {planned if planned else '?'}" for done, planned in zip(table["epochs_done"],
                                                                               table["epochs_planned"])],
    status=[f"{status} (damaged)" if damaged else status for status, damaged in zip(table["status"],
                                                                                       table["damaged"])],
    created=table["created"].fillna("").str.replace("T", " ").str.slice(0, 16),
)
failed = table["error"].notna() & (table["error"].fillna("") != "")
columns = ["name", "status", "dataset", "epochs", "test_acc_curve", "best_test_acc", "final_test_acc",
           "duration_s", "created"]
columns += (["error"] if failed.any() else []) + (["damaged"] if table["damaged"].any() else [])


def _pick_rows() -> None:
    rows = st.session_state["runs_table"].selection.rows
    st.session_state[widgets.SELECTED] = [view["id"].iloc[r] for r in rows]


selected = set(widgets.selected_runs())
st.dataframe(
    view,
    key="runs_table",
    hide_index=True,
    on_select=_pick_rows,
    selection_mode="multi-row",
    selection_default={"selection": {"rows": [i for i, run_id in enumerate(view["id"]) if run_id in selected]}},
    column_order=columns,
    column_config=widgets.RUNS_TABLE_COLUMNS,
)
st.caption("Tick rows to select runs for the other pages (they also appear in the sidebar and the URL). "
           "Click a column header to sort.")

for row in table.itertuples():
    if row.warnings:
        st.warning(f"**{data.md(labels[row.id])}** ({row.id}) is partly unreadable: {data.md(row.warnings)}",
                   icon=":material/warning:")

left, right = st.columns(2)
with left:
    widgets.page_link("app_pages/run.py", "Open the selected run", icon=":material/monitoring:")
with right:
    widgets.page_link("app_pages/compare.py", "Compare the selected runs", icon=":material/compare_arrows:")
