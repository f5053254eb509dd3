"""The per-case quality estimate of inference: uncertainty around the mask, implausible volume, flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from scripts.evaluation.statistics import auroc
from scripts.transforms import PredictionQualityd, prediction_quality


def _blob(value_inside: float, value_outside: float = 0.0) -> torch.Tensor:
    probability = torch.full((1, 20, 20, 20), value_outside)
    probability[:, 5:15, 5:15, 5:15] = value_inside
    return probability


def test_a_confident_mask_is_certain_and_not_flagged():
    quality = prediction_quality(_blob(1.0), voxel_volume_ml=0.05)
    assert quality["uncertainty"] == pytest.approx(0.0, abs=1e-6)
    assert quality["volume_ml"] == pytest.approx(1000 * 0.05)
    assert quality == {"uncertainty": quality["uncertainty"], "volume_ml": 50.0, "flag": False, "flag_reasons": ""}


def test_a_hesitant_mask_is_uncertain_and_flagged():
    quality = prediction_quality(_blob(0.6, 0.4), voxel_volume_ml=0.05)
    assert quality["uncertainty"] == pytest.approx(-(0.6 * np.log(0.6) + 0.4 * np.log(0.4)) / np.log(2), rel=1e-4)
    assert quality["flag"] and "uncertainty" in quality["flag_reasons"]


def test_empty_and_implausible_masks_are_flagged():
    assert prediction_quality(torch.zeros(1, 8, 8, 8), 1.0)["flag_reasons"] == "empty mask"
    tiny = prediction_quality(_blob(1.0), voxel_volume_ml=0.001)
    assert tiny["flag"] and tiny["flag_reasons"] == "volume 1.0 mL outside [20, 200] mL"


def test_the_dictionary_transform_takes_the_voxel_volume_from_the_affine():
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.5, 1.0]))
    data = PredictionQualityd("pred")({"pred": MetaTensor(_blob(1.0), affine=affine)})
    assert data["quality"]["volume_ml"] == pytest.approx(1000 * 10 / 1000)
    assert torch.equal(data["pred"], _blob(1.0))  # the map itself is unchanged


@pytest.mark.parametrize(
    "kwargs", [{"keys": ["a", "b"]}, {"boundary_voxels": -1}, {"volume_range_ml": [5, 1]}, {"max_uncertainty": 2}]
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        PredictionQualityd(**{"keys": "pred", **kwargs})


def test_auroc_is_the_probability_that_a_positive_scores_higher():
    assert auroc([True, True, False, False], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert auroc([True, False], [0.5, 0.5]) == 0.5
    assert auroc([True, True, False, False], [0.9, 0.1, 0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        auroc([True, True], [0.1, 0.2])
