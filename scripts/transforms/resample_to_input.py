"""
``ResampleToInputd``: a prediction on the preprocessed grid resampled onto the grid of the input image, slab by
slab, so memory stays flat in the number of slices.

MONAI's ``Invertd`` undoes the preprocessing one transform at a time; undoing ``Spacingd`` builds a sampling grid
of the whole output (3 float32 coordinates per voxel: 1.9 GB for 512 x 512 x 600) and peaks near 5 GB there.
Every output voxel's value depends only on its own position, so the same trilinear sampling evaluated on slabs of
the output gives the same values with a grid of one slab at a time.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["ResampleToInputd", "resample_to_grid"]


def resample_to_grid(
    source: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    slab_voxels: int = 2**22,
    padding_mode: str = "border",
    only_above: float | None = None,
) -> torch.Tensor:
    """
    Trilinear samples of ``source`` at the voxel centres of the target grid, computed slab by slab.

    Args:
        source: ``(C, D0, D1, D2)`` values on the source grid.
        source_affine: the source grid's voxel-to-world affine ``(4, 4)``.
        target_affine: the target grid's voxel-to-world affine ``(4, 4)`` (same world frame).
        target_shape: ``(S0, S1, S2)`` of the target grid.
        slab_voxels: target voxels per slab along the last axis (at least one slice); memory of the sampling grid
            is ``12 * slab_voxels`` bytes.
        padding_mode: value outside the source grid (``grid_sample``): ``border`` (the nearest source voxel, as
            MONAI's ``Spacingd`` and its inverse) or ``zeros``.
        only_above: when given, only the values ``>= only_above`` are needed (e.g. the mask ``p >= 0.5``): target
            voxels whose 8 source neighbours are all below it are set to 0 without being sampled. A trilinear value
            is a convex combination of its 8 neighbours, so it reaches ``only_above`` only next to a source voxel
            that does: ``result >= only_above`` is exactly that of the full resampling, in a fraction of the time
            when the foreground is small (the pancreas in a CT).

    Returns:
        ``(C, S0, S1, S2)`` float32 on ``source``'s device.

    Raises:
        ValueError: when ``source`` is not channel-first 3D or an affine is not invertible.
    """
    if source.ndim != 4:
        raise ValueError(f"source must be (C, D0, D1, D2), got shape {tuple(source.shape)}")
    try:
        voxel_map = np.linalg.solve(np.asarray(source_affine, np.float64), np.asarray(target_affine, np.float64))
    except np.linalg.LinAlgError as error:
        raise ValueError(f"source affine is not invertible: {source_affine}") from error
    if only_above is not None:
        return _resample_near_foreground(source, voxel_map, target_shape, slab_voxels, padding_mode, only_above)
    sizes = np.array(source.shape[1:], dtype=np.float64)
    # grid_sample with align_corners=True: index u of a size-n axis is at 2u/(n-1) - 1 (the centre for n = 1)
    scale = np.where(sizes > 1, 2.0 / np.maximum(sizes - 1, 1), 0.0)
    normalised = np.diag([*scale, 1.0]) @ voxel_map
    normalised[:3, 3] -= np.where(sizes > 1, 1.0, 0.0)
    matrix = torch.as_tensor(normalised, dtype=torch.float64, device=source.device)
    s0, s1, s2 = (int(s) for s in target_shape)
    step = max(1, slab_voxels // max(1, s0 * s1))
    i = torch.arange(s0, dtype=torch.float64, device=source.device).view(s0, 1, 1)
    j = torch.arange(s1, dtype=torch.float64, device=source.device).view(1, s1, 1)
    values = source.float()[None]
    out = torch.empty((source.shape[0], s0, s1, s2), dtype=torch.float32, device=source.device)
    for start in range(0, s2, step):
        k = torch.arange(start, min(s2, start + step), dtype=torch.float64, device=source.device).view(1, 1, -1)
        coords = [matrix[c, 0] * i + matrix[c, 1] * j + matrix[c, 2] * k + matrix[c, 3] for c in range(3)]
        # grid_sample reads the last grid coordinate as the first spatial axis
        grid = torch.stack([coords[2], coords[1], coords[0]], dim=-1).float()[None]
        out[:, :, :, start : start + k.shape[-1]] = F.grid_sample(
            values, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True
        )[0]
    return out


def _resample_near_foreground(
    source: torch.Tensor,
    voxel_map: np.ndarray,
    target_shape: tuple[int, int, int],
    slab_voxels: int,
    padding_mode: str,
    only_above: float,
) -> torch.Tensor:
    """
    ``resample_to_grid`` restricted to target boxes around the source voxels ``>= only_above``, zeros elsewhere:
    one box per connected group of such voxels (dilated by one voxel), so scattered false positives far apart do
    not make one box of the whole volume; a group at the edge of the source grid reaches the target's edge.
    """
    out = torch.zeros((source.shape[0], *(int(s) for s in target_shape)), dtype=torch.float32, device=source.device)
    above = (source >= only_above).any(dim=0).cpu().numpy()
    if not above.any():
        return out
    # a target voxel's 8 neighbours lie within one source voxel of it: dilate by one and group what touches
    near = ndimage.binary_dilation(above, structure=np.ones((3, 3, 3), bool))
    labels, _ = ndimage.label(near, structure=np.ones((3, 3, 3), bool))
    limit = np.asarray(target_shape)
    # beyond the source grid, border padding repeats the edge voxels: a group at the edge reaches every target
    # voxel past it, so its box is extended far out on that side before it is mapped and clipped to the target
    far = 4.0 * float(max(limit.max(), max(above.shape))) * float(np.abs(voxel_map[:3, :3]).max() + 1)
    for box in ndimage.find_objects(labels):
        low = np.array([-far if b.start == 0 else b.start for b in box], dtype=np.float64)
        high = np.array([far if b.stop == n else b.stop - 1 for b, n in zip(box, above.shape)], dtype=np.float64)
        corners = np.array([[x, y, z, 1.0] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
        target = np.linalg.solve(voxel_map, corners.T).T[:, :3]
        start = np.clip(np.floor(target.min(axis=0)).astype(int) - 1, 0, limit)
        stop = np.clip(np.ceil(target.max(axis=0)).astype(int) + 2, 0, limit)
        if (stop <= start).any():
            continue
        shift = np.eye(4)
        shift[:3, 3] = start
        size = tuple(int(b - a) for a, b in zip(start, stop))
        region = resample_to_grid(source, np.eye(4), voxel_map @ shift, size, slab_voxels, padding_mode)
        out[:, start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = region
    return out


class ResampleToInputd(MapTransform):
    """
    Resample ``data[key]`` (on the preprocessed grid of ``data[image_key]``) onto the grid the image was read on.

    The source grid is the preprocessed image's (its ``affine``, the same as the prediction's); the target grid is
    the image's ``meta["original_affine"]`` and ``meta["spatial_shape"]``, as the reader gave them. The result is a
    ``MetaTensor`` ``(C, *spatial_shape)`` with the original affine and the image's ``filename_or_obj``, ready for
    ``SaveImaged(resample=False)``.

    The values are those of ``Invertd`` over Orientationd, Spacingd and CropForegroundd: the prediction is padded
    with zeros back to the grid before the foreground crop (the ``cropped`` margins that ``CropForegroundd``
    records in the image's ``applied_operations``), then sampled trilinearly with border padding, as the inverse
    of ``Spacingd`` samples; the permutation and flips of ``Orientationd`` are part of the affines.

    Args:
        keys: the predictions to resample, channel-first on the preprocessed grid.
        image_key: the preprocessed image whose metadata holds the original grid.
        slab_voxels: output voxels per slab (see ``resample_to_grid``).
        only_above: when only ``value >= only_above`` is used downstream (the mask of ``AsDiscreted(threshold=0.5)``),
            resample only near the source voxels that reach it and leave 0 elsewhere (see ``resample_to_grid``): the
            same mask in a fraction of the time. ``None``: every value (probability and entropy maps need them).

    Raises:
        ValueError: when the image is no ``MetaTensor`` with ``original_affine`` and ``spatial_shape``, or a
            prediction's spatial shape differs from the image's.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        slab_voxels: int = 2**22,
        only_above: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if slab_voxels < 1:
            raise ValueError(f"slab_voxels must be positive, got {slab_voxels}")
        self.image_key = image_key
        self.slab_voxels = slab_voxels
        self.only_above = only_above

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        meta = image.meta if isinstance(image, MetaTensor) else {}
        if "original_affine" not in meta or "spatial_shape" not in meta:
            raise ValueError(f"{self.image_key!r} must be a MetaTensor with original_affine and spatial_shape")
        target_affine = np.asarray(meta["original_affine"], dtype=np.float64)
        target_shape = tuple(int(s) for s in np.asarray(meta["spatial_shape"]).tolist())
        source_affine = image.affine.detach().cpu().numpy().astype(np.float64)
        margins = _crop_margins(image)
        if margins is not None:
            shift = np.eye(4)
            shift[:3, 3] = -np.asarray(margins[0::2], dtype=np.float64)
            source_affine = source_affine @ shift
        for key in self.key_iterator(d):
            prediction = d[key]
            if tuple(prediction.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"{key!r} of spatial shape {tuple(prediction.shape[1:])} is not on the grid of {self.image_key!r} "
                    f"{tuple(image.shape[1:])}"
                )
            plain = prediction.as_tensor() if isinstance(prediction, MetaTensor) else torch.as_tensor(prediction)
            if margins is not None:
                plain = F.pad(plain, [m for axis in reversed(range(3)) for m in margins[2 * axis : 2 * axis + 2]])
            values = resample_to_grid(
                plain, source_affine, target_affine, target_shape, self.slab_voxels, only_above=self.only_above
            )
            out_meta = {
                "filename_or_obj": meta.get("filename_or_obj"),
                "original_affine": target_affine,
                "spatial_shape": np.asarray(target_shape),
            }
            d[key] = MetaTensor(values, affine=torch.as_tensor(target_affine), meta=out_meta)
        return d


def _crop_margins(image: MetaTensor) -> list[int] | None:
    """``[lo0, hi0, lo1, hi1, lo2, hi2]`` voxels that the last foreground crop removed, from its trace, or None."""
    for operation in reversed(image.applied_operations):
        cropped = operation.get("extra_info", {}).get("cropped")
        if "Crop" in str(operation.get("class", "")) and cropped is not None and len(cropped) == 6:
            return [int(c) for c in cropped]
    return None
