"""Quality-check pictures: a predicted mask drawn over its CT (any input ``scripts.data.readers`` reads, DICOM included)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from nibabel.orientations import io_orientation  # noqa: E402

from scripts.data.dicom import DicomSeriesReader, read_series  # noqa: E402
from scripts.data.readers import load_input  # noqa: E402
from scripts.data.writers import atomic_path  # noqa: E402

__all__ = ["in_memory_arrays", "overlay_views", "save_figure", "save_overlay"]


def _plane(volume: Any, axis: int, index: int) -> np.ndarray:
    """``volume`` (an array or a nibabel proxy) at ``index`` of ``axis``, as float32: only that plane is read."""
    slicer = [slice(None)] * 3
    slicer[axis] = index
    return np.asarray(volume[tuple(slicer)], dtype=np.float32)


class _DicomPlanes:
    """Planes of a checked DICOM series in ``DicomSeriesReader``'s voxel grid (columns, rows, slices), one slice
    decoded at a time (a whole 512 x 512 x 600 series is never held)."""

    def __init__(self, folder: str | Path) -> None:
        self.reader = DicomSeriesReader()
        headers, self.files = read_series(folder, stop_before_pixels=True)
        self.shape = (int(headers[0].Columns), int(headers[0].Rows), len(self.files))

    def _slice(self, k: int) -> np.ndarray:  # (rows, columns) in HU
        return np.asarray(self.reader._get_array_data(pydicom.dcmread(self.files[k]), self.files[k]), np.float32)

    def __getitem__(self, slicer: tuple) -> np.ndarray:
        axis = next(a for a, s in enumerate(slicer) if not isinstance(s, slice))
        index = slicer[axis]
        if axis == 2:
            return self._slice(index).T
        rows = [self._slice(k)[index, :] if axis == 1 else self._slice(k)[:, index] for k in range(len(self.files))]
        return np.stack(rows, axis=-1)


def _source(image_file: str | Path, shape: tuple[int, ...]) -> Any:
    """The CT as something whose planes can be read alone: a nibabel proxy, the DICOM series, or the loaded array."""
    path = Path(image_file)
    if path.is_dir():
        return _DicomPlanes(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        proxy = nib.load(str(path)).dataobj
        return proxy if tuple(proxy.shape[:3]) == shape and len(proxy.shape) == 3 else load_input(path)[0].numpy()
    return load_input(path)[0].numpy()


def save_figure(fig: plt.Figure, png_file: str | Path) -> Path:
    """Write ``fig`` to ``png_file`` atomically (complete or absent, folders made) and close it; the path."""
    png_file = Path(png_file)
    png_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(png_file) as partial:
            fig.savefig(partial, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return png_file


def overlay_views(
    image_file: str | Path,
    mask_file: str | Path,
    image: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """
    The axial and coronal views of the overlay: ``{name: (ct plane, mask plane, aspect)}``, planes in RAS order
    (first axis R->L reversed as ``nib.as_closest_canonical`` gives it), through the mask's centre of mass.

    Without ``image``, only the two planes of the CT are read (NIfTI slices through nibabel's proxy, DICOM one
    file at a time), so the overlay of a 512 x 512 x 600 CT costs a few slices of memory, not the volume. With
    ``image`` (the CT as read, ``(X, Y, Z)`` on the mask's grid) and ``mask`` with its ``affine``, nothing is read.

    Raises:
        ValueError: when the mask does not have the image's shape and affine, or ``mask`` comes without ``affine``.
    """
    if mask is None:
        loaded = nib.load(str(mask_file))
        affine, mask = loaded.affine, np.asarray(loaded.dataobj)
    elif affine is None:
        raise ValueError("a mask array needs its affine")
    affine = np.asarray(affine, dtype=np.float64)
    source = _source(image_file, tuple(mask.shape)) if image is None else image
    if tuple(source.shape[:3]) != tuple(mask.shape):
        raise ValueError(f"{mask_file} has shape {tuple(mask.shape)}, its image {image_file} has {tuple(source.shape)}")
    if image is None and not Path(image_file).is_dir() and Path(image_file).name.lower().endswith((".nii", ".nii.gz")):
        image_affine = nib.load(str(image_file)).affine
        if not np.allclose(image_affine, affine, atol=1e-3):
            raise ValueError(f"{mask_file} has affine {affine.tolist()}, its image {image_file} has {image_affine.tolist()}")
    seg = np.asarray(mask) > 0
    ornt = io_orientation(affine)  # original axis i -> (RAS axis, flip)
    axis_of = {int(ras): i for i, (ras, _) in enumerate(ornt)}
    flipped = {int(ras): flip < 0 for ras, flip in ornt}
    sizes = {ras: seg.shape[axis_of[ras]] for ras in range(3)}
    if seg.any():
        # centre of mass from one projection per axis (np.argwhere would list every mask voxel)
        mean = [
            float(np.average(np.arange(n), weights=seg.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)))
            for axis, n in enumerate(seg.shape)
        ]
        centre = {ras: int(round(sizes[ras] - 1 - mean[axis_of[ras]] if flipped[ras] else mean[axis_of[ras]])) for ras in range(3)}
    else:
        centre = {ras: sizes[ras] // 2 for ras in range(3)}
    spacing = {ras: float(np.linalg.norm(affine[:3, axis_of[ras]])) for ras in range(3)}
    views = {}
    for name, fixed in (("axial", 2), ("coronal", 1)):
        axis = axis_of[fixed]
        index = sizes[fixed] - 1 - centre[fixed] if flipped[fixed] else centre[fixed]
        shown = [ras for ras in range(3) if ras != fixed]  # the plane's axes, RAS order
        planes = []
        for volume in (source, seg):
            plane = _plane(volume, axis, index) if volume is source else np.take(volume, index, axis=axis)
            remaining = [i for i in range(3) if i != axis]  # original axes left in the plane, in order
            plane = np.transpose(plane, [remaining.index(axis_of[ras]) for ras in shown])
            for position, ras in enumerate(shown):
                if flipped[ras]:
                    plane = np.flip(plane, axis=position)
            planes.append(np.ascontiguousarray(plane))
        views[name] = (planes[0], planes[1], spacing[shown[1]] / spacing[shown[0]])
    return views


def in_memory_arrays(image_copy: Any, mask: Any) -> dict[str, np.ndarray]:
    """
    The ``image``, ``mask`` and ``affine`` keywords of ``save_overlay`` from what inference holds in memory: the CT
    kept as read (``KeepInputCopyd``, ``(1, X, Y, Z)``) and the final mask (a ``MetaTensor`` ``(1, X, Y, Z)`` on
    the input grid). Empty (the overlay then reads the planes from the files) when either is missing or their
    shapes differ.
    """
    if image_copy is None or not hasattr(mask, "affine") or tuple(image_copy.shape) != tuple(mask.shape):
        return {}
    return {"image": np.asarray(image_copy[0]), "mask": np.asarray(mask[0]), "affine": mask.affine.double().numpy()}


def save_overlay(
    image_file: str | Path,
    mask_file: str | Path,
    png_file: str | Path,
    window: Sequence[float] = (-100.0, 240.0),
    image: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """
    Save a PNG with an axial and a coronal slice through the mask's centre of mass, mask contour in red.

    ``image_file`` is the CT as given to inference (an image file or a DICOM series folder), ``mask_file``
    a NIfTI mask in its geometry. Both volumes are shown in RAS order (``overlay_views``) with their physical
    aspect ratio in radiological convention (patient's right on the left of the picture, anterior or superior
    up, marked R and L); the CT is displayed at ``window`` (HU). An empty mask gives slices through the volume
    centre. The PNG is written atomically. ``image``, ``mask`` and ``affine``: the arrays already in memory
    (see ``overlay_views``), so that nothing is read again.
    """
    views = overlay_views(image_file, mask_file, image, mask, affine)
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
    return save_figure(fig, png_file)
