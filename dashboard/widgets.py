"""Small Streamlit pieces the pages share: the run selection, run warnings, image grids.

All state that outlives a page lives in plain `st.session_state` keys or in the sidebar
widgets made by `run_selection` (keys `runs` and `run`, both mirrored in the URL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import streamlit as st

from dashboard import data, dynamics_data, metrics, section_tabs

SELECTED = "selected_runs"  # plain session keys: they survive every page switch (widget keys need not)
FOCUS = "focus_run"
UNKNOWN = "unknown_run_ids"
UNSELECTED_FOCUS = "link_run_not_selected"  # a link's run= that is not among its runs=
URL_WRITTEN = "page_url_written"  # a page's own URL parameters as it last wrote them
SELECT_WIDGET, FOCUS_WIDGET = "runs", "run"  # the sidebar widgets, also the URL parameter names


# The Runs table's columns. A column given a width keeps it whatever its header says, so every
# such width fits its header (tests/test_browser_issue18.py measures them in the browser's font).
RUNS_TABLE_COLUMNS = {
    "name": st.column_config.TextColumn("name", width=170),
    "epochs": st.column_config.TextColumn("epochs", help="done / planned"),
    "test_acc_curve": st.column_config.LineChartColumn("test acc curve", y_min=0, y_max=100, width=110,
                                                       help="test accuracy (%) after each epoch"),
    "best_test_acc": st.column_config.NumberColumn("best acc", format="%.2f%%",
                                                   help="best test accuracy (earliest epoch on a tie)"),
    "final_test_acc": st.column_config.NumberColumn("final acc", format="%.2f%%",
                                                    help="test accuracy after the last epoch"),
    "duration_s": st.column_config.NumberColumn("time (s)", format="%.0f", help="wall-clock duration"),
    "created": st.column_config.TextColumn("created (UTC)"),
    "error": st.column_config.TextColumn("error", width="medium"),
    "damaged": st.column_config.TextColumn("damaged files", width="medium",
                                           help="files that could not be read whole; see the warnings below"),
}


def _keep_selection() -> None:
    st.session_state[SELECTED] = list(st.session_state[SELECT_WIDGET])
    st.session_state.pop(UNSELECTED_FOCUS, None)  # the person chose: the link's note no longer applies


def _keep_focus() -> None:
    st.session_state[FOCUS] = st.session_state[FOCUS_WIDGET]
    st.session_state.pop(UNSELECTED_FOCUS, None)


PICKER_LIMIT = 100  # the most runs the sidebar's pickers offer at once; a search narrows the rest
FIND_WIDGET = "runs_find"


def picker_options(ids: Sequence[str], labels: dict[str, str], selected: Sequence[str], text: str,
                   limit: int = PICKER_LIMIT) -> tuple[list[str], int]:
    """(options, how many runs match): the selected runs, then up to `limit` runs whose label or id
    holds every word of `text` (case-insensitive), newest first. Linear in the number of runs."""
    words = text.lower().split()
    matches = [i for i in ids if all(w in f"{labels.get(i, i)} {i}".lower() for w in words)] if words else list(ids)
    chosen = set(selected)
    return list(selected) + [i for i in matches[:limit] if i not in chosen], len(matches)


def run_selection(show_focus: bool, write_url: bool = True, tabs: section_tabs.SectionTabs | None = None) -> None:
    """The sidebar run pickers, made on every page. Their values live in plain session keys and
    are written back into the widgets and the URL on every run, so no way of moving between pages
    (sidebar, links, buttons, chart clicks, the browser's back button) loses them. A page that
    keeps state of its own in the URL passes `write_url=False` and writes the whole URL itself
    (`write_url`): one write per run, since each change of the URL is a step in the browser's
    history. Over a large runs folder the pickers offer the selected runs plus at most
    PICKER_LIMIT others, found by a search box, never one list of every run. A page drawn in
    `tabs` has its chosen tab written into the same URL."""
    data.refresh_runs()  # once per script run: the pages read the rows as of now
    labels = data.run_labels()
    ids = list(labels)
    if SELECTED not in st.session_state:  # a new session: start from the URL
        wanted = st.query_params.get_all(SELECT_WIDGET)
        focus = st.query_params.get(FOCUS_WIDGET)
        st.session_state[SELECTED] = [i for i in dict.fromkeys(wanted) if i in labels]
        if focus in labels:
            st.session_state[FOCUS] = focus
            if st.session_state[SELECTED] and focus not in st.session_state[SELECTED]:
                st.session_state[UNSELECTED_FOCUS] = focus
        st.session_state[UNKNOWN] = [i for i in dict.fromkeys([*wanted, *([focus] if focus else [])])
                                     if i not in labels]
    selected = [i for i in st.session_state[SELECTED] if i in labels]
    focus = st.session_state.get(FOCUS)
    options = selected or [*([focus] if focus in labels else []), *(i for i in ids[:PICKER_LIMIT] if i != focus)]
    if focus not in options:
        st.session_state[FOCUS] = options[0] if options else None
    st.session_state[SELECT_WIDGET] = selected
    with st.sidebar:
        if st.session_state.get(UNKNOWN):
            st.warning("Not in this runs folder, so not shown: " + ", ".join(
                f"`{i}`" for i in st.session_state[UNKNOWN]), icon=":material/warning:")
        choices = ids
        if len(ids) > PICKER_LIMIT:
            text = st.text_input("Find runs", key=FIND_WIDGET, placeholder="part of a name or id",
                                 help="Narrows the runs offered below; the Runs page searches tags and notes too.")
            choices, matching = picker_options(ids, labels, selected, text or "")
            st.caption(f"{matching:,} of {len(ids):,} runs match" + (
                f"; the newest {PICKER_LIMIT} are offered, type to narrow" if matching > PICKER_LIMIT else ""))
        st.multiselect("Selected runs", choices, key=SELECT_WIDGET, format_func=labels.get, on_change=_keep_selection,
                       help="Pick runs here or in the Runs table; the Compare page uses them all.")
        if show_focus and options:
            st.session_state[FOCUS_WIDGET] = st.session_state[FOCUS]
            st.selectbox("Run shown", options, key=FOCUS_WIDGET, format_func=labels.get, on_change=_keep_focus)
    if write_url:
        st.query_params.from_dict({**url_state(), **(tabs.url_params() if tabs else {})})


def short_labels(labels: dict[str, str], width: int = 32) -> dict[str, str]:
    """Labels cut to `width` characters for a chart's legend, keeping the short id after ` · `
    that tells runs of one name apart; a label whose cut form would clash stays whole."""
    def cut(text: str) -> str:
        if len(text) <= width:
            return text
        name, sep, suffix = text.rpartition(" · ")
        if sep and len(suffix) < width - 8:
            return f"{name[:width - len(suffix) - 4]}… · {suffix}"
        return text[:width - 1] + "…"

    short = {run_id: cut(text) for run_id, text in labels.items()}
    counts = Counter(short.values())
    return {run_id: text if counts[text] == 1 else labels[run_id] for run_id, text in short.items()}


def legend_below(fig, names: Sequence[str], width_px: int, font_px: float = 12):
    """A horizontal legend under the plot, the figure made taller by the rows it needs, so ten runs
    do not squeeze the curves: entries are packed into rows of about `width_px`."""
    rows, used = 1, 0.0
    for name in names:
        entry = 0.6 * font_px * len(name) + 45  # text plus the line sample and the gap after it
        if used and used + entry > width_px:
            rows, used = rows + 1, 0.0
        used += entry
    extra = 22 * rows + 20
    height = (fig.layout.height or 340) + extra
    plot = height - 50 - (60 + extra)  # the plot area keeps its height: top margin 50, bottom 60 + the legend
    fig.update_layout(height=height, margin=dict(b=60 + extra),  # below the tick labels and the axis title
                      legend=dict(orientation="h", yanchor="top", y=-70 / plot, x=0, xanchor="left"))
    return fig


def write_url(params: dict[str, list[str] | str] | None = None) -> None:
    """The URL of a page that keeps state of its own there: the run selection, then `params`."""
    params = {key: [value] if isinstance(value, str) else list(value) for key, value in (params or {}).items()}
    st.session_state[URL_WRITTEN] = params
    st.query_params.from_dict({**url_state(), **params})


def new_url_params(keys) -> dict[str, list[str]] | None:
    """A page's own parameters in the URL, when they are not what the page wrote last: a link
    opened or reloaded, the back or forward button, a chart click that opens the page. None when
    the URL holds none of them or the page's own (its widgets hold the state then)."""
    incoming = {key: st.query_params.get_all(key) for key in keys if key in st.query_params}
    if not incoming or incoming == st.session_state.get(URL_WRITTEN):
        return None
    return incoming


def url_state() -> dict[str, list[str] | str]:
    """The selection as URL parameters, for `st.switch_page` / `st.page_link`, which clear the URL."""
    state: dict[str, list[str] | str] = {SELECT_WIDGET: selected_runs()}
    if st.session_state.get(FOCUS):
        state[FOCUS_WIDGET] = st.session_state[FOCUS]
    return state


def selected_runs() -> list[str]:
    return list(st.session_state.get(SELECTED) or [])


def focus_run() -> str | None:
    """The run the single-run pages show, or None (with a message) when there is none."""
    run_id = st.session_state.get(FOCUS)
    if not run_id:
        no_runs_message()
        return None
    asked = st.session_state.get(UNSELECTED_FOCUS)
    if asked and asked != run_id:
        labels = data.run_labels()
        st.warning(f"The link asks to show **{data.md(labels.get(asked, asked))}** (`run={asked}`), but that run is "
                   f"not among the runs it selects (`runs=`), so **{data.md(labels.get(run_id, run_id))}** is shown. "
                   "Add it to the selected runs in the sidebar to see it.", icon=":material/warning:")
    return run_id


def shown_run(before_stop=None):
    """The focused run, loaded, for a single-run page; else the page stops there (after
    `before_stop`, e.g. writing its URL), the reason already shown by `focus_run`."""
    run_id = focus_run()
    run = data.load_run(run_id) if run_id else None
    if run is None:
        if before_stop is not None:
            before_stop()
        st.stop()
    return run


def no_runs_message() -> None:
    """Says why there is nothing to show: a missing runs folder is an error, an empty one is not."""
    root = data.runs_root()
    if not root.is_dir():
        st.error(f"The runs folder `{root}` does not exist. Check the path given with `--runs-dir` "
                 "(or $RUNS_DIR), or train a run there first.", icon=":material/error:")
    else:
        st.info(f"No runs yet in `{root}`. Train one with `make demo`, then reload this page.")


def page_link(page: str, label: str, icon: str | None = None, **kwargs) -> None:
    """A link to another page that keeps the run selection."""
    st.page_link(page, label=label, icon=icon, query_params=url_state(), **kwargs)


def show_warnings(run_id: str, warnings: Sequence[str]) -> None:
    label = data.run_labels().get(run_id, run_id)
    for line in dict.fromkeys(warnings):  # each once, in order
        st.warning(f"{label}: {line}", icon=":material/warning:")


def image_grid(pngs: Sequence[bytes], captions: Sequence[str], columns: int = 8, width: int = data.IMAGE_PX) -> None:
    """Images in rows of `columns`, captions under each."""
    for start in range(0, len(pngs), columns):
        cells = st.columns(columns)
        for cell, png, caption in zip(cells, pngs[start:start + columns], captions[start:start + columns]):
            cell.image(png, width=width, output_format="PNG")
            cell.caption(caption)  # a caption under the image wraps; the image's own is cut to its width


def class_names(run, dump: dict | None = None) -> list[str]:
    """The dataset's class names, or "0".."n-1" when dataset.json is missing or damaged."""
    names = run.class_names if run is not None else []
    if not names and dump is not None:  # an epoch's predictions hold no `probs`: count the classes seen
        count = dump["probs"].shape[1] if "probs" in dump else int(max(dump["label"].max(initial=0),
                                                                        dump["pred"].max(initial=0))) + 1
        names = [str(i) for i in range(count)]
    return names


def prediction_source(run, key: str) -> str | None:
    """The test predictions a page shows, as a source tag: the final or best dump, or, with a
    slider, those recorded at the end of any epoch ("epoch-7"). None when the run has none yet."""
    tags = list(run.prediction_tags())
    epochs = dynamics_data.recorded_epochs(run.id)
    if not tags and not epochs:
        st.warning("This run has no predictions yet (they are written after the last epoch and whenever "
                   "test accuracy improves, and per epoch while it trains).", icon=":material/warning:")
        return None
    return _source_picker(tags, epochs, key, "The test predictions recorded at the end of that epoch, "
                          "as the run evaluated then")


def common_prediction_source(run_ids: Sequence[str], key: str) -> str:
    """The source several runs are compared on: final, best, or an epoch every one of them
    recorded (so two runs' matrices are read at the same moment of training)."""
    common = set.intersection(*(set(dynamics_data.recorded_epochs(r)) for r in run_ids)) if run_ids else set()
    return _source_picker(list(data.TAG_LABELS), sorted(common), key, "The test predictions each run recorded at "
                          "the end of that epoch; only epochs that every run here recorded are offered")


def _source_picker(tags: list[str], epochs: list[int], key: str, epoch_help: str) -> str:
    kinds = tags + (["epoch"] if epochs else [])
    kind_key, epoch_key = f"{key}_kind", f"{key}_epoch"
    if st.session_state.get(kind_key) not in kinds:  # another run's choice, or none yet
        st.session_state.pop(kind_key, None)
    if st.session_state.get(epoch_key) not in epochs:
        st.session_state.pop(epoch_key, None)
    labels = {"epoch": "an epoch", **data.TAG_LABELS}
    cols = st.columns([2, 3]) if epochs else [st.container()]
    kind = cols[0].radio("Predictions from", kinds, key=kind_key, horizontal=True, format_func=labels.get)
    if kind != "epoch":
        return kind
    st.session_state.setdefault(epoch_key, epochs[-1])
    epoch = cols[1].select_slider("Epoch", epochs, key=epoch_key, help=epoch_help)
    return dynamics_data.epoch_tag(epoch)


def choose_prediction_source(key: str, tag: str) -> None:
    """Set the source `prediction_source(run, key)` shows at its next call (from a link)."""
    epoch = dynamics_data.tag_epoch(tag)
    st.session_state[f"{key}_kind"] = "epoch" if epoch is not None else tag
    if epoch is not None:
        st.session_state[f"{key}_epoch"] = epoch


def gallery_params(true: Sequence[int], pred: Sequence[int], confidence: tuple[float, float], tag: str,
                   names: Sequence[str], tags: Sequence[str]) -> dict[str, list[str] | str]:
    """The gallery's filters as URL parameters (sort and page size as the session last had them),
    so a shared or reloaded link opens on the same images."""
    sort = st.session_state.get("mis_sort", next(iter(metrics.SORTS)))
    per_page = st.session_state.get("mis_per_page", metrics.DEFAULT_PER_PAGE)
    return metrics.gallery_query(true, pred, confidence, sort, per_page, tag, names,
                                 default_tag=tags[0] if tags else tag)


def open_gallery(true: int | None, pred: int | None, tag: str, names: Sequence[str], tags: Sequence[str]) -> None:
    """Go to the misclassification gallery filtered to one true/predicted pair: the filters travel
    in its URL, which the gallery reads as it opens (and writes back unchanged, so the back
    button returns here)."""
    params = gallery_params([] if true is None else [int(true)], [] if pred is None else [int(pred)], (0.0, 1.0),
                            tag, names, tags)
    st.switch_page("app_pages/misclassified.py", query_params={**url_state(), **params})


def cam_selection(run_id: str) -> list[int]:
    """Test indices picked for Grad-CAM in the gallery, per run (kept across pages)."""
    return list(st.session_state.setdefault("cam_indices", {}).get(run_id, []))


def toggle_cam_selection(run_id: str, index: int) -> None:
    picked = st.session_state.setdefault("cam_indices", {}).setdefault(run_id, [])
    if index in picked:
        picked.remove(index)
    else:
        picked.append(index)
