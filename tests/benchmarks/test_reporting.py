"""The cells the benchmark reports share."""

from __future__ import annotations

import numpy as np

from scripts.benchmarks.reporting import case_matrix, convergence_cells, interval_text


def test_case_matrix_puts_seeds_in_numeric_order_and_domains_side_by_side():
    per_seed = {
        "10": {"a": {"dice": [0.9]}, "b": {"dice": [0.8, 0.7]}},
        "2": {"a": {"dice": [0.1]}, "b": {"dice": [0.2, 0.3]}},
    }
    np.testing.assert_allclose(case_matrix(per_seed, ["a", "b"]), [[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])


def test_interval_and_convergence_cells():
    assert interval_text({"mean": 0.0123, "low": -0.004, "high": 0.0301, "p_wilcoxon": 0.0421}) == (
        "+1.2 [-0.4, +3.0] p=0.042"
    )
    assert interval_text({"mean": -0.05, "low": -0.07, "high": -0.03, "p_wilcoxon": 1e-5}).endswith("p<0.001")
    runs = {
        "0": {"validation_curve": [{"val_mean_dice": v} for v in (0.1, 0.5, 0.7, 0.72)]},
        "1": {"validation_curve": [{"val_mean_dice": v} for v in (0.3, 0.5, 0.7, 0.74, 0.9)]},
        "2": {"validation_curve": [{"val_mean_dice": 0.5}]},  # fewer than three validations: left out
    }
    assert convergence_cells(runs) == ["0.200", "0.700", "0.730", "+0.230"]
    assert convergence_cells({"0": {"validation_curve": []}}) is None
