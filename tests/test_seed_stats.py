"""Seed groups and the verdict, checked against scipy on fixed numbers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from engine.seed_stats import METHOD, NOT_RECIPE, compare, describe, seed_groups

# Best test accuracies of two recipes, five seeds each (the spread the CIFAR-10 sample shows).
A = [0.612, 0.655, 0.581, 0.640, 0.598]
B = [0.571, 0.560, 0.602, 0.548, 0.566]


def test_a_group_has_the_mean_std_and_t_interval_scipy_gives():
    g = describe(A)
    assert g.n == 5
    assert g.mean == pytest.approx(sum(A) / 5, abs=1e-12)
    assert g.std == pytest.approx(stats.tstd(A), abs=1e-12)
    low, high = stats.ttest_1samp(A, 0.0).confidence_interval(0.95)
    assert (g.low, g.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    # the same interval written out: mean +- t(0.975, 4) * s / sqrt(5), t(0.975, 4) = 2.7764451
    assert g.high - g.mean == pytest.approx(2.7764451 * g.std / math.sqrt(5), rel=1e-6)


def test_one_run_has_a_mean_and_no_spread():
    g = describe([0.6])
    assert (g.n, g.mean, g.std, g.low, g.high) == (1, 0.6, None, None, None)
    assert describe([]).mean is None


@pytest.mark.parametrize("a, b", [(A, B), (A[:2], B), (A, B[:3]), (B, A), ([0.5, 0.52, 0.51], [0.5, 0.53])])
def test_welch_p_value_and_interval_match_scipy(a, b):
    v = compare(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    low, high = ref.confidence_interval(0.95)
    assert v.method == METHOD and "Welch" in v.method
    assert v.t == pytest.approx(ref.statistic, rel=1e-10)
    assert v.df == pytest.approx(ref.df, rel=1e-10)
    assert v.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (v.low, v.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert v.difference == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert v.larger_than_noise == (ref.pvalue < 0.05)


def test_a_real_difference_and_seed_noise_are_told_apart():
    real = compare(A, B)
    assert real.larger_than_noise is True and real.p_value < 0.05 and real.low > 0
    assert "larger than the seed noise" in real.note and f"p = {real.p_value:.3g}" in real.note
    noise = compare(A, [0.630, 0.585, 0.660, 0.600, 0.611])
    assert noise.larger_than_noise is False and noise.low < 0 < noise.high
    assert "within the seed noise" in noise.note


def test_one_seed_each_cannot_tell():
    v = compare([0.61], [0.55])
    assert v.larger_than_noise is None and v.p_value is None and v.low is None
    assert v.difference == pytest.approx(0.06)
    assert "One seed each cannot tell" in v.note
    one_side = compare([0.61], B)
    assert one_side.larger_than_noise is None and "Group A has one run" in one_side.note


def test_groups_without_any_spread_are_not_tested():
    v = compare([0.5, 0.5], [0.6, 0.6])
    assert v.larger_than_noise is None and v.p_value is None and "no seed noise" in v.note


def _row(run_id, seed, acc, status="completed", **config):
    return {"id": run_id, "status": status, "best_test_acc": acc,
            "config": {"lr": 0.05, "epochs": 2, "seed": seed, "name": run_id, "runs_dir": "x", **config}}


def test_runs_that_differ_only_in_seed_form_a_group():
    rows = [_row("a1", 1, A[0]), _row("a2", 2, A[1]), _row("a3", 3, A[2]),
            _row("b1", 1, B[0], lr=0.1), _row("b2", 2, B[1], lr=0.1),
            _row("c1", 1, 0.9, epochs=3),  # another recipe: a group of one
            _row("a4", 4, 0.99, status="interrupted"),  # a shorter run: left out
            {"id": "d", "status": "completed", "best_test_acc": None, "config": {"seed": 1}}]
    groups = seed_groups(rows)
    assert [g.run_ids for g in groups] == [("c1",), ("a1", "a2", "a3"), ("b1", "b2")]  # best mean first
    a = groups[1]
    assert a.seeds == (1, 2, 3) and a.values == tuple(A[:3]) and a.stats == describe(A[:3])
    assert "seed" not in a.config and "name" not in a.config and a.config["lr"] == 0.05
    assert set(NOT_RECIPE) >= {"seed", "name", "runs_dir"}
