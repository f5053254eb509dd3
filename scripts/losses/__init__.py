"""Losses of the pancreas_ct_dualssl bundle."""

from .masked_restoration import MaskedL1Loss
from .structure_contrastive import StructureContrastiveLoss

__all__ = ["MaskedL1Loss", "StructureContrastiveLoss"]
