"""Losses of the pancreas_ct_dualssl bundle."""

from .cosine_consistency import CosineConsistencyLoss, normalised_feature_std
from .masked_restoration import MaskedL1Loss
from .polycl import PolyCLLoss
from .semi_supervised import (
    PrototypeContrastiveLoss,
    confident_disagreement,
    masked_mean,
    reliable_voxels,
    sigmoid_rampup,
)
from .structure_contrastive import StructureContrastiveLoss

__all__ = [
    "CosineConsistencyLoss",
    "MaskedL1Loss",
    "PolyCLLoss",
    "PrototypeContrastiveLoss",
    "StructureContrastiveLoss",
    "confident_disagreement",
    "masked_mean",
    "normalised_feature_std",
    "reliable_voxels",
    "sigmoid_rampup",
]
