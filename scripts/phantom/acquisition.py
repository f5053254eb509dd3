"""CT acquisition of a phantom patient: contrast phase, partial volume, slice profile, kernel, noise, calibration.

``scan(patient, domain, rng)`` chooses a field of view and random cranio-caudal coverage around
the pancreas, renders the anatomy on a fine grid (output in-plane spacing, slice spacing / k),
assigns per-patient Hounsfield units for the domain's contrast phase and tube voltage, integrates
over a Gaussian slice sensitivity profile (FWHM = slice thickness) and samples at the slice
spacing, applies the reconstruction kernel, coloured noise, photon-starvation streaks, the scanner
calibration error (offset and smooth bias field, both vanishing in air), clips to the 12-bit CT
range and finally re-orients the arrays and the affine to the domain's storage orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import ORGAN_LABELS, Patient, render_patient
from .domains import PHASES, AcquisitionDomain, Phase
from .shapes import Grid

HU_MIN, HU_MAX = -1024.0, 3071.0
AIR_HU = -1000.0
FINE_SLICE_MM = 2.0  # the anatomy is rendered with at most this z spacing before slice integration
Z_MARGIN_MM = 8.0  # the pancreas stays at least this far from the first and last slice
XY_MARGIN_MM = 10.0

TISSUE_HU: dict[str, tuple[float, float, float]] = {
    # tissue: (non_contrast, pancreatic_arterial, portal_venous) mean HU of a reference patient
    "air": (AIR_HU, AIR_HU, AIR_HU),
    "fat": (-100, -100, -100),
    "soft_tissue": (35, 45, 50),
    "muscle": (50, 55, 60),
    "bone_cortical": (900, 900, 900),
    "bone_cancellous": (230, 230, 230),
    "bone": (450, 450, 450),
    "calcification": (650, 650, 650),
    "disc": (80, 85, 90),
    "csf": (10, 10, 10),
    "liver": (55, 75, 110),
    "spleen": (45, 125, 120),
    "kidney_cortex": (30, 190, 170),
    "kidney_medulla": (30, 85, 160),
    "urine": (8, 8, 10),
    "adrenal": (30, 75, 65),
    "pancreas": (50, 130, 105),
    "stomach_wall": (40, 100, 90),
    "bowel_wall": (40, 115, 95),
    "colon_wall": (40, 85, 85),
    "fluid": (12, 12, 12),
    "bile": (10, 10, 10),
    "feces": (25, 25, 25),
    "artery": (40, 300, 160),
    "portal_vein": (40, 120, 170),
    "ivc": (40, 90, 140),
    "renal_vein": (40, 190, 165),
    "hepatic_vein": (40, 60, 150),
}
"""Tissue Hounsfield units per contrast phase (order of ``PHASES``)."""

EXTRA_TISSUE_HU: dict[str, tuple[float, float, float]] = {
    # tissues of the whole-abdomen anatomy only, as TISSUE_HU; their per-patient values are drawn after those of
    # TISSUE_HU and only for a patient that uses one of them, so upper-abdomen cases keep their random stream
    "lung": (-860, -860, -860),
    "blood": (40, 260, 160),  # heart chambers and pulmonary vessels
    "myocardium": (45, 110, 100),
    "cartilage": (110, 110, 110),  # costal cartilage
    "oral_contrast": (300, 300, 300),  # positive oral contrast in the small bowel
    "oral_contrast_dilute": (120, 120, 120),
    "lymph_node": (40, 70, 75),
    "table_shell": (250, 250, 250),  # carbon-fibre skin of the table top
    "table_core": (-900, -900, -900),  # its foam core
}
"""Tissue Hounsfield units per contrast phase of the whole-abdomen anatomy's extra tissues."""

TEXTURE_HU: dict[str, tuple[float, float, float]] = {
    # amplitude (HU) of the tissue's unit-variance texture pattern per phase
    "pancreas": (5, 9, 8),
    "liver": (3, 4, 5),
    "spleen": (3, 25, 5),
    "feces": (35, 35, 35),
    "lung": (25, 25, 25),
    "oral_contrast": (40, 40, 40),
    "oral_contrast_dilute": (20, 20, 20),
}
"""Texture amplitude per tissue and phase (heterogeneous arterial spleen, lobular pancreas, mottled faeces)."""


