"""Every run in the runs folder, found by a search box, filters and an expression, a page of rows at
a time; the rows ticked here are the runs the other pages show. Tags, a note and archiving for the
ticked runs; the archived runs in a view of their own, to restore them."""

import math
import zlib

import streamlit as st

from dashboard import data, run_search, widgets
from engine import commands
from engine.run_index import differing_config_keys
from engine.run_listing import setting_text
from engine.run_query import QueryError, compile_query
from engine.runs import RunFormatError
from engine.safe_io import is_number

PER_PAGE = (100, 200, 500)
MAX_WARNINGS = 10  # damaged runs named in the warning under the table; the rest are counted
COLUMNS = {"name": "name", "status": "status", "dataset": "dataset", "epochs": "epochs",
           "test_acc_curve": "test acc curve", "best_test_acc": "best acc", "final_test_acc": "final acc",
           "duration_s": "time", "created": "created", "tags": "tags", "note": "note", "sweep": "sweep"}
DEFAULT_COLUMNS = ["name", "status", "dataset", "epochs", "test_acc_curve", "best_test_acc", "final_test_acc",
                   "duration_s", "created", "tags"]
MESSAGE = "runs_message"  # what the last tag, note, archive or restore did, shown once
ARCHIVE_PICKED = "archived_picked"

st.title("Runs")
archived = st.toggle("Archived runs", key="runs_archived",
                     help="Runs moved out of the tables (nothing is ever deleted); restore them from here.")
for kind, text in st.session_state.pop(MESSAGE, []):
    (st.success if kind == "ok" else st.error)(text, icon=":material/check:" if kind == "ok" else ":material/error:")
rows = data.run_rows(archived)
if not rows and not archived:
    widgets.no_runs_message()
    st.caption(f"Train a run with `{commands.command('train', '--preset', 'demo', runs_dir=data.runs_root())}`, "
               f"or open another runs folder with `{commands.command('dashboard', '--runs-dir', 'PATH')}`.")
    st.stop()
if not rows:
    st.info("No archived runs. Archive runs from the table (tick them, then **Archive**) to move them here.")
    st.stop()

labels = data.run_labels(archived)
choices = data.filter_choices(archived)

# ---------------------------------------------------------------- find
top = st.columns([3, 2, 2, 2, 2])
search = top[0].text_input("Search", key="runs_search", placeholder="name, id, tag or note",
                           help="Runs whose name, id, tags or note hold every word typed (any case).")
statuses = top[1].multiselect("Status", choices["status"], key="runs_status")
datasets = top[2].multiselect("Dataset", choices["dataset"], key="runs_dataset")
tags = top[3].multiselect("Tags", choices["tags"], key="runs_tags", help="Runs that carry every tag chosen.")
sweeps = top[4].multiselect("Sweep", choices["sweep"], key="runs_sweep")
expression = st.text_input(
    "Filter expression", key="runs_where", placeholder="lr > 0.05 and best_test_acc > 0.6",
    help="Any config field (lr, preset, epochs, ...) or summary field (status, best_test_acc, final_test_loss, "
         "epochs_done, tags, ...), compared with == != < <= > >= in, joined with and / or / not; text in quotes, "
         "null for no value, "
         'e.g. `preset == "fast" and "baseline" in tags`, `sweep != null`. The same expressions as '
         '`resnet-runs list --where`.')
query = None
if expression.strip():
    try:
        query = compile_query(expression, data.config_keys(archived))
    except QueryError as error:
        st.error(f"The filter expression is not used: {data.md(error)}", icon=":material/error:")
        st.code(error.pointer(), language=None)
filters = run_search.Filters(search, tuple(statuses), tuple(datasets), tuple(tags), tuple(sweeps), query)

# the matching rows and the settings that tell them apart, once per change of filters or runs


def _find() -> tuple[list[int], list[str], set, bool, list[int]]:
    found = run_search.matching(rows, data.search_text(archived), filters)
    listed = [rows[p] for p in found]
    return (found, differing_config_keys(listed) if len(found) > 1 else [], {r["dataset"] for r in listed},
            any(r["tags"] for r in listed), [p for p in found if rows[p]["warnings"]])


positions, differing, listed_datasets, any_tags, damaged = data.runs_view(archived).memo(
    ("find", id(rows), filters.key()), _find)

# ---------------------------------------------------------------- columns and order
# Columns, settings and page size are set now and then: they wait in a popover, which the browser
# draws only when opened (three widgets fewer to draw on every click; about 0.09 s of a rerun here).
sorting, table_options = st.columns([5, 2], vertical_alignment="bottom")
options = table_options.popover("Columns and rows", icon=":material/view_column:", width="stretch",
                        help="The table's columns, the config settings shown, rows per page.")
shown = options.multiselect("Columns", list(COLUMNS), default=DEFAULT_COLUMNS, key="runs_columns",
                            format_func=COLUMNS.get)
