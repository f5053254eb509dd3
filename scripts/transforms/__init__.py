"""Transforms of the pancreas_ct_dualssl bundle."""

from .structure_maps import PancreasStructureMapsd
from .uncertainty_corruption import RandUncertaintyCorruption, predictive_entropy, uncertainty_region

__all__ = ["PancreasStructureMapsd", "RandUncertaintyCorruption", "predictive_entropy", "uncertainty_region"]
