"""
Plausibility checks of pancreas masks on the real CT beside the project (``../shared/data/real_ct``, see its
README): the cases, their reference masks, the numbers (``scripts.evaluation.plausibility``) and an overlay.

- ``ircad_1.1``: contrast CT with hand-drawn liver, spleen, kidney and portal vein masks (no pancreas): volume,
  fractions inside those organs, in air or outside the body, distance from the portal-splenic confluence.
- ``totalseg_b``: 20 slices with a model-made organ map (TotalSegmentator ``total``) whose pancreas covers the first
  four: the same fractions (liver, spleen, stomach), distance from that pancreas' centre, and Dice against it on
  its slices. A model's label, not ground truth: a plausibility number, not accuracy.

    from scripts.evaluation.real_ct import REAL_CASES, check_case
    report = check_case("ircad_1.1", real_ct_dir, "outputs/PATIENT_DICOM_seg.nii.gz", "overlay.png")
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from scripts.bundle import BUNDLE_ROOT  # noqa: E402
from scripts.data.readers import load_input  # noqa: E402
from scripts.evaluation.plausibility import dice_on_labelled_slices, mask_plausibility, portal_confluence  # noqa: E402
from scripts.inference.overlay import save_figure  # noqa: E402

__all__ = [
    "REAL_CASES",
    "REAL_CT_DIR",
    "TARGETS",
    "CaseReferences",
    "RealCase",
    "canonical",
    "check_case",
    "meets_targets",
    "save_check_overlay",
]

REAL_CT_DIR = BUNDLE_ROOT.parent / "shared" / "data" / "real_ct"
"""Where the real CT samples are: beside the project, absent from a fresh clone."""


@dataclass(frozen=True)
class CaseReferences:
    """What is known of a real case, on its CT's canonical (RAS) grid: ``hu`` ``(X, Y, Z)``, ``affine``, ``organs``
    the pancreas must not overlap, a ``landmark`` (voxel coordinates) it lies near, and a ``pancreas`` label that
    covers only some slices (or None)."""

    hu: np.ndarray
    affine: np.ndarray
    organs: dict[str, np.ndarray]
    landmark: np.ndarray | None
    landmark_name: str
    pancreas: np.ndarray | None


@dataclass(frozen=True)
class RealCase:
    """A real CT of ``../shared/data/real_ct``: ``image`` relative to that folder (what inference is given),
    ``references`` reads its ``CaseReferences`` from the folder; ``licence`` of its images."""

    name: str
    image: str
    description: str
    references: Callable[[Path], CaseReferences]
    licence: str
    shareable: bool  # whether pictures of it (overlays: modified copies) may be published, e.g. in docs/


def canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` ``array`` with its ``affine`` turned to the closest RAS voxel order (third axis inferior to
    superior), as ``nib.as_closest_canonical`` does."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64)))
    return np.asarray(image.dataobj), image.affine


def _read_canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = load_input(path)
    return canonical(image[0].numpy(), image.affine.numpy())


def _same_grid(name: str, affine: np.ndarray, shape: tuple, reference_affine: np.ndarray, reference_shape: tuple):
    if tuple(shape) != tuple(reference_shape) or not np.allclose(affine, reference_affine, atol=1e-3):
        raise ValueError(
            f"{name} is not on its CT's grid: shape {tuple(shape)} vs {tuple(reference_shape)}, "
            f"affine {np.round(affine, 3).tolist()} vs {np.round(reference_affine, 3).tolist()}"
        )


IRCAD_ORGANS = {"liver": "liver", "spleen": "spleen", "kidney_left": "leftkidney", "kidney_right": "rightkidney"}
"""Organs the pancreas must not overlap: our name -> the mask folder in ``ircad_1.1/MASKS_DICOM.zip``."""


def ircad_references(real_ct_dir: Path) -> CaseReferences:
    """``ircad_1.1``: its CT and the hand-drawn liver, spleen and kidneys; the landmark is the portal-splenic
    confluence estimated from the portal vein mask (``portal_confluence``)."""
    hu, affine = _read_canonical(real_ct_dir / "ircad_1.1" / "PATIENT_DICOM")
    masks = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(real_ct_dir / "ircad_1.1" / "MASKS_DICOM.zip") as zf:
        for name, folder in {**IRCAD_ORGANS, "portal_vein": "portalvein"}.items():
            members = [m for m in zf.namelist() if m.startswith(f"MASKS_DICOM/{folder}/") and not m.endswith("/")]
            zf.extractall(tmp, members)
            mask, mask_affine = _read_canonical(Path(tmp) / "MASKS_DICOM" / folder)
            _same_grid(f"MASKS_DICOM/{folder}", mask_affine, mask.shape, affine, hu.shape)
            masks[name] = mask > 0
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    landmark = portal_confluence(masks.pop("portal_vein"), masks["liver"], masks["spleen"], spacing)
    return CaseReferences(hu, affine, masks, landmark, "portal-splenic confluence", None)


TOTALSEG_LABELS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5, "stomach": 6}
"""Organs the pancreas must not overlap in the TotalSegmentator ``total`` map (the kidneys are not in the slab)."""
TOTALSEG_PANCREAS = 7


def totalseg_references(real_ct_dir: Path) -> CaseReferences:
    """``totalseg_b``: its CT and TotalSegmentator's organ map; the reference pancreas is the map's pancreas (first
    four slices only) and the landmark its centre (the slab's portal vein label is mostly inside the liver)."""
    hu, affine = _read_canonical(real_ct_dir / "totalseg_b_dicom")
    seg_file = real_ct_dir / "totalseg_b_seg.nii.gz"
    seg_image = nib.load(str(seg_file))
    seg, seg_affine = canonical(np.asarray(seg_image.dataobj), seg_image.affine)
    _same_grid(seg_file.name, seg_affine, seg.shape, affine, hu.shape)
    organs = {name: seg == value for name, value in TOTALSEG_LABELS.items() if (seg == value).any()}
    pancreas = seg == TOTALSEG_PANCREAS
    landmark = np.argwhere(pancreas).mean(axis=0) if pancreas.any() else None
    return CaseReferences(hu, affine, organs, landmark, "model-made pancreas centre", pancreas)


REAL_CASES: dict[str, RealCase] = {
    case.name: case
    for case in (
        RealCase("ircad_1.1", "ircad_1.1/PATIENT_DICOM", "contrast CT 512x512x129, hand-drawn organ masks",
                 ircad_references, "CC BY-NC-ND 4.0 (3D-IRCADb-01)", shareable=False),
        RealCase("totalseg_b", "totalseg_b_dicom", "20-slice CT, model-made organ map with the pancreas in 4 slices",
                 totalseg_references, "Apache-2.0 (TotalSegmentator test files)", shareable=True),
    )
}
"""The real cases by name."""

TARGETS: dict[str, dict[str, tuple[float, float]]] = {
    "ircad_1.1": {"volume_ml": (40.0, 120.0), "plausible": (0.95, 1.0), "landmark_distance_mm": (0.0, 50.0)},
    "totalseg_b": {"dice_labelled_slices": (0.5, 1.0)},
}
"""What a useful model reaches on each case: ``{case: {report key: (lowest, highest)}}``. A real pancreas is 60 to
100 mL; at least 95 % of the mask outside liver, spleen, kidneys and air; its centre within 5 cm of the
portal-splenic confluence (the neck lies in front of it, the head to its right, body and tail to its left: a mask
of the right size in the colon wall or the abdominal wall passes the first two and fails this one); Dice 0.5
against the model-made label."""


def meets_targets(report: dict) -> bool:
    """Whether a ``check_case`` report is inside every range of its case's ``TARGETS`` (NaN never is)."""
    return all(lo <= report.get(key, float("nan")) <= hi for key, (lo, hi) in TARGETS[report["case"]].items())


def check_case(
    name: str, real_ct_dir: str | Path, mask_file: str | Path, overlay_file: str | Path | None = None
) -> dict:
    """
    Plausibility of the pancreas mask ``mask_file`` (NIfTI on the CT's grid, as inference writes it) of the real case
    ``name``: ``mask_plausibility`` with the case's organs and landmark, plus ``dice_labelled_slices`` against a
    reference pancreas where the case has one; the overlay is saved to ``overlay_file`` when given.

    Raises:
        ValueError: for an unknown case, or a mask not on the CT's grid.
        FileNotFoundError: when the case's files are not in ``real_ct_dir``.
    """
    if name not in REAL_CASES:
        raise ValueError(f"unknown real case {name!r}; known: {', '.join(REAL_CASES)}")
    real_ct_dir = Path(real_ct_dir)
    if not (real_ct_dir / REAL_CASES[name].image).exists():
        raise FileNotFoundError(f"{real_ct_dir / REAL_CASES[name].image} (case {name}) does not exist")
    refs = REAL_CASES[name].references(real_ct_dir)
    mask_image = nib.load(str(mask_file))
    mask, mask_affine = canonical(np.asarray(mask_image.dataobj), mask_image.affine)
    _same_grid(str(mask_file), mask_affine, mask.shape, refs.affine, refs.hu.shape)
    spacing = tuple(float(s) for s in np.linalg.norm(refs.affine[:3, :3], axis=0))
    report = {"case": name, **mask_plausibility(mask, refs.hu, spacing, refs.organs, refs.landmark)}
    report["landmark"] = refs.landmark_name if refs.landmark is not None else None
    report["landmark_voxel"] = None if refs.landmark is None else [float(c) for c in refs.landmark]
    if refs.pancreas is not None:
        dice, slices = dice_on_labelled_slices(mask, refs.pancreas)
        report.update(dice_labelled_slices=dice, labelled_slices=slices)
    if overlay_file is not None:
        save_check_overlay(refs, mask > 0, overlay_file, title=f"{name}: {Path(mask_file).name}")
    return report


ORGAN_COLOURS = {"liver": "tab:blue", "spleen": "tab:purple", "kidney_left": "tab:orange", "kidney_right": "tab:orange",
                 "stomach": "tab:cyan"}


def save_check_overlay(refs: CaseReferences, mask: np.ndarray, png_file: str | Path, title: str = "") -> Path:
    """
    A PNG of axial and coronal planes through the mask's centre (or the landmark, for an empty mask) and through
    the landmark: the CT at -160..240 HU, the mask in red, the organs it must avoid in their colours, the reference
    pancreas (if any) in green, the landmark as a yellow cross. Patient's right on the picture's left. Written
    atomically.
    """
    spacing = np.linalg.norm(refs.affine[:3, :3], axis=0)
    centres = []
    if mask.any():
        centres.append(("mask centre", np.argwhere(mask).mean(axis=0)))
    if refs.landmark is not None:
        centres.append((refs.landmark_name, refs.landmark))
    if not centres:
        centres.append(("volume centre", (np.asarray(mask.shape) - 1) / 2.0))
    fig, axes = plt.subplots(len(centres), 2, figsize=(11, 5.5 * len(centres)), dpi=90, squeeze=False)
    for row, (label, centre) in zip(axes, centres):
        for ax, (view, axis) in zip(row, (("axial", 2), ("coronal", 1))):
            index = int(round(float(centre[axis])))
            plane = lambda volume: np.take(volume, index, axis=axis).T  # noqa: E731 (rows: the second remaining axis)
            shown = [a for a in range(3) if a != axis]
            ax.imshow(plane(refs.hu), cmap="gray", vmin=-160, vmax=240, origin="lower",
                      aspect=spacing[shown[1]] / spacing[shown[0]])
            for name, organ in refs.organs.items():
                if plane(organ).any():
                    ax.contour(plane(organ).astype(float), levels=[0.5], colors=ORGAN_COLOURS.get(name, "white"),
                               linewidths=0.8)
            if refs.pancreas is not None and plane(refs.pancreas).any():
                ax.contour(plane(refs.pancreas).astype(float), levels=[0.5], colors="lime", linewidths=1.0)
            if plane(mask).any():
                ax.contour(plane(mask).astype(float), levels=[0.5], colors="red", linewidths=1.2)
            if refs.landmark is not None and abs(refs.landmark[axis] - index) < 3:
                ax.plot(refs.landmark[shown[0]], refs.landmark[shown[1]], "x", color="yellow", markersize=10)
            ax.invert_xaxis()  # RAS: x grows towards the patient's right, shown on the left
            ax.set_title(f"{view} through the {label} ({int(plane(mask).sum())} mask voxels)", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{title}\nred: prediction, green: reference pancreas, blue liver, purple spleen, orange kidneys, "
                 "cyan stomach, yellow x: landmark", fontsize=9)
    return save_figure(fig, png_file)
