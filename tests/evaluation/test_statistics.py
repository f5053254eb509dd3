"""Paired comparison of two variants: bootstrap interval over seeds and cases, Wilcoxon test."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.evaluation.statistics import paired_comparison


def test_a_constant_improvement_has_a_point_interval_and_a_small_p():
    control = np.random.default_rng(0).uniform(0.3, 0.8, size=(3, 12))
    result = paired_comparison(control + 0.05, control)
    assert result["mean"] == pytest.approx(0.05)
    assert result["low"] == pytest.approx(0.05) and result["high"] == pytest.approx(0.05)
    assert result["p_wilcoxon"] < 0.001
    assert (result["seeds"], result["cases"]) == (3, 12)


def test_noise_without_an_effect_gives_an_interval_around_zero():
    rng = np.random.default_rng(1)
    control = rng.uniform(0.3, 0.8, size=(5, 40))
    result = paired_comparison(control + rng.normal(0, 0.05, size=control.shape), control)
    assert result["low"] < 0 < result["high"]
    assert result["p_wilcoxon"] > 0.05


def test_seed_to_seed_variation_widens_the_interval():
    rng = np.random.default_rng(2)
    control = rng.uniform(0.3, 0.8, size=(4, 20))
    case_noise = rng.normal(0, 0.01, size=control.shape)
    steady = paired_comparison(control + 0.03 + case_noise, control)
    seed_shift = np.array([[-0.05], [0.1], [0.0], [0.07]])
    shaky = paired_comparison(control + 0.03 + case_noise + seed_shift - seed_shift.mean(), control)
    assert shaky["high"] - shaky["low"] > 3 * (steady["high"] - steady["low"])


def test_no_difference_at_all_gives_p_one():
    control = np.full((2, 5), 0.5)
    assert paired_comparison(control, control)["p_wilcoxon"] == 1.0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="seeds, cases"):
        paired_comparison(np.zeros((2, 3)), np.zeros((3, 2)))
