"""Benchmark variants and profiles: every variant's configs exist and parse; the evaluator gets the grid."""

from __future__ import annotations

import pytest

from scripts.benchmarks.generalization import main
from scripts.benchmarks.profiles import PAIRED_BASELINE, PROFILES, VARIANTS, profile_overrides
from scripts.bundle import bundle_parser


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_builds_its_trainer_at_the_cpu_profile(variant):
    overrides = {**profile_overrides("cpu"), "train#trainer#train_data_loader": [], "train#trainer#train_handlers": []}
    parser = bundle_parser(["train.yaml", *VARIANTS[variant]], overrides)
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == PROFILES["cpu"]["max_epochs"]
    baseline = variant.startswith("baseline")
    assert (trainer.lambda_contrastive == 0 and trainer.lambda_restoration == 0) == baseline
    assert (trainer.appearance_augmentation is not None) == ("gin" in variant)
    channels = parser.get_parsed_content("network").channels
    assert channels == tuple(PROFILES["cpu"]["network_def#channels"])


def test_paired_baselines_are_variants():
    assert set(PAIRED_BASELINE) <= set(VARIANTS) and set(PAIRED_BASELINE.values()) <= set(VARIANTS)


def test_the_evaluation_gets_the_grid_window_and_network_shape_of_the_profile():
    assert profile_overrides("cpu", evaluation=True) == {
        "pixdim": [4.0, 4.0, 4.0],
        "roi_size": [48, 32, 32],
        "network_def#channels": [8, 16, 32, 64, 128],
    }


def test_unknown_profile_and_variant_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(KeyError, match="known: cpu"):
        profile_overrides("cpux")
    with pytest.raises(KeyError, match="dualsssl"):
        main(variants="baseline,dualsssl", work_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())
