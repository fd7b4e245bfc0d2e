"""Evaluation arithmetic: accuracies with 95% intervals, pass@k, maj@k, and the paired test that
says whether one model beats another on the same rows. Pure functions over prediction records.

A prediction record (one line of predictions.jsonl) holds, per question, lists with one entry per
sampled completion: `correct` (strict: the answer tag states the gold number), `correct_flexible`,
`formatted`, `truncated`, `tokens` and `extracted` (the strict answer, or null).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 10000


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; unlike the normal approximation it stays
    inside [0, 1] and is honest at 0% and 100% and on small samples."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    values: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a mean (rows resampled with replacement, seeded)."""
    import numpy as np

    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.sort(data[rng.integers(0, n, size=(resamples, n))].mean(axis=1))
    lo, hi = means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]
    return (float(lo), float(hi))


def mean_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Wilson when every value is 0 or 1 (one sample per row), else the bootstrap."""
    if all(v in (0, 1) for v in values):
        return wilson_interval(int(sum(values)), len(values))
    return bootstrap_interval(values, seed)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, Codex):
    the chance that at least one of k samples drawn without replacement is correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent extracted answer (no answer never wins); a tie goes to the answer
    that appeared first, so the vote does not depend on hashing."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def k_values(samples: int) -> list[int]:
    """The k of the pass@k columns: 1, the powers of two below `samples`, and `samples`."""
    ks = {1, samples}
    k = 2
    while k < samples:
        ks.add(k)
        k *= 2
    return sorted(ks)


def row_scores(record: dict[str, Any], key: str = "correct") -> float:
    """A row's score on a per-completion flag: the share of its samples that have it."""
    flags = record[key]
    return sum(bool(f) for f in flags) / len(flags) if flags else 0.0


def majority_correct(record: dict[str, Any]) -> float:
    """1.0 when the majority answer of the row's samples is one a correct sample gave."""
    vote = majority_answer(record["extracted"])
    if vote is None:
        return 0.0
    right = {a for a, ok in zip(record["extracted"], record["correct"], strict=True) if ok}
    return 1.0 if vote in right else 0.0


def summarize(records: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The metrics of one model on one set of rows (see the module docstring for a record)."""
    n = len(records)
    samples = min((len(r["correct"]) for r in records), default=0)
    out: dict[str, Any] = {"rows": n, "samples": samples}

    def add(name: str, values: list[float]) -> None:
        out[name] = sum(values) / n if n else 0.0
        lo, hi = mean_interval(values, seed)
        out[f"{name}_ci95"] = [lo, hi]

    add("strict_accuracy", [row_scores(r, "correct") for r in records])
    add("flexible_accuracy", [row_scores(r, "correct_flexible") for r in records])
    add("format_rate", [row_scores(r, "formatted") for r in records])
    out["truncation_rate"] = sum(row_scores(r, "truncated") for r in records) / n if n else 0.0
    tokens = [t for r in records for t in r["tokens"]]
    out["mean_completion_tokens"] = statistics.fmean(tokens) if tokens else 0.0
    out["median_completion_tokens"] = statistics.median(tokens) if tokens else 0.0
    if samples > 1:
        for k in k_values(samples):
            add(
                f"pass@{k}",
                [pass_at_k(len(r["correct"]), sum(map(bool, r["correct"])), k) for r in records],
            )
        add(f"maj@{samples}", [majority_correct(r) for r in records])
        out[f"mean@{samples}"] = out["strict_accuracy"]
        out[f"mean@{samples}_ci95"] = out["strict_accuracy_ci95"]
    return out


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference", the rows only one model gets
    right split like fair coin flips."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_flip_p(differences: Sequence[float], seed: int = 0, rounds: int = PERMUTATIONS) -> float:
    """Two-sided paired permutation p-value of a mean difference: under "no difference" each
    row's difference is as likely to have the other sign."""
    import numpy as np

    nonzero = np.asarray([d for d in differences if d], dtype=np.float64)
    if nonzero.size == 0:
        return 1.0
    observed = abs(nonzero.sum())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, rounds, 1000):  # in chunks: rounds x rows signs at once is too big
        signs = rng.choice((-1.0, 1.0), size=(min(1000, rounds - start), nonzero.size))
        hits += int((np.abs(signs @ nonzero) >= observed - 1e-12).sum())
    return (hits + 1) / (rounds + 1)


def paired_comparison(
    reference: Sequence[float], other: Sequence[float], seed: int = 0
) -> dict[str, Any]:
    """How `other` differs from `reference` on the same rows: mean difference, its paired
    bootstrap 95% interval, and a p-value (exact McNemar for 0/1 scores, sign-flip otherwise)."""
    if len(reference) != len(other):
        raise ValueError("a paired comparison needs the same rows for both models")
    diffs = [b - a for a, b in zip(reference, other, strict=True)]
    n = len(diffs)
    binary = all(v in (0, 1) for v in (*reference, *other))
    if binary:
        only_ref = sum(1 for a, b in zip(reference, other, strict=True) if a > b)
        only_other = sum(1 for a, b in zip(reference, other, strict=True) if b > a)
        p, test = mcnemar_exact(only_ref, only_other), "exact McNemar"
    else:
        only_ref = sum(1 for d in diffs if d < 0)
        only_other = sum(1 for d in diffs if d > 0)
        p, test = sign_flip_p(diffs, seed), "paired sign-flip permutation"
    lo, hi = bootstrap_interval(diffs, seed) if n else (0.0, 0.0)
    return {
        "rows": n,
        "difference": sum(diffs) / n if n else 0.0,
        "difference_ci95": [lo, hi],
        "p_value": p,
        "test": test,
        "better": only_other,  # rows where other scores higher
        "worse": only_ref,
    }
