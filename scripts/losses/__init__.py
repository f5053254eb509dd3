"""Losses of the pancreas_ct_dualssl bundle."""

from .masked_restoration import MaskedL1Loss
from .structure_contrastive import StructureContrastiveLoss, VoxelSamples, gather_voxels, sample_structure_voxels

__all__ = ["MaskedL1Loss", "StructureContrastiveLoss", "VoxelSamples", "gather_voxels", "sample_structure_voxels"]
