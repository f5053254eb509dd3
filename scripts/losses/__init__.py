"""Losses of the pancreas_ct_dualssl bundle."""

from .cosine_consistency import CosineConsistencyLoss, normalised_feature_std
from .masked_restoration import MaskedL1Loss
from .structure_contrastive import StructureContrastiveLoss

__all__ = ["CosineConsistencyLoss", "MaskedL1Loss", "StructureContrastiveLoss", "normalised_feature_std"]
