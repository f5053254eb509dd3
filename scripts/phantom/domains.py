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
    """How a phantom patient is scanned and stored (lengths in mm, intensities in Hounsfield units).

    - ``phase``: contrast phase, one of ``PHASES``; ``kvp``: tube voltage (lower kVp raises iodine
      and bone attenuation and makes fat more negative).
    - ``spacing``: (x, y, z) voxel size of the stored array in patient order (left-right,
      antero-posterior, cranio-caudal); ``slice_thickness``: FWHM of the Gaussian slice profile.
    - ``kernel``: "smooth" (low-pass, blotchy noise) or "sharp" (edge enhancement, fine noise);
      ``noise_std``: noise standard deviation in soft tissue of a 300 mm wide patient;
      ``streak_hu``: amplitude of photon-starvation streaks (0: none).
    - ``hu_offset``: scanner calibration offset at water; ``bias_hu``: peak amplitude of a smooth
      low-frequency field; both scale with attenuation relative to air, so air stays at -1000.
    - ``fov_mm``: in-plane reconstruction field of view (x, y), which may cut through a large
      patient; ``z_extent_mm``: (min, max) of the random cranio-caudal coverage, which always
      contains the whole pancreas.
    - ``orientation``: nibabel axis codes of the stored array (the letter a first-axis index
      increases towards), e.g. "RAS" or "LPS" as in DICOM-converted data.
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
    kvp: float = 120.0
    streak_hu: float = 0.0
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
        if min(self.spacing) <= 0 or self.slice_thickness <= 0 or min(self.noise_std, self.bias_hu, self.streak_hu) < 0:
            raise ValueError(f"domain {self.name!r}: spacing and thickness must be positive, noise/bias/streaks >= 0")
        if not 70.0 <= self.kvp <= 140.0:
            raise ValueError(f"domain {self.name!r}: kvp must be in [70, 140], got {self.kvp}")
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
            description="pancreatic (late arterial) phase, low-kV (80 kVp) protocol, thin 1 mm slices, sharp kernel, "
            "scanner offset",
            phase="pancreatic_arterial",
            spacing=(1.5, 1.5, 1.0),
            slice_thickness=1.25,
            kernel="sharp",
            noise_std=28.0,
            hu_offset=20.0,
            bias_hu=15.0,
            kvp=80.0,
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
            description="portal-venous low-dose scan at 100 kVp: strong noise and streaks, sharp kernel, offset and "
            "bias field, cropped FOV, LPS storage",
            phase="portal_venous",
            spacing=(1.25, 1.25, 3.0),
            slice_thickness=3.0,
            kernel="sharp",
            noise_std=50.0,
            hu_offset=40.0,
            bias_hu=60.0,
            kvp=100.0,
            streak_hu=80.0,
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
