"""Surface metrics in millimetres of each case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric

from scripts.metrics import PhysicalSpacingMetric


def _one_hot(foreground: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - foreground, foreground])

def test_surface_metrics_are_in_millimetres_of_each_case():
    label = torch.zeros(20, 20, 20)
    label[5:10, 5:10, 5:10] = 1
    shifted = torch.roll(label, 1, dims=2)  # one voxel along z
    anisotropic = np.diag([1.0, 1.0, 5.0, 1.0])
    isotropic = np.diag([2.0, 2.0, 2.0, 1.0])
    hd = PhysicalSpacingMetric(HausdorffDistanceMetric(percentile=95))
    preds = [MetaTensor(_one_hot(shifted), affine=anisotropic), MetaTensor(_one_hot(shifted), affine=isotropic)]
    labels = [MetaTensor(_one_hot(label), affine=anisotropic), MetaTensor(_one_hot(label), affine=isotropic)]
    values = hd(preds, labels)
    torch.testing.assert_close(values.flatten(), torch.tensor([5.0, 2.0]))
    dice = PhysicalSpacingMetric(SurfaceDiceMetric(class_thresholds=[3.0]))
    dice(preds, labels)
    per_case = dice.get_buffer().flatten()
    assert per_case[0] < 1.0 and per_case[1] == pytest.approx(1.0)

def test_surface_metric_falls_back_to_default_spacing_for_plain_tensors():
    label = torch.zeros(1, 2, 12, 12, 12)
    label[0, 1, 3:6, 3:6, 3:6] = 1
    label[0, 0] = 1 - label[0, 1]
    pred = torch.roll(label, 1, dims=4)
    hd = PhysicalSpacingMetric(HausdorffDistanceMetric(percentile=95), default_spacing=[1.0, 1.0, 3.0])
    torch.testing.assert_close(hd(pred, label).flatten(), torch.tensor([3.0]))
