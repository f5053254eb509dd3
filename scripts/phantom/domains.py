"""Acquisition domains of the phantom: one named, frozen parameter set per simulated CT protocol.

``DOMAINS`` is the registry. A model is trained on ``source`` and tested on the ``target_*``
domains, which differ from it in contrast phase, resolution, slice thickness, reconstruction
kernel, noise, HU calibration, field of view and stored orientation. Adding a domain is adding
one entry to ``DOMAINS``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PHASES = ("non_contrast", "pancreatic_arterial", "portal_venous")
KERNELS = ("smooth", "sharp")
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))

Phase = Literal["non_contrast", "pancreatic_arterial", "portal_venous"]
Kernel = Literal["smooth", "sharp"]


@dataclass(frozen=True)
class AcquisitionDomain:
    """How a phantom patient is scanned and stored.

    Lengths in mm, intensities in Hounsfield units. ``spacing`` is (x, y, z) of the written array
    in patient order (left-right, antero-posterior, cranio-caudal); ``slice_thickness`` is the
    FWHM of the Gaussian slice sensitivity profile along z; ``noise_std`` the image noise standard
    deviation in water for a 300 mm patient; ``bias_hu`` the peak amplitude of a smooth additive
    low-frequency field; ``fov_mm`` the in-plane reconstruction field of view (x, y), which may cut
    through a large patient; ``z_extent_mm`` the range of the random cranio-caudal coverage
    (always containing the whole pancreas); ``orientation`` the nibabel axis codes of the stored
    array (first letter: direction of increasing first index, e.g. "RAS" or "LPS").
    """

    name: str
    description: str
    phase: Phase
    spacing: tuple[float, float, float]
    slice_thickness: float
    kernel: Kernel
    noise_std: float
    hu_offset: float = 0.0
    bias_hu: float = 0.0
    fov_mm: tuple[float, float] = (360.0, 300.0)
    z_extent_mm: tuple[float, float] = (130.0, 150.0)
    orientation: str = "RAS"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"domain {self.name!r}: phase must be one of {PHASES}, got {self.phase!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"domain {self.name!r}: kernel must be one of {KERNELS}, got {self.kernel!r}")
        if len(self.orientation) != 3 or any(ch not in pair for ch, pair in zip(self.orientation, _AXIS_LETTERS)):
            raise ValueError(f"domain {self.name!r}: orientation must be one of [RL][AP][SI], got {self.orientation!r}")
        if min(self.spacing) <= 0 or self.slice_thickness <= 0 or self.noise_std < 0:
            raise ValueError(f"domain {self.name!r}: spacing and slice thickness must be positive, noise non-negative")
        if self.z_extent_mm[0] > self.z_extent_mm[1]:
            raise ValueError(f"domain {self.name!r}: z_extent_mm must be (min, max)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DOMAINS: dict[str, AcquisitionDomain] = {
    d.name: d
    for d in (
        AcquisitionDomain(
            name="source",
            description="portal-venous phase, 2 mm isotropic, smooth kernel, standard dose",
            phase="portal_venous",
            spacing=(2.0, 2.0, 2.0),
            slice_thickness=2.0,
            kernel="smooth",
            noise_std=12.0,
            fov_mm=(360.0, 300.0),
            z_extent_mm=(130.0, 150.0),
            orientation="RAS",
        ),
        AcquisitionDomain(
            name="target_arterial",
            description="pancreatic (late arterial) phase, thin 1 mm slices, sharp kernel, scanner offset",
            phase="pancreatic_arterial",
            spacing=(1.5, 1.5, 1.0),
            slice_thickness=1.25,
            kernel="sharp",
            noise_std=28.0,
            hu_offset=20.0,
            bias_hu=15.0,
            fov_mm=(345.0, 300.0),
            z_extent_mm=(120.0, 140.0),
            orientation="RAS",
        ),
        AcquisitionDomain(
            name="target_noncontrast",
            description="non-contrast phase, thick 5 mm slices, smooth kernel, negative offset and bias field",
            phase="non_contrast",
            spacing=(2.0, 2.0, 5.0),
            slice_thickness=5.0,
            kernel="smooth",
            noise_std=15.0,
            hu_offset=-30.0,
            bias_hu=40.0,
            fov_mm=(360.0, 300.0),
            z_extent_mm=(140.0, 180.0),
            orientation="RAS",
        ),
        AcquisitionDomain(
            name="target_lowdose",
            description="portal-venous low-dose scan, sharp kernel, offset and bias field, cropped FOV, LPS storage",
            phase="portal_venous",
            spacing=(1.25, 1.25, 3.0),
            slice_thickness=3.0,
            kernel="sharp",
            noise_std=48.0,
            hu_offset=40.0,
            bias_hu=60.0,
            fov_mm=(300.0, 300.0),
            z_extent_mm=(120.0, 160.0),
            orientation="LPS",
        ),
    )
}
"""Registry of acquisition domains by name."""


def get_domain(domain: str | AcquisitionDomain) -> AcquisitionDomain:
    """Look a domain up by name (or pass an ``AcquisitionDomain`` through); unknown names list the known ones."""
    if isinstance(domain, AcquisitionDomain):
        return domain
    try:
        return DOMAINS[domain]
    except KeyError:
        raise ValueError(f"unknown phantom domain {domain!r}; known domains: {', '.join(DOMAINS)}") from None