@dataclass(frozen=True)
class Scan:
    """An acquired volume in the domain's storage orientation.

    ``image``: float32 (X, Y, Z) HU, integer valued, in [-1024, 3071]; ``label``: uint8 same shape
    (pancreas = 1, or ``ORGAN_LABELS`` values); ``affine``: 4x4 float64 voxel -> world RAS+ mm.
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray


def kvp_gains(kvp: float) -> tuple[float, float, float]:
    """Relative change (iodine enhancement, bone / calcium HU, fat HU) at ``kvp`` versus 120 kVp.

    Linear fits of published phantom data: iodine enhancement rises ~1.65x at 80 kVp (~1.33x at
    100 kVp), bone and calcium ~1.3x at 80 kVp, fat becomes ~10 % more negative.
    """
    drop = 120.0 - kvp
    return 1.0 + 0.0165 * drop, 1.0 + 0.0075 * drop, 1.0 + 0.0025 * drop


def tissue_values(
    phase: Phase, kvp: float, rng: np.random.Generator, extra_tissues: bool = False
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-patient tissue HU and texture amplitudes for ``phase`` at tube voltage ``kvp``.

    Each tissue's unenhanced value is jittered by a few HU and its enhancement (phase value minus
    unenhanced value) is scaled by a patient bolus factor and a small per-tissue factor; the
    tube voltage scales iodine enhancement, bone (unenhanced HU > 200) and fat (unenhanced HU < 0).
    ``extra_tissues`` adds ``EXTRA_TISSUE_HU`` (drawn after ``TISSUE_HU``, with the same bolus).
    """
    p = PHASES.index(phase)
    iodine, calcium, fat = kvp_gains(kvp)
    bolus = rng.uniform(0.85, 1.15)
    values = {}
    for tissue, hu in ({**TISSUE_HU, **EXTRA_TISSUE_HU} if extra_tissues else TISSUE_HU).items():
        base = hu[0] + (rng.normal(0.0, 0.03 * abs(hu[0]) + 3.0) if tissue != "air" else 0.0)
        if tissue != "air":
            base *= calcium if hu[0] > 200 else fat if hu[0] < 0 else 1.0
        values[tissue] = float(base + (hu[p] - hu[0]) * iodine * bolus * rng.uniform(0.9, 1.1))
    textures = {tissue: float(amp[p]) for tissue, amp in TEXTURE_HU.items()}
    return values, textures


