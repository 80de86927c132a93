"""Seed groups, and whether two groups differ by more than seed noise: pure functions over runs'
summaries (no files, no UI), for the sweep command and the dashboard alike.

On the CIFAR-10 sample two runs that differ only in seed end 5 to 8 points apart, so one run
against one run misleads. Runs whose configs differ only in `seed` (and in labels that do not
change training, `NOT_RECIPE`) form a group; each group gets its mean, standard deviation and a 95%
t-interval of the mean of best test accuracy. Two groups are compared with Welch's t-test (two-
sided, no assumption of equal variances: a recipe can be noisier than another), which gives a
p-value and a 95% interval of the difference of the means. Welch rather than a bootstrap: with the
2-5 seeds people run, a bootstrap interval is too narrow and jumps from one resample to the next,
while Welch's interval is exact under normal noise and is what scipy.stats.ttest_ind(equal_var=False)
reports. The t distribution comes from scipy (installed with scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.run_layout import Status

CONFIDENCE = 0.95
METHOD = "Welch's t-test (two-sided, unequal variances)"
METRIC = "best_test_acc"
# Config fields that name, place or pace a run without changing what it learns.
NOT_RECIPE = ("seed", "name", "preset", "runs_dir", "data_dir", "threads", "step_log_every")


@dataclass(frozen=True)
class GroupStats:
    """Mean, sample standard deviation and the t-interval of the mean; None where n is too small
    (no spread from one value)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE


@dataclass(frozen=True)
class SeedGroup:
    """Runs of one recipe with different seeds. `config` is what they share (without NOT_RECIPE)."""

    config: dict[str, Any]
    run_ids: tuple[str, ...]
    seeds: tuple[int | None, ...]
    values: tuple[float, ...]
    stats: GroupStats


@dataclass(frozen=True)
class Verdict:
    """Whether group A's mean differs from group B's by more than seed noise. `difference` is
    mean A - mean B; `low`..`high` its interval; `larger_than_noise` is None when it cannot tell
    (then `note` says why and what to do)."""

    method: str
    n_a: int
    n_b: int
    difference: float | None
    low: float | None
    high: float | None
    t: float | None
    df: float | None
    p_value: float | None
    larger_than_noise: bool | None
    note: str
    confidence: float = CONFIDENCE


# scipy's t distribution functions are imported where used: scipy.special takes 0.1-0.5 s to import
# on a 2-core machine, which Compare's first visit would pay before drawing its curves tab (and
# scipy.stats a second more).


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile (scipy.stats.t.ppf, computed by the same special function)."""
    from scipy import special

    return float(special.stdtrit(df, probability))


def t_two_sided_p(t: float, df: float) -> float:
    """The probability of a |t| at least this large under Student's t with `df` degrees of freedom."""
    from scipy import special

    return 2 * float(special.stdtr(df, -abs(t)))


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> GroupStats:
    """n, mean, standard deviation (n - 1) and the two-sided t-interval of the mean."""
    n = len(values)
    if n == 0:
        return GroupStats(0, None, None, None, None, confidence)
    mean = math.fsum(values) / n
    if n == 1:
        return GroupStats(1, mean, None, None, None, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return GroupStats(n, mean, std, mean - half, mean + half, confidence)


def recipe_key(config: Mapping[str, Any]) -> tuple:
    """What two runs must share to be seeds of one recipe: the config without NOT_RECIPE."""
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in NOT_RECIPE))


def seed_groups(rows: Iterable[Mapping[str, Any]], metric: str = METRIC) -> list[SeedGroup]:
    """Group completed runs (summaries: `id`, `status`, `config`, `metric`) whose configs differ
    only in seed; groups sorted by mean, best first. A run still going, stopped or failed is left
    out: its best accuracy is that of a shorter run."""
    found: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        config = row.get("config")
        if row.get("status") != Status.COMPLETED or not isinstance(config, Mapping) or row.get(metric) is None:
            continue
        found.setdefault(recipe_key(config), []).append(row)
    groups = []
    for members in found.values():
        members.sort(key=lambda r: (r["config"].get("seed") is None, r["config"].get("seed"), r.get("id")))
        shared = {k: v for k, v in members[0]["config"].items() if k not in NOT_RECIPE}
        values = tuple(float(r[metric]) for r in members)
        groups.append(SeedGroup(shared, tuple(str(r.get("id")) for r in members),
                                tuple(r["config"].get("seed") for r in members), values, describe(values)))
    groups.sort(key=lambda g: -g.stats.mean)
    return groups


def compare(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Verdict:
    """Welch's t-test of mean(a) - mean(b): the p-value and the interval of the difference."""
    sa, sb = describe(a, confidence), describe(b, confidence)

    def cannot(note: str, difference: float | None = None) -> Verdict:
        return Verdict(METHOD, sa.n, sb.n, difference, None, None, None, None, None, None, note, confidence)

    if sa.n == 0 or sb.n == 0:
        return cannot("A group without a completed run cannot be compared.")
    difference = sa.mean - sb.mean
    if sa.n == 1 and sb.n == 1:
        return cannot("One seed each cannot tell a real difference from seed noise: run each with several seeds "
                      "(resnet-runs sweep --seeds K).", difference)
    if sa.n == 1 or sb.n == 1:
        single = "A" if sa.n == 1 else "B"
        return cannot(f"Group {single} has one run, so its seed noise is unknown and the difference cannot be "
                      "tested: run it with more seeds.", difference)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:
        return cannot("Every seed gave the same accuracy within each group (deterministic runs?): no seed noise "
                      "was measured, so the test does not apply.", difference)
    t = difference / se
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    p = t_two_sided_p(t, df)
    half = t_quantile(0.5 + confidence / 2, df) * se
    low, high = difference - half, difference + half
    larger = p < 1 - confidence
    level = f"{confidence:.0%}"
    if larger:
        note = (f"The difference, {difference * 100:+.2f} points ({level} interval {low * 100:+.2f} to "
                f"{high * 100:+.2f}), is larger than the seed noise ({METHOD}, p = {p:.3g}).")
    else:
        note = (f"The difference, {difference * 100:+.2f} points ({level} interval {low * 100:+.2f} to "
                f"{high * 100:+.2f}), is within the seed noise ({METHOD}, p = {p:.3g}): it may be chance.")
    return Verdict(METHOD, sa.n, sb.n, difference, low, high, t, df, p, larger, note, confidence)


def compare_groups(a: SeedGroup, b: SeedGroup, confidence: float = CONFIDENCE) -> Verdict:
    return compare(a.values, b.values, confidence)
