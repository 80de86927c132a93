"""Every run in the runs folder, sortable; the rows picked here are the runs the other pages show."""

import streamlit as st

from dashboard import data, widgets

st.title("Runs")
table = data.runs_table()
if table.empty:
    st.info(f"No runs in `{data.runs_root()}`. Train one with `make demo`, or point the dashboard "
            "elsewhere with `streamlit run dashboard/app.py -- --runs-dir PATH`.")
    st.stop()

view = table.assign(
    best_test_acc=table["best_test_acc"] * 100,
    final_test_acc=table["final_test_acc"] * 100,
    created=table["created"].str.replace("T", " ").str.slice(0, 19),
    warnings=table["warnings"].where(table["warnings"] != "", None),
)


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
    column_order=["name", "status", "error", "dataset", "epochs_done", "epochs_planned", "best_test_acc",
                  "best_epoch", "final_test_acc", "duration_s", "device", "created", "warnings", "id"],
    column_config={
        "name": "name",
        "error": st.column_config.TextColumn("error", width="medium"),
        "epochs_done": st.column_config.NumberColumn("epochs done"),
        "epochs_planned": st.column_config.NumberColumn("planned"),
        "best_test_acc": st.column_config.NumberColumn("best test acc", format="%.2f%%"),
        "best_epoch": st.column_config.NumberColumn("best epoch"),
        "final_test_acc": st.column_config.NumberColumn("final test acc", format="%.2f%%"),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
        "created": "created (UTC)",
        "warnings": st.column_config.TextColumn("warnings", width="medium"),
        "id": "run id",
    },
)
st.caption("Tick rows to select runs for the other pages (they also appear in the sidebar and the URL). "
           "Click a column header to sort.")

for row in table.itertuples():
    if row.warnings:
        st.warning(f"**{row.name}** ({row.id}) is partly unreadable: {row.warnings}", icon=":material/warning:")

left, right = st.columns(2)
left.page_link("app_pages/run.py", label="Open the selected run", icon=":material/monitoring:")
right.page_link("app_pages/compare.py", label="Compare the selected runs", icon=":material/compare_arrows:")
