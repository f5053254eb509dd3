"""``PredictionQualityd``: a per-case estimate of whether a predicted pancreas mask is to be trusted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from torch.nn import functional as F

from scripts.transforms.derived_item import DerivedItemd
from scripts.transforms.entropy import predictive_entropy

__all__ = ["PredictionQualityd", "prediction_quality"]


def prediction_quality(
    probability: torch.Tensor,
    voxel_volume_ml: float,
    boundary_voxels: int = 2,
    volume_range_ml: Sequence[float] = (20.0, 200.0),
    max_uncertainty: float = 0.28,
) -> dict[str, Any]:
    """
    Quality estimate of the mask ``probability > 0.5`` from the foreground probability map of one case.

    ``uncertainty`` is the mean normalised predictive entropy (0: certain, 1: p = 0.5) over the mask and a band
    of ``boundary_voxels`` around it, where a wrong mask is uncertain; a mask spread over tissue it is unsure of
    scores high (an empty mask: 1). The case is flagged when the mask is empty, its volume is outside ``volume_range_ml`` (the
    range seen in training) or ``uncertainty`` exceeds ``max_uncertainty``.

    Args:
        probability: foreground probability, shape ``(1, *spatial)`` (2 or 3 spatial dimensions).
        voxel_volume_ml: volume of one voxel of that grid in mL.
        boundary_voxels: width of the band around the mask, in voxels.
        volume_range_ml: plausible mask volumes, (low, high).
        max_uncertainty: uncertainty above which the case is flagged.

    Returns:
        ``{"uncertainty": float, "volume_ml": float, "flag": bool, "flag_reasons": str}``.

    Raises:
        ValueError: when ``probability`` is not one channel of 2 or 3 spatial dimensions.
    """
    if probability.ndim not in (3, 4) or probability.shape[0] != 1:
        raise ValueError(f"expected a (1, *spatial) foreground probability, got shape {tuple(probability.shape)}.")
    p = torch.as_tensor(probability).float()
    mask = p > 0.5
    pool = F.max_pool3d if p.ndim == 4 else F.max_pool2d
    width = 2 * boundary_voxels + 1
    region = pool(mask[None].float(), width, stride=1, padding=boundary_voxels)[0] > 0
    entropy = predictive_entropy(p, dim=0)
    volume = float(mask.sum()) * voxel_volume_ml
    uncertainty = float(entropy[region].mean()) if region.any() else 1.0
    reasons = []
    if not mask.any():
        reasons.append("empty mask")
    else:
        if not volume_range_ml[0] <= volume <= volume_range_ml[1]:
            reasons.append(f"volume {volume:.1f} mL outside [{volume_range_ml[0]:g}, {volume_range_ml[1]:g}] mL")
        if uncertainty > max_uncertainty:
            reasons.append(f"uncertainty {uncertainty:.2f} above {max_uncertainty:g}")
    return {"uncertainty": round(uncertainty, 4), "volume_ml": round(volume, 3), "flag": bool(reasons),
            "flag_reasons": "; ".join(reasons)}


class PredictionQualityd(DerivedItemd):
    """
    Dictionary wrapper of ``prediction_quality``: ``data[output_key]`` gets the estimate of ``data[key]``.

    Place it after ``ForegroundProbabilityd`` on the network's grid (before ``ResampleToInputd``): the estimate
    is then cheap and independent of the input's resolution. The voxel volume comes from the ``MetaTensor``'s
    affine (1 mm^3 voxels for a plain tensor).

    Args:
        keys: one foreground probability map, ``(1, *spatial)``.
        output_key: where the estimate goes (``BatchInference`` puts it in the run summary).
        boundary_voxels, volume_range_ml, max_uncertainty: see ``prediction_quality``.

    Raises:
        ValueError: more than one key, a negative ``boundary_voxels``, a volume range that is not (low <= high),
            or ``max_uncertainty`` outside [0, 1].
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "quality",
        boundary_voxels: int = 2,
        volume_range_ml: Sequence[float] = (20.0, 200.0),
        max_uncertainty: float = 0.28,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, output_key, allow_missing_keys)
        if boundary_voxels < 0:
            raise ValueError(f"boundary_voxels must be >= 0, got {boundary_voxels}.")
        if len(volume_range_ml) != 2 or not 0 <= volume_range_ml[0] <= volume_range_ml[1]:
            raise ValueError(f"volume_range_ml must be (low, high) with 0 <= low <= high, got {volume_range_ml}.")
        if not 0.0 <= max_uncertainty <= 1.0:
            raise ValueError(f"max_uncertainty must be in [0, 1], got {max_uncertainty}.")
        self.boundary_voxels = boundary_voxels
        self.volume_range_ml = tuple(float(v) for v in volume_range_ml)
        self.max_uncertainty = max_uncertainty

    def derive(self, probability: torch.Tensor) -> dict[str, Any]:
        affine = probability.affine if isinstance(probability, MetaTensor) else torch.eye(4)
        spatial = probability.ndim - 1
        voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:spatial, :spatial]))) / 1000.0
        return prediction_quality(probability, voxel_ml, self.boundary_voxels, self.volume_range_ml, self.max_uncertainty)
