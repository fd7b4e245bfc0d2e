"""Evaluation arithmetic on cases whose answers are known by hand or by brute force."""

from __future__ import annotations

import itertools
import math

import pytest

from grpo_cli.evaluation.metrics import (
    bootstrap_interval,
    k_values,
    majority_answer,
    mcnemar_exact,
    paired_comparison,
    pass_at_k,
    sign_flip_p,
    summarize,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (5, 10, (0.2366, 0.7634)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (1, 1, (0.2065, 1.0)),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, expected):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize(("n", "c"), [(4, 0), (4, 1), (5, 2), (6, 5), (8, 3)])
def test_pass_at_k_is_the_chance_that_a_k_subset_holds_a_correct_sample(n, c):
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(samples, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 4)


def test_k_values_are_one_the_powers_of_two_and_the_sample_count():
    assert k_values(1) == [1] and k_values(8) == [1, 2, 4, 8] and k_values(6) == [1, 2, 4, 6]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["3", "4", "3", None], "3"),
        (["4", "3", "3", "4"], "4"),
        ([None, None], None),
        ([None, "7", None, None], "7"),
    ],
)
def test_majority_vote_ignores_no_answer_and_breaks_ties_by_first_seen(answers, expected):
    assert majority_answer(answers) == expected


def record(correct, *, formatted=None, truncated=None, tokens=None, extracted=None, flexible=None):
    k = len(correct)
    return {
        "correct": correct,
        "correct_flexible": flexible if flexible is not None else correct,
        "formatted": formatted if formatted is not None else [True] * k,
        "truncated": truncated if truncated is not None else [False] * k,
        "tokens": tokens if tokens is not None else [10] * k,
        "extracted": extracted if extracted is not None else ["1" if c else "2" for c in correct],
    }


def test_one_sample_per_row_gives_accuracies_with_wilson_intervals():
    records = [
        record([True], tokens=[10]),
        record([False], formatted=[False], truncated=[True], tokens=[64], flexible=[True]),
        record([True], tokens=[20]),
        record([True], tokens=[30]),
    ]
    m = summarize(records)
    assert m["rows"] == 4 and m["samples"] == 1
    assert m["strict_accuracy"] == 0.75 and m["strict_accuracy_ci95"] == list(wilson_interval(3, 4))
    assert m["flexible_accuracy"] == 1.0 and m["format_rate"] == 0.75
    assert m["truncation_rate"] == 0.25
    assert m["mean_completion_tokens"] == 31 and m["median_completion_tokens"] == 25
    assert "pass@1" not in m and "maj@1" not in m


def test_several_samples_give_pass_at_k_majority_and_mean():
    records = [
        record([True, False, False, False], extracted=["5", "6", "6", None]),  # vote 6: wrong
        record([True, True, False, False], extracted=["5", "5", "6", "7"]),  # vote 5: right
        record([False] * 4, extracted=[None] * 4),
    ]
    m = summarize(records)
    assert m["samples"] == 4
    assert m["strict_accuracy"] == pytest.approx((0.25 + 0.5 + 0) / 3) == m["mean@4"]
    assert m["pass@1"] == pytest.approx(m["mean@4"])
    assert m["pass@2"] == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    assert m["pass@4"] == pytest.approx(2 / 3)
    assert m["maj@4"] == pytest.approx(1 / 3)
    lo, hi = m["pass@4_ci95"]
    assert 0 <= lo <= m["pass@4"] <= hi <= 1


def test_exact_mcnemar_p_values():
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 15) == pytest.approx(0.041389, abs=1e-6)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_a_two_point_gain_on_the_gsm8k_test_set_can_be_noise_or_real():
    """1,319 rows; model B 2 points (26 rows) above A. Real when B rarely loses a row A gets,
    not when many rows flip both ways."""
    n = 1319

    def scores(only_a: int, only_b: int, both: int) -> tuple[list[int], list[int]]:
        a = [1] * only_a + [0] * only_b + [1] * both
        b = [0] * only_a + [1] * only_b + [1] * both
        rest = n - len(a)
        return a + [0] * rest, b + [0] * rest

    steady = paired_comparison(*scores(4, 30, 760))
    churn = paired_comparison(*scores(150, 176, 640))
    assert steady["difference"] == pytest.approx(26 / n) == churn["difference"]
    assert steady["p_value"] < 0.001 and steady["test"] == "exact McNemar"
    assert churn["p_value"] > 0.1
    assert steady["better"] == 30 and steady["worse"] == 4
    lo, hi = churn["difference_ci95"]
    assert lo < 0 < hi  # the interval says so too


def test_fractional_scores_use_a_sign_flip_test():
    up = paired_comparison([0.25] * 12, [0.75] * 12)
    assert up["test"] == "paired sign-flip permutation"
    assert up["p_value"] < 0.002 and up["difference"] == pytest.approx(0.5)
    assert sign_flip_p([0.5, -0.5] * 10) > 0.9


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = [0.0, 0.5, 1.0, 0.25] * 25
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)
    lo, hi = bootstrap_interval(values)
    mean = sum(values) / len(values)
    assert lo < mean < hi and hi - lo == pytest.approx(2 * 1.96 * 0.3644 / math.sqrt(100), abs=0.03)


def test_paired_comparison_needs_the_same_rows():
    with pytest.raises(ValueError):
        paired_comparison([1, 0], [1])
