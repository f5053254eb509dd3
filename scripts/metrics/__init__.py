"""Metrics of the bundle beside MONAI's: distances in mm and the relative volume error."""

from .physical_spacing import PhysicalSpacingMetric
from .volume import RelativeVolumeErrorMetric

__all__ = ["PhysicalSpacingMetric", "RelativeVolumeErrorMetric"]