def scan_grid(patient: Patient, domain: AcquisitionDomain, rng: np.random.Generator) -> tuple[Grid, int]:
    """Fine render grid of one scan and its z sub-sampling factor k (output slice j = fine slice k*j + k//2).

    The in-plane field of view is centred on the body with a small random shift; the z coverage is a
    random length in ``domain.z_extent_mm`` (or the patient's own ``z_coverage_mm``) placed at random so that the
    pancreas (and the patient's ``z_required_mm``) stays inside, and inside the patient's ``z_limits_mm`` where it
    has them.
    """
    sx, sy, sz = domain.spacing
    nx, ny = round(domain.fov_mm[0] / sx), round(domain.fov_mm[1] / sy)
    (blo, bhi), (plo, phi) = patient.body_bounds, patient.pancreas_bounds
    centre = [rng.uniform(-8, 8), 0.5 * (blo[1] + bhi[1]) + rng.uniform(-8, 8)]
    for d, n, s in ((0, nx, sx), (1, ny, sy)):  # keep the pancreas inside the field of view
        half = 0.5 * (n - 1) * s - XY_MARGIN_MM
        centre[d] = float(np.clip(centre[d], phi[d] - half, plo[d] + half))
    z_lo, z_hi = plo[2], phi[2]  # what the coverage must contain
    if patient.z_required_mm is not None:
        z_lo, z_hi = min(z_lo, patient.z_required_mm[0]), max(z_hi, patient.z_required_mm[1])
    z_extent = domain.z_extent_mm if patient.z_coverage_mm is None else patient.z_coverage_mm
    length = max(rng.uniform(*z_extent), z_hi - z_lo + 2 * Z_MARGIN_MM + sz)
    nz = math.ceil(length / sz)
    first_lo, first_hi = z_hi + Z_MARGIN_MM - (nz - 1) * sz, z_lo - Z_MARGIN_MM
    if patient.z_limits_mm is not None:  # the pancreas constraint wins where both cannot hold
        first_lo = min(max(first_lo, patient.z_limits_mm[0]), first_hi)
        first_hi = max(min(first_hi, patient.z_limits_mm[1] - (nz - 1) * sz), first_lo)
    first = rng.uniform(first_lo, max(first_lo, first_hi))
    k = max(1, math.ceil(sz / FINE_SLICE_MM - 1e-6))
    dz = sz / k
    origin = (centre[0] - 0.5 * (nx - 1) * sx, centre[1] - 0.5 * (ny - 1) * sy, first - (k // 2) * dz)
    return Grid((nx, ny, nz * k), (sx, sy, dz), origin), k


def slice_integrate(volume: np.ndarray, thickness: float, dz: float, k: int) -> np.ndarray:
    """Gaussian slice profile of FWHM ``thickness`` (mm) on a fine z grid of step ``dz``, sampled every k slices.

    The rendering already averages over a box of width dz, so only the remaining variance is added.
    Input (X, Y, k*Z) float32, output (X, Y, Z) float32.
    """
    var = (thickness / (2.0 * math.sqrt(2.0 * math.log(2.0)))) ** 2 - dz**2 / 12.0
    if var > (0.05 * dz) ** 2:
        volume = ndimage.gaussian_filter1d(volume, math.sqrt(var) / dz, axis=2, mode="nearest", truncate=3.0)
    return np.ascontiguousarray(volume[:, :, k // 2 :: k])


def apply_kernel(image: np.ndarray, kernel: str) -> np.ndarray:
    """In-plane reconstruction kernel: ``smooth`` low-pass blur, ``sharp`` edge enhancement (unsharp mask)."""
    if kernel == "smooth":
        return ndimage.gaussian_filter(image, (0.6, 0.6, 0.0), truncate=3.0)
    blurred = ndimage.gaussian_filter(image, (1.0, 1.0, 0.0), truncate=3.0)
    return image + np.float32(0.7) * (image - blurred)


def coloured_noise(shape: tuple[int, ...], kernel: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance CT-like noise (float32): in-plane low-pass for ``smooth``, high-pass emphasised for ``sharp``."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if kernel == "smooth":
        noise = ndimage.gaussian_filter(white, (0.8, 0.8, 0.0), truncate=3.0)
    else:
        noise = white - np.float32(0.55) * ndimage.gaussian_filter(white, (1.0, 1.0, 0.0), truncate=3.0)
    return noise / np.float32(noise.std())


def bias_field(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Smooth random field (float32, peak |value| = 1): a sum of three separable long-wavelength cosine products."""
    total = np.zeros(shape, dtype=np.float32)
    for _ in range(3):
        factors = []
        for d in range(3):
            coord = (np.arange(shape[d]) - 0.5 * (shape[d] - 1)) * spacing[d]
            wave = np.cos(2 * np.pi * coord / rng.uniform(250, 700) + rng.uniform(0, 2 * np.pi))
            factors.append(wave.astype(np.float32))
        total += factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    return total / np.float32(max(float(np.abs(total).max()), 1e-6))


def streak_field(grid: Grid, centre_xy: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Photon-starvation streaks (float32, grid shape, peak |value| ~ 1): thin dark and bright lines.

    Lines pass near ``centre_xy`` (the spine) at angles clustered around the long left-right path
    through the body; each is present over a random band of slices with a smooth profile.
    """
    x, y, z = (grid.axis(d) for d in range(3))
    total = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(int(rng.integers(6, 12))):
        angle = math.radians(rng.normal(0.0, 20.0))
        cx, cy = centre_xy[0] + rng.normal(0, 15), centre_xy[1] + rng.normal(0, 15)
        dist = (x[:, None] - cx) * math.sin(angle) - (y[None, :] - cy) * math.cos(angle)  # (X, Y) to the line
        width = rng.uniform(0.8, 2.0)
        sign = rng.choice([-1.0, 1.0], p=[0.65, 0.35])  # mostly dark streaks with bright rims
        profile = sign * (np.exp(-0.5 * (dist / width) ** 2) - 0.5 * np.exp(-0.5 * (dist / (2.5 * width)) ** 2))
        zc, zw = rng.uniform(z[0], z[-1]), rng.uniform(6.0, 30.0)
        along = np.exp(-0.5 * ((z - zc) / zw) ** 2) * rng.uniform(0.4, 1.0)
        total += profile.astype(np.float32)[:, :, None] * along.astype(np.float32)[None, None, :]
    return total


def orient(arrays: list[np.ndarray], grid: Grid, orientation: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Flip RAS-ordered arrays to ``orientation`` (e.g. "LPS") and return them with the matching affine."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag(grid.spacing)
    affine[:3, 3] = grid.origin
    for d, letter in enumerate(orientation):
        if letter != "RAS"[d]:
            arrays = [np.flip(a, axis=d) for a in arrays]
            affine[:3, 3] += affine[:3, d] * (grid.shape[d] - 1)
            affine[:3, d] *= -1
    return [np.ascontiguousarray(a) for a in arrays], affine


def scan(patient: Patient, domain: AcquisitionDomain, rng: np.random.Generator, organ_labels: bool = False) -> Scan:
    """Acquire ``patient`` with ``domain``; the label is pancreas occupancy >= 0.5 after slice integration."""
    fine, k = scan_grid(patient, domain, rng)
    layers = render_patient(patient, fine)
    extra = any(part.tissue in EXTRA_TISSUE_HU for structure in patient.structures for part in structure.parts)
    values, textures = tissue_values(domain.phase, domain.kvp, rng, extra_tissues=extra)
    dz = fine.spacing[2]
    image = slice_integrate(layers.paint(values, textures, fill=AIR_HU), domain.slice_thickness, dz, k)
    pancreas = slice_integrate(layers.organ_occupancy("pancreas"), domain.slice_thickness, dz, k) >= 0.5
    if organ_labels:
        label = np.ascontiguousarray(layers.organ_map()[:, :, k // 2 :: k])
        label[(label == ORGAN_LABELS["pancreas"]) & ~pancreas] = ORGAN_LABELS["fat"]
        label[pancreas] = ORGAN_LABELS["pancreas"]
    else:
        label = pancreas.astype(np.uint8)
    out_grid = Grid(image.shape, domain.spacing, (fine.origin[0], fine.origin[1], fine.origin[2] + (k // 2) * dz))

    image = apply_kernel(image, domain.kernel)
    in_body = np.where(image > -500, np.float32(1.0), np.float32(0.55))  # less noise in the air around the patient
    if domain.noise_std > 0:
        std = domain.noise_std * rng.uniform(0.9, 1.1) * math.exp((patient.diameter_mm - 300.0) / 400.0)
        image += coloured_noise(image.shape, domain.kernel, rng) * in_body * np.float32(std)
    if domain.streak_hu > 0:
        image += np.float32(domain.streak_hu) * streak_field(out_grid, patient.spine_xy, rng) * in_body
    calibration = np.float32(domain.hu_offset + rng.normal(0.0, 2.0))
    if domain.bias_hu > 0:
        calibration = calibration + np.float32(domain.bias_hu) * bias_field(image.shape, domain.spacing, rng)
    # the calibration error scales with attenuation relative to air, so air stays at -1000 HU
    image += np.clip((image - np.float32(AIR_HU)) / np.float32(1000.0), 0.0, 1.0) * calibration
    image = np.rint(np.clip(image, HU_MIN, HU_MAX)).astype(np.float32)
    (image, label), affine = orient([image, label], out_grid, domain.orientation)
    return Scan(image, label, affine)
