"""Which training images the Training dynamics page shows, in which order, and the ranked list a
user downloads to relabel: pure functions of a run's per-image scores (engine/dynamics_scores.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.dynamics_scores import ImageScores, data_map_regions, likely_mislabelled

# Each view: what it holds and how it is ordered, as a person reads it on the page.
VIEWS = {
    "likely mislabelled": "every image, lowest area under the margin (AUM) first: the model kept preferring "
                          "another class over the given label",
    "hard to learn": "low confidence, low variability (lowest confidence first): often mislabelled or odd",
    "ambiguous": "the most variable third (most variable first): the model went back and forth",
    "easy": "high confidence, low variability (most confident first)",
    "forgotten": "right at one epoch and wrong at a later one (most often forgotten first)",
    "selected on the map": "the points selected with box or lasso on the data map (lowest AUM first)",
}


def view_order(view: str, scores: ImageScores, selected: Sequence[int] = ()) -> np.ndarray:
    """Training-image indices the view holds, in the order the page shows them."""
    ranked = likely_mislabelled(scores)  # lowest AUM first; never-drawn images last
    if view == "likely mislabelled":
        return ranked[~np.isnan(scores.aum[ranked])]
    if view == "forgotten":
        found = np.flatnonzero(scores.forgetting > 0)
        return found[np.lexsort((found, scores.aum[found], -scores.forgetting[found]))]
    if view == "selected on the map":
        chosen = np.zeros(len(scores), bool)
        chosen[np.asarray([i for i in selected if 0 <= i < len(scores)], np.int64)] = True
        return ranked[chosen[ranked]]
    region = data_map_regions(scores)[view]
    found = np.flatnonzero(region)
    key = {"hard to learn": scores.confidence[found], "ambiguous": -scores.variability[found],
           "easy": -scores.confidence[found]}[view]
    return found[np.lexsort((found, key))]


def mislabelled_table(scores: ImageScores, labels: np.ndarray | None, class_names: Sequence[str]) -> pd.DataFrame:
    """The ranked likely-mislabelled list, one row per training image (the CSV a user relabels from):
    `index` (position in the training set), the given label, and the scores."""
    order = likely_mislabelled(scores)
    given = ([class_names[int(c)] if int(c) < len(class_names) else str(int(c)) for c in labels[order]]
             if labels is not None else [""] * len(order))
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1), "index": order, "given_label": given,
        "aum": scores.aum[order], "confidence": scores.confidence[order],
        "variability": scores.variability[order], "correctness": scores.correctness[order],
        "forgetting": scores.forgetting[order], "epochs_seen": scores.epochs_seen[order]})