settings = options.multiselect(
    "Settings", data.config_keys(archived), key="runs_settings", placeholder="those that differ among the listed",
    help="Config fields shown as columns. Left empty, the table shows the settings that differ among the runs "
         "listed, so runs of different presets differ by more than their names.")
settings = settings or differing
per_page = options.selectbox("Per page", PER_PAGE, key="runs_per_page")
sorts = {**run_search.SORTS, **{run_search.SETTING_PREFIX + key: key for key in settings}}
sort_by, direction = sorting.columns([3, 2], vertical_alignment="bottom")  # room for "Descending" beside its switch
sort = sort_by.selectbox("Sort by", list(sorts), key="runs_sort", format_func=sorts.get,
                         help="Orders every matching run (a click on a header orders the page shown).")
descending = direction.toggle("Descending", value=True, key="runs_descending")
if sort != "created" or not descending:  # the rows come newest first
    order = data.runs_view(archived).memo(("order", id(rows), sort, descending),
                                          lambda: run_search.sort_positions(rows, range(len(rows)), sort, descending))
    positions = run_search.in_order(order, positions)  # every row sorted once, each filter's rows picked from it

pages = max(1, math.ceil(len(positions) / per_page))
view_key = zlib.crc32(repr((filters.key(), sort, descending, per_page, archived)).encode())
page = st.pagination(pages, key=f"runs_page_{view_key}") if pages > 1 else 1
on_page = run_search.page_of(positions, page, per_page)
one_dataset = len(listed_datasets) == 1 and None not in listed_datasets  # a column of one value says nothing
st.caption(f"{len(positions):,} of {len(rows):,} {'archived ' if archived else ''}runs match"
           + (f" · page {page} of {pages:,}" if pages > 1 else "")
           + (f" · all on {data.md(next(iter(listed_datasets)))}" if one_dataset and len(positions) > 1 else ""))

# ---------------------------------------------------------------- the table (one page of it)
part = data.rows_table([rows[p] for p in on_page])
view = part.assign(
    name=[labels.get(run_id, run_id) for run_id in part["id"]],
    best_test_acc=part["best_test_acc"] * 100,
    final_test_acc=part["final_test_acc"] * 100,
    epochs=[f"{done} / {planned if planned else '?'}" for done, planned in zip(part["epochs_done"],
                                                                              part["epochs_planned"])],
    status=[f"{status} (damaged)" if torn else status for status, torn in zip(part["status"], part["damaged"])],
    created=[created.replace("T", " ")[:16] if isinstance(created, str) else "" for created in part["created"]],
    tags=[", ".join(t) for t in part["tags"]],
)
setting_config = {}
for key in settings:
    column = run_search.SETTING_PREFIX + key
    values = [run_search.value(rows[p], column) for p in on_page]
    numeric = all(v is None or is_number(v) for v in values)
    view[column] = [float("nan") if v is None else v for v in values] if numeric else [setting_text(v) for v in values]
    setting_config[column] = st.column_config.Column(key if key not in COLUMNS else f"{key} (config)",
                                                     help=f"the config's {key}")
failed = (view["error"].fillna("") != "").any()
hidden = ({"dataset"} if one_dataset and len(positions) > 1 else set()) | (set() if any_tags else {"tags"})
columns = [c for c in shown if c in COLUMNS and c not in hidden] + list(setting_config)
columns += (["error"] if failed else []) + (["damaged"] if (view["damaged"] != "").any() else [])
page_ids = list(view["id"])
table_key = f"runs_table_{zlib.crc32(repr((archived, page_ids)).encode())}"  # a new page is a new table


def _pick_rows() -> None:
    ticked = [page_ids[r] for r in st.session_state[table_key].selection.rows]
    if archived:
        st.session_state[ARCHIVE_PICKED] = ticked
    else:
        st.session_state[widgets.SELECTED] = run_search.pick(widgets.selected_runs(), page_ids, ticked)


picked = set(st.session_state.get(ARCHIVE_PICKED, []) if archived else widgets.selected_runs())
st.dataframe(
    view,
    key=table_key,
    hide_index=True,
    on_select=_pick_rows,
    selection_mode="multi-row",
    selection_default={"selection": {"rows": [i for i, run_id in enumerate(page_ids) if run_id in picked]}},
    column_order=columns,
    column_config={**widgets.RUNS_TABLE_COLUMNS, **setting_config,
                   "tags": st.column_config.TextColumn("tags"), "note": st.column_config.TextColumn("note")},
    placeholder="—",
)
st.caption("Tick rows to select runs for the other pages (they also appear in the sidebar and the URL); ticks on "
           "other pages of the table and under other filters stay. Click a column header to sort this page.")

