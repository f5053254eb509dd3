"""Paired comparison of two training variants over seeds and test cases: bootstrap interval and Wilcoxon test."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["auroc", "paired_comparison"]


def paired_comparison(
    treated: np.ndarray, control: np.ndarray, num_bootstrap: int = 10000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """
    Compare per-case scores of two variants trained with the same seeds and tested on the same cases.

    The difference ``treated - control`` is paired by seed (same split, initialisation and patch stream) and by
    case. The interval is a two-level bootstrap: each replicate resamples the seeds and, independently, the cases
    (both with replacement) and takes the mean difference. The p-value is the two-sided Wilcoxon signed-rank
    test over the seed-averaged per-case differences.

    Args:
        treated: scores, shape ``(seeds, cases)``; NaN (a case without a value) is ignored in the means.
        control: the paired scores, same shape.
        num_bootstrap: bootstrap replicates.
        seed: seed of the bootstrap's generator.
        confidence: level of the interval.

    Returns:
        ``mean`` difference, interval ``low`` and ``high``, ``p_wilcoxon``, ``seeds``, ``cases``.

    Raises:
        ValueError: shapes that differ or are not (seeds, cases), or no case.
    """
    treated, control = np.asarray(treated, dtype=float), np.asarray(control, dtype=float)
    if treated.shape != control.shape or treated.ndim != 2 or treated.shape[1] == 0:
        raise ValueError(f"expected two (seeds, cases) arrays of one shape, got {treated.shape} and {control.shape}")
    difference = treated - control
    num_seeds, num_cases = difference.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, num_seeds, size=(num_bootstrap, num_seeds))
    case_draws = rng.integers(0, num_cases, size=(num_bootstrap, num_cases))
    replicates = np.array(
        [np.nanmean(difference[s][:, c]) for s, c in zip(seed_draws, case_draws)]
    )
    alpha = (1 - confidence) / 2
    per_case = np.nanmean(difference, axis=0)
    per_case = per_case[np.isfinite(per_case)]
    p_value = float(stats.wilcoxon(per_case).pvalue) if np.any(per_case != 0) else 1.0
    return {
        "mean": float(np.nanmean(difference)),
        "low": float(np.nanquantile(replicates, alpha)),
        "high": float(np.nanquantile(replicates, 1 - alpha)),
        "p_wilcoxon": p_value,
        "seeds": int(num_seeds),
        "cases": int(num_cases),
    }


def auroc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """
    Area under the ROC curve of ``scores`` for telling ``is_positive`` cases: the probability that a random
    positive scores higher than a random negative, ties counting one half (the Mann-Whitney U statistic).

    Raises:
        ValueError: when the arrays differ in length, or either class is empty.
    """
    is_positive, scores = np.asarray(is_positive, dtype=bool), np.asarray(scores, dtype=float)
    if is_positive.shape != scores.shape or is_positive.all() or not is_positive.any():
        raise ValueError("auroc needs one score per case and both positive and negative cases.")
    return float(stats.mannwhitneyu(scores[is_positive], scores[~is_positive]).statistic) / (
        is_positive.sum() * (~is_positive).sum()
    )
