"""Quality-check pictures: a predicted mask drawn over its CT."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from scripts.inputs import output_path  # noqa: E402

__all__ = ["save_overlay", "save_overlays"]


def save_overlay(
    image_file: str | Path,
    mask_file: str | Path,
    png_file: str | Path,
    window: Sequence[float] = (-100.0, 240.0),
) -> Path:
    """
    Save a PNG with an axial and a coronal slice through the mask's centre of mass, mask contour in red.

    Both volumes are reoriented to RAS and shown with their physical aspect ratio; the CT is displayed at
    ``window`` (HU). An empty mask gives slices through the volume centre.
    """
    image = nib.as_closest_canonical(nib.load(str(image_file)))
    mask = nib.as_closest_canonical(nib.load(str(mask_file)))
    ct = np.asarray(image.dataobj, dtype=np.float32)
    seg = np.asarray(mask.dataobj) > 0
    if ct.shape != seg.shape:
        raise ValueError(f"{mask_file} has shape {seg.shape}, its image {image_file} has {ct.shape}")
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
        ax.set_title(f"{title} ({int(seg_slice.sum())} mask voxels)")
        ax.axis("off")
    fig.suptitle(f"{Path(image_file).name}: pancreas mask, window {window[0]:.0f}..{window[1]:.0f} HU")
    png_file = Path(png_file)
    png_file.parent.mkdir(parents=True, exist_ok=True)
    partial = png_file.with_name(png_file.stem + ".partial.png")
    fig.savefig(partial, bbox_inches="tight")
    plt.close(fig)
    os.replace(partial, png_file)
    return png_file


def save_overlays(
    datalist: Sequence[dict], output_dir: str | Path, postfix: str, max_cases: int = 1
) -> list[Path]:
    """Save ``<case>_overlay.png`` next to the masks for the first ``max_cases`` cases whose mask exists."""
    saved = []
    for item in datalist:
        if len(saved) >= max_cases:
            break
        mask = output_path(item["image"], output_dir, postfix)
        if mask.exists():
            png = output_path(item["image"], output_dir, f"{postfix}_overlay", ext=".png")
            saved.append(save_overlay(item["image"], mask, png))
    return saved
