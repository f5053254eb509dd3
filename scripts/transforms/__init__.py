"""
Transforms of the pancreas_ct_dualssl bundle: input check, structure maps for DualSSL, domain randomisation,
inference outputs, SAM box refinement.
"""

from .check_image import CheckImaged
from .domain_randomisation import RandCTArtefactsd, RandStructureIntensityd
from .entropy import PredictiveEntropyd, predictive_entropy
from .foreground import ForegroundProbabilityd
from .input_copy import KeepInputCopyd, compact_copy
from .largest_component import KeepLargestComponentd, largest_component
from .original_label import OriginalLabeld
from .paired_views import RandPairedViewsd
from .quality import PredictionQualityd, prediction_quality
from .resample_to_input import ResampleToInputd, resample_to_grid
from .sam_refinement import SamBoxRefined, slice_boxes
from .save_case import SaveCaseImaged
from .structure_maps import PancreasStructureMapsd

__all__ = [
    "CheckImaged",
    "ForegroundProbabilityd",
    "KeepInputCopyd",
    "KeepLargestComponentd",
    "OriginalLabeld",
    "PancreasStructureMapsd",
    "PredictionQualityd",
    "PredictiveEntropyd",
    "RandCTArtefactsd",
    "RandPairedViewsd",
    "RandStructureIntensityd",
    "ResampleToInputd",
    "SamBoxRefined",
    "SaveCaseImaged",
    "compact_copy",
    "largest_component",
    "prediction_quality",
    "predictive_entropy",
    "resample_to_grid",
    "slice_boxes",
]
