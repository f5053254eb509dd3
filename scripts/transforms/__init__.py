"""Transforms of the pancreas_ct_dualssl bundle: input check, structure maps for DualSSL, inference outputs."""

from .check_image import CheckImaged
from .entropy import PredictiveEntropyd, predictive_entropy
from .foreground import ForegroundProbabilityd
from .save_case import SaveCaseImaged
from .structure_maps import PancreasStructureMapsd

__all__ = [
    "CheckImaged",
    "ForegroundProbabilityd",
    "PancreasStructureMapsd",
    "PredictiveEntropyd",
    "SaveCaseImaged",
    "predictive_entropy",
]