if damaged:  # one box, newest first: ten boxes would push the table's neighbours down and cost a draw each
    lines = [f"- **{data.md(labels.get(rows[p]['id'], rows[p]['id']))}** ({rows[p]['id']}): "
             f"{data.md('; '.join(rows[p]['warnings']))}" for p in damaged[:MAX_WARNINGS]]
    if len(damaged) > MAX_WARNINGS:
        lines.append(f"- … and {len(damaged) - MAX_WARNINGS:,} more (see the table's damaged files column)")
    st.warning(f"{len(damaged):,} listed run{'s are' if len(damaged) > 1 else ' is'} partly unreadable:\n"
               + "\n".join(lines), icon=":material/warning:")


# ---------------------------------------------------------------- tags, note, archive, restore
def _say(kind: str, text: str) -> None:
    st.session_state.setdefault(MESSAGE, []).append((kind, text))


def _apply_tags(run_ids: list[str]) -> None:
    add = st.session_state.get("runs_tag_add", "").replace(",", " ").split()
    remove = list(st.session_state.get("runs_tag_remove", []))
    if not add and not remove:
        _say("error", "Type tags to add, or choose tags to remove, then apply.")
        return
    for run_id in run_ids:
        try:
            data.change_tags(run_id, add, remove)
        except (ValueError, OSError, RunFormatError) as error:
            _say("error", f"{data.md(labels.get(run_id, run_id))}: {data.md(error)}")
            return
    st.session_state["runs_tag_add"], st.session_state["runs_tag_remove"] = "", []
    _say("ok", f"Tags changed on {len(run_ids)} run{'s' if len(run_ids) > 1 else ''}.")


def _save_note(run_id: str, key: str) -> None:
    try:
        data.set_note(run_id, st.session_state.get(key, ""))
    except (ValueError, OSError, RunFormatError) as error:
        _say("error", f"{data.md(labels.get(run_id, run_id))}: {data.md(error)}")
        return
    _say("ok", f"Note saved on {data.md(labels.get(run_id, run_id))}.")


def _move(run_ids: list[str], restore: bool) -> None:
    moved = []
    for run_id in run_ids:
        try:
            (data.restore_run if restore else data.archive_run)(run_id)
            moved.append(run_id)
        except (ValueError, OSError, RunFormatError) as error:
            _say("error", data.md(error))
    if restore:
        st.session_state[ARCHIVE_PICKED] = [i for i in st.session_state.get(ARCHIVE_PICKED, []) if i not in moved]
    else:
        st.session_state[widgets.SELECTED] = [i for i in widgets.selected_runs() if i not in moved]
    if moved:
        names = ", ".join(data.md(labels.get(i, i)) for i in moved)
        _say("ok", f"{'Restored' if restore else 'Archived'}: {names}." + (
            "" if restore else " Nothing was deleted: turn on **Archived runs** to see or restore them."))


if archived:
    chosen = [i for i in st.session_state.get(ARCHIVE_PICKED, []) if i in labels]
    st.button(f"Restore the ticked runs ({len(chosen)})", key="runs_restore", disabled=not chosen,
              on_click=_move, args=(chosen, True), icon=":material/unarchive:")
    st.stop()

chosen = [i for i in widgets.selected_runs() if data.run_row(i) is not None]
st.subheader(f"The selected runs ({len(chosen)})")
if not chosen:
    st.caption("Tick runs in the table to tag, annotate or archive them.")
else:
    tag_add, tag_remove, tag_go = st.columns([3, 3, 2], vertical_alignment="bottom")
    tag_add.text_input("Add tags", key="runs_tag_add", placeholder="baseline good-lr",
                       help="Words separated by spaces or commas; a tag is a letter, digit or _, then letters, "
                            "digits or . : / @ - _.")
    present = sorted({t for i in chosen for t in data.run_row(i)["tags"] or ()})
    tag_remove.multiselect("Remove tags", present, key="runs_tag_remove")
    tag_go.button("Apply to the selected runs", key="runs_tag_go", on_click=_apply_tags, args=(chosen,),
                  icon=":material/sell:")
    noted = chosen[0] if len(chosen) == 1 else st.selectbox("Note of", chosen, key="runs_note_run",
                                                             format_func=labels.get)
    note_key = f"runs_note_{noted}"
    st.text_area("Note", value=data.run_row(noted)["note"] or "", key=note_key, height=80,
                 placeholder="what this run tried, what came of it")
    note_go, archive_go = st.columns(2)
    note_go.button("Save note", key="runs_note_go", on_click=_save_note, args=(noted, note_key),
                   icon=":material/edit_note:")
    archive_go.button(f"Archive the selected runs ({len(chosen)})", key="runs_archive", on_click=_move,
                      args=(chosen, False), icon=":material/archive:",
                      help="Moves them into the runs folder's .archive/ (nothing is deleted); restore them from "
                           "the Archived runs view.")

left, right = st.columns(2)
with left:
    widgets.page_link("app_pages/run.py", "Open the selected run", icon=":material/monitoring:")
with right:
    widgets.page_link("app_pages/compare.py", "Compare the selected runs", icon=":material/compare_arrows:")
