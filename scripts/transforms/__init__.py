"""Transforms of the pancreas_ct_dualssl bundle: input check, structure maps for DualSSL, inference outputs."""

from .check_image import CheckImaged
from .entropy import PredictiveEntropyd, predictive_entropy
from .foreground import ForegroundProbabilityd
from .largest_component import KeepLargestComponentd, largest_component
from .original_label import OriginalLabeld
from .resample_to_input import ResampleToInputd, resample_to_grid
from .save_case import SaveCaseImaged
from .structure_maps import PancreasStructureMapsd

__all__ = [
    "CheckImaged",
    "ForegroundProbabilityd",
    "KeepLargestComponentd",
    "OriginalLabeld",
    "PancreasStructureMapsd",
    "PredictiveEntropyd",
    "ResampleToInputd",
    "SaveCaseImaged",
    "largest_component",
    "predictive_entropy",
    "resample_to_grid",
]
