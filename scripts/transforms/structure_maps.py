"""Per-case structure maps of the pancreas label used by the dual self-supervised training tasks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage
from skimage.morphology import skeletonize

__all__ = ["PancreasStructureMapsd"]


class PancreasStructureMapsd(MapTransform):
    """
    Compute the skeleton, the peripancreatic ring and the boundary band of a binary pancreas label.

    The maps are computed once per case (the transform is deterministic, so ``CacheDataset`` caches its
    output) and are added to the data dictionary as extra keys with the label's metadata, so that later
    spatial transforms (e.g. ``RandCropByPosNegLabeld``, ``RandAffined``) can process them together with
    the label.

    - ``skeleton``: the 3D skeleton (centreline) of the label from ``skimage.morphology.skeletonize``; when
      the skeleton is empty although the label is not, the label's medial voxels (maxima of the distance to
      the background) are used instead. It is used to sample positives along the whole pancreas
      (head, body and tail).
    - ``ring``: voxels outside the label within ``ring_width_mm`` of it (peripancreatic tissue, negatives).
    - ``band``: voxels within ``band_width_mm`` of the label boundary, on either side of it (part of the
      high-uncertainty region). Distances are measured between voxel centres, and the voxel layers that
      touch the boundary are always part of the band, so the band is not empty when ``band_width_mm`` is
      smaller than the voxel spacing.

    Widths are in mm: the voxel spacing is read from the label's affine (``MetaTensor.pixdim``), so they are
    correct for anisotropic spacing. A label that is not a ``MetaTensor`` is assumed to have unit spacing.

    Args:
        keys: key of the label, a channel-first ``(1, *spatial)`` array with values 0/1 (> 0 is pancreas).
            Exactly one key.
        ring_width_mm: width of the peripancreatic ring outside the label, in mm.
        band_width_mm: half width of the boundary band, in mm (the band extends this far on each side).
        skeleton_key: output key of the skeleton map.
        ring_key: output key of the ring map.
        band_key: output key of the band map.
        allow_missing_keys: don't raise an exception if the label key is missing.

    Each output is a float32 array of 0/1 with the label's shape ``(1, *spatial)``, type and metadata
    (a ``MetaTensor`` for a ``MetaTensor`` label). An empty label gives all-zero maps.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        ring_width_mm: float = 10.0,
        band_width_mm: float = 4.0,
        skeleton_key: Hashable = "skeleton",
        ring_key: Hashable = "ring",
        band_key: Hashable = "band",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"exactly one label key is expected, got {self.keys}.")
        if ring_width_mm <= 0 or band_width_mm <= 0:
            raise ValueError(f"widths must be positive, got ring {ring_width_mm} mm and band {band_width_mm} mm.")
        self.ring_width_mm = float(ring_width_mm)
        self.band_width_mm = float(band_width_mm)
        self.skeleton_key = skeleton_key
        self.ring_key = ring_key
        self.band_key = band_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if label.shape[0] != 1:
                raise ValueError(f"the label must have one channel, got shape {tuple(label.shape)}.")
            spatial_dims = len(label.shape) - 1
            if isinstance(label, MetaTensor):
                spacing = convert_to_numpy(affine_to_spacing(label.affine, r=spatial_dims), dtype=np.float64)
            else:
                spacing = np.ones(spatial_dims)
            mask = convert_to_numpy(label)[0] > 0
            skeleton, ring, band = self.structure_maps(mask, spacing)
            for out_key, out_map in ((self.skeleton_key, skeleton), (self.ring_key, ring), (self.band_key, band)):
                d[out_key] = convert_to_dst_type(out_map[None].astype(np.float32), dst=label, dtype=np.float32)[0]
        return d

    def structure_maps(self, mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Args:
            mask: boolean pancreas mask, shape ``(*spatial)``.
            spacing: voxel spacing in mm, shape ``(len(spatial),)``.

        Returns:
            boolean ``(skeleton, ring, band)`` maps, each of shape ``(*spatial)``.
        """
        if not mask.any():
            empty = np.zeros_like(mask)
            return empty, empty, empty
        dist_outside = _distance_to(mask, spacing)  # mm from each voxel to the nearest label voxel
        dist_inside = _distance_to(~mask, spacing)  # mm from each voxel to the nearest background voxel

        skeleton = skeletonize(mask).astype(bool)
        if not skeleton.any():
            inside = np.where(mask, dist_inside, -np.inf)
            skeleton = inside == inside.max()

        ring = ~mask & (dist_outside <= self.ring_width_mm)

        inner_layer = mask & ~ndimage.binary_erosion(mask, border_value=1)
        outer_layer = ndimage.binary_dilation(mask) & ~mask
        band = np.where(mask, dist_inside, dist_outside) <= self.band_width_mm
        band |= inner_layer | outer_layer
        return skeleton, ring, band


def _distance_to(targets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance in mm from every voxel to the nearest ``True`` voxel of ``targets`` (inf if none)."""
    if not targets.any():
        return np.full(targets.shape, np.inf)
    return ndimage.distance_transform_edt(~targets, sampling=spacing)
