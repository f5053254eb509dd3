"""What the benchmark reports share: per-case score matrices, the data sets, interval and convergence cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scripts.phantom import DOMAINS, ensure_dataset

__all__ = ["benchmark_data", "case_matrix", "convergence_cells", "interval_text"]

POOL_SEED, TEST_SEED, VALIDATION_SEED = 0, 1000, 2000


def case_matrix(per_seed: Mapping[str, Mapping], domains: Sequence[str], metric: str = "dice") -> np.ndarray:
    """(seeds, cases) ``metric`` of one run family (``{seed: scores}``), the cases of ``domains`` side by side,
    seeds in numeric order."""
    return np.array(
        [sum((list(per_seed[s][d][metric]) for d in domains), []) for s in sorted(per_seed, key=int)], dtype=float
    )


def benchmark_data(
    work: Path, pool_name: str, pool_cases: int, val_cases: int, test_cases: int
) -> tuple[Path, Path, dict[str, str]]:
    """The phantom sets of a benchmark under ``work/data`` (generated once): the ``source`` training pool (seed
    0), ``val_cases`` other ``source`` cases for validation (seed 2000), ``test_cases`` per domain (seed 1000)."""
    pool = ensure_dataset(work / "data" / pool_name, "source", pool_cases, POOL_SEED)
    validation = ensure_dataset(work / "data" / "source_val", "source", val_cases, VALIDATION_SEED)
    tests = {d: str(ensure_dataset(work / "data" / f"{d}_test", d, test_cases, TEST_SEED)) for d in DOMAINS}
    return pool, validation, tests


def interval_text(paired: Mapping[str, float]) -> str:
    """``+1.2 [-0.3, +2.8] p=0.123``: a paired difference in Dice points x 100 with its interval and p-value."""
    p = paired["p_wilcoxon"]
    return (
        f"{100 * paired['mean']:+.1f} [{100 * paired['low']:+.1f}, {100 * paired['high']:+.1f}] "
        + (f"p={p:.3f}" if p >= 0.001 else "p<0.001")
    )


def convergence_cells(runs: Mapping[str, Mapping]) -> list[str] | None:
    """First, middle and last source validation Dice (mean over the runs) and the change over the last three
    validations, formatted; ``None`` when no run has three validations."""
    curves = [[e["val_mean_dice"] for e in s.get("validation_curve", [])] for s in runs.values()]
    curves = [c for c in curves if len(c) >= 3]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    return [f"{mean[0]:.3f}", f"{mean[length // 2]:.3f}", f"{mean[-1]:.3f}", f"{mean[-1] - mean[-3]:+.3f}"]
