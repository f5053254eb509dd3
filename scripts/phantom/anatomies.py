"""The phantom's patient anatomies by name: ``ANATOMIES`` and ``sample_patient(rng, anatomy)``.

- ``"upper_abdomen"`` (default): 12-18 cm around the pancreas (``scripts.phantom.anatomy``), scanned with the
  domain's ``z_extent_mm``; its output is frozen (datasets and benchmarks depend on it).
- ``"whole_abdomen"``: lung bases and heart to the pelvis (``scripts.phantom.whole_abdomen``), scanned with its
  own 300-500 mm abdomen / abdomen-pelvis coverage whatever the domain.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Patient, UpperAbdomenBuilder
from .whole_abdomen import WholeAbdomenBuilder

ANATOMIES: dict[str, type[UpperAbdomenBuilder]] = {
    "upper_abdomen": UpperAbdomenBuilder,
    "whole_abdomen": WholeAbdomenBuilder,
}
"""Builder class of each anatomy name."""

DEFAULT_ANATOMY = "upper_abdomen"


def check_anatomy(anatomy: str) -> str:
    """Return ``anatomy`` if it names one of ``ANATOMIES``.

    Raises:
        ValueError: naming the allowed values otherwise.
    """
    if not isinstance(anatomy, str) or anatomy not in ANATOMIES:
        raise ValueError(f"unknown phantom anatomy {anatomy!r}; allowed: {', '.join(ANATOMIES)}")
    return anatomy


def sample_patient(rng: np.random.Generator, anatomy: str = DEFAULT_ANATOMY) -> Patient:
    """Draw one random patient of ``anatomy`` (anatomy only, no grid and no intensities) from ``rng``.

    Raises:
        ValueError: if ``anatomy`` is not one of ``ANATOMIES``.
    """
    return ANATOMIES[check_anatomy(anatomy)](rng).patient()
