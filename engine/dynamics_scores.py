"""Per-training-image scores derived from a run's recorded dynamics (engine/dynamics.py): pure
functions of the arrays, so any tool computes the same numbers from the same run.

- Dataset cartography (Swayamdipta et al., EMNLP 2020): `confidence` (mean true-class
  probability over epochs), `variability` (its standard deviation), `correctness` (the share of
  epochs the image was right).
- Area under the margin (Pleiss et al., NeurIPS 2020): `aum`, the mean of the true-class logit
  minus the largest other logit. Low or negative: likely mislabelled.
- Forgetting events (Toneva et al., ICLR 2019): `forgetting`, how often the image went from right
  at one recorded epoch to wrong at the next.
- `final_prob`: the final model's probability of the given label on the unaugmented image (EMA
  weights and flip TTA as the run evaluates), recorded once at the last epoch. On the CIFAR-10
  sample with 5% of labels flipped it finds them better than AUM (bench/label_noise.py), so
  `likely_mislabelled` ranks by it wherever the run has it.

Epochs in which an image was not drawn (NaN, under --max-steps) are left out of its scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.dynamics import Dynamics

REGIONS = ("easy", "ambiguous", "hard to learn")


@dataclass
class ImageScores:
    """One value per training image (index = position in the training set)."""

    confidence: np.ndarray  # float32; NaN for an image never drawn
    variability: np.ndarray  # float32, population standard deviation over the epochs it was drawn in
    correctness: np.ndarray  # float32 in [0, 1]
    aum: np.ndarray  # float32
    forgetting: np.ndarray  # int32: right-then-wrong transitions between consecutive epochs it was drawn in
    epochs_seen: np.ndarray  # int32: epochs the image was drawn in
    final_prob: np.ndarray | None = None  # float32: the final model's probability of the given label; None
    # until the run's last epoch is recorded (and for runs recorded before it was)

    def __len__(self) -> int:
        return len(self.aum)


def image_scores(dynamics: Dynamics) -> ImageScores:
    """Every training image's scores over all recorded epochs."""
    prob = dynamics.train_prob.astype(np.float32)
    margin = dynamics.train_margin.astype(np.float32)
    seen = ~np.isnan(prob)
    count = seen.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):  # an image never drawn: NaN, not a warning
        confidence = np.where(seen, prob, 0).sum(0) / count
        variability = np.sqrt(np.where(seen, (prob - confidence) ** 2, 0).sum(0) / count)
        correctness = (dynamics.train_correct & seen).sum(0) / count
        aum = np.where(seen, margin, 0).sum(0) / count
    final = None if dynamics.final_train_prob is None else dynamics.final_train_prob.astype(np.float32)
    return ImageScores(confidence.astype(np.float32), variability.astype(np.float32),
                       correctness.astype(np.float32), aum.astype(np.float32),
                       forgetting_counts(dynamics.train_correct, seen), count.astype(np.int32), final)


def forgetting_counts(correct: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(E, N) right/wrong and drawn flags -> per image, the right-then-wrong transitions between
    consecutive epochs in which it was drawn."""
    counts = np.zeros(correct.shape[1], np.int32)
    last = np.zeros(correct.shape[1], np.int8)  # 0: not drawn yet, 1: last drawn right, -1: wrong
    for right, drawn in zip(correct, seen):
        counts += (drawn & (last == 1) & ~right).astype(np.int32)
        last = np.where(drawn, np.where(right, 1, -1), last).astype(np.int8)
    return counts


def likely_mislabelled(scores: ImageScores) -> np.ndarray:
    """Training-image indices, the most likely mislabelled first: by `ranking_score` (lowest
    first), ties by lower AUM, then index; images never drawn come last."""
    aum = np.where(np.isnan(scores.aum), np.inf, scores.aum)
    first = np.where(np.isnan(scores.final_prob), np.inf, scores.final_prob) if scores.final_prob is not None else aum
    return np.lexsort((np.arange(len(aum)), aum, first))


def ranking_score(scores: ImageScores) -> str:
    """What `likely_mislabelled` ranks by, in words a page can show."""
    if scores.final_prob is not None:
        return "the final model's probability of the given label (lowest first)"
    return "area under the margin, AUM (lowest first; the run's last epoch is not recorded yet)"


def data_map_regions(scores: ImageScores) -> dict[str, np.ndarray]:
    """The data map's three presets as boolean masks, by terciles of this run's images:
    ambiguous = the most variable third; of the rest, easy = confidence in the top third,
    hard to learn = confidence in the bottom third. Images never drawn are in none."""
    drawn = ~np.isnan(scores.confidence)
    if not drawn.any():
        return {name: np.zeros(len(scores), bool) for name in REGIONS}
    low, high = np.quantile(scores.confidence[drawn], [1 / 3, 2 / 3])
    variable = np.quantile(scores.variability[drawn], 2 / 3)
    ambiguous = drawn & (scores.variability >= variable)
    rest = drawn & ~ambiguous
    return {"easy": rest & (scores.confidence >= high), "ambiguous": ambiguous,
            "hard to learn": rest & (scores.confidence <= low)}
