"""Small Streamlit pieces the pages share: the run selection, run warnings, image grids.

All state that outlives a page lives in plain `st.session_state` keys or in the sidebar
widgets made by `run_selection` (keys `runs` and `run`, both mirrored in the URL)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dashboard import data

SELECTED = "runs"  # the runs picked for the other pages (sidebar multiselect, URL ?runs=...)
FOCUS = "run"  # the one run the single-run pages show (sidebar selectbox, URL ?run=...)


def run_selection(show_focus: bool) -> None:
    """The sidebar run pickers, made on every page so their values persist across pages.

    The URL mirrors them (`?runs=ID&runs=ID&run=ID`): a fresh session starts from the URL, and
    every rerun writes the URL back, since a page switch clears it."""
    ids = list(data.runs_table()["id"])
    if SELECTED not in st.session_state:  # a new session: start from the URL
        st.session_state[SELECTED] = [i for i in st.query_params.get_all(SELECTED) if i in ids]
        if st.query_params.get(FOCUS) in ids:
            st.session_state[FOCUS] = st.query_params[FOCUS]
    with st.sidebar:
        st.caption(f"Runs folder: `{data.runs_root()}`")
        st.multiselect("Selected runs", ids, key=SELECTED,
                       help="Pick runs here or in the Runs table; the Compare page uses them all.")
        if show_focus:
            options = st.session_state.get(SELECTED) or ids
            st.selectbox("Run shown", options, key=FOCUS, persist_state="session")
    st.query_params[SELECTED] = st.session_state.get(SELECTED) or []
    if st.session_state.get(FOCUS):
        st.query_params[FOCUS] = st.session_state[FOCUS]


def selected_runs() -> list[str]:
    return list(st.session_state.get(SELECTED) or [])


def focus_run() -> str | None:
    """The run the single-run pages show, or None (with a message) when there is none."""
    run_id = st.session_state.get(FOCUS)
    if not run_id:
        st.info("No runs yet. Train one with `make demo`, then reload this page.")
        return None
    return run_id


def show_warnings(run_id: str, warnings: Sequence[str]) -> None:
    for line in dict.fromkeys(warnings):  # each once, in order
        st.warning(f"{run_id}: {line}", icon=":material/warning:")


def image_grid(pngs: Sequence[bytes], captions: Sequence[str], columns: int = 8, width: int = data.IMAGE_PX) -> None:
    """Images in rows of `columns`, captions under each."""
    for start in range(0, len(pngs), columns):
        cells = st.columns(columns)
        for cell, png, caption in zip(cells, pngs[start:start + columns], captions[start:start + columns]):
            cell.image(png, caption=caption, width=width, output_format="PNG")


def class_names(run, dump: dict | None = None) -> list[str]:
    """The dataset's class names, or "0".."n-1" when dataset.json is missing or damaged."""
    names = run.class_names if run is not None else []
    if not names and dump is not None:
        names = [str(i) for i in range(dump["probs"].shape[1])]
    return names


def dump_picker(run, key: str) -> str | None:
    """Radio for the final or best-epoch prediction dump, among those the run has."""
    tags = run.prediction_tags()
    if not tags:
        st.warning("This run has no prediction dump yet (it is written after the last epoch and whenever "
                   "test accuracy improves).", icon=":material/warning:")
        return None
    labels = {"final": "final model", "best": "best epoch"}
    return st.radio("Predictions from", tags, key=key, horizontal=True, format_func=labels.get)


def open_gallery(true: int | None, pred: int | None, tag: str) -> None:
    """Go to the misclassification gallery filtered to one true/predicted pair."""
    st.session_state["gallery_preset"] = {"true": [] if true is None else [int(true)],
                                          "pred": [] if pred is None else [int(pred)], "tag": tag}
    st.switch_page("app_pages/misclassified.py")


def cam_selection(run_id: str) -> list[int]:
    """Test indices picked for Grad-CAM in the gallery, per run (kept across pages)."""
    return list(st.session_state.setdefault("cam_indices", {}).get(run_id, []))


def toggle_cam_selection(run_id: str, index: int) -> None:
    picked = st.session_state.setdefault("cam_indices", {}).setdefault(run_id, [])
    if index in picked:
        picked.remove(index)
    else:
        picked.append(index)
