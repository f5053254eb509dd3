"""Quality-check pictures: a predicted mask drawn over its CT (any input ``scripts.data.readers`` reads, DICOM included)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from scripts.data.readers import load_input  # noqa: E402
from scripts.data.writers import atomic_path  # noqa: E402

__all__ = ["save_overlay"]


def save_overlay(
    image_file: str | Path,
    mask_file: str | Path,
    png_file: str | Path,
    window: Sequence[float] = (-100.0, 240.0),
) -> Path:
    """
    Save a PNG with an axial and a coronal slice through the mask's centre of mass, mask contour in red.

    ``image_file`` is the CT as given to inference (an image file or a DICOM series folder), ``mask_file``
    a NIfTI mask in its geometry. Both volumes are reoriented to RAS and shown with their physical aspect
    ratio in radiological convention (patient's right on the left of the picture, anterior or superior up,
    marked R and L); the CT is displayed at ``window`` (HU). An empty mask gives slices through the volume
    centre. The PNG is written atomically.
    """
    loaded = load_input(image_file)
    affine = loaded.affine.numpy()
    mask = nib.load(str(mask_file))
    if tuple(loaded.shape[1:]) != tuple(mask.shape):
        raise ValueError(
            f"{mask_file} has shape {tuple(mask.shape)}, its image {image_file} has {tuple(loaded.shape[1:])}"
        )
    if not np.allclose(mask.affine, affine, atol=1e-3):
        raise ValueError(f"{mask_file} has affine {mask.affine.tolist()}, its image {image_file} has {affine.tolist()}")
    image = nib.as_closest_canonical(nib.Nifti1Image(loaded[0].numpy(), affine))
    mask = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(mask.dataobj), affine))
    ct = np.asarray(image.dataobj, dtype=np.float32)
    seg = np.asarray(mask.dataobj) > 0
    spacing = image.header.get_zooms()[:3]
    centre = np.argwhere(seg).mean(0).round().astype(int) if seg.any() else np.array(ct.shape) // 2
    views = {
        "axial": (ct[:, :, centre[2]], seg[:, :, centre[2]], spacing[1] / spacing[0]),
        "coronal": (ct[:, centre[1], :], seg[:, centre[1], :], spacing[2] / spacing[0]),
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=100)
    for ax, (title, (ct_slice, seg_slice, aspect)) in zip(axes, views.items()):
        # rows of the displayed array are the second array axis (A or S), drawn upwards
        ax.imshow(ct_slice.T, cmap="gray", vmin=window[0], vmax=window[1], origin="lower", aspect=aspect)
        if seg_slice.any():
            ax.contour(seg_slice.T.astype(float), levels=[0.5], colors="red", linewidths=1.0, origin="lower")
        ax.invert_xaxis()  # RAS x grows towards the patient's right, which radiology shows on the left
        for x, text in ((0.02, "R"), (0.98, "L")):
            ax.text(x, 0.5, text, color="yellow", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(f"{title} ({int(seg_slice.sum())} mask voxels)")
        ax.axis("off")
    fig.suptitle(f"{Path(image_file).name}: pancreas mask, window {window[0]:.0f}..{window[1]:.0f} HU")
    png_file = Path(png_file)
    png_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(png_file) as partial:
            fig.savefig(partial, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return png_file
