"""``SamBoxRefined``: refine a coarse mask slice by slice with a Segment Anything model prompted by each slice's box."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SamBoxRefined", "slice_boxes"]

logger = logging.getLogger(__name__)

BoxPredictor = Callable[[np.ndarray, Mapping[int, Sequence[float]]], Mapping[int, np.ndarray]]


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def slice_boxes(mask: np.ndarray, min_pixels: int = 1, margin: int = 0) -> dict[int, np.ndarray]:
    """
    The bounding box of every axial slice of an (X, Y, Z) mask that has at least ``min_pixels`` pixels, in SAM's
    ``(x0, y0, x1, y1)`` = ``(y_min, x_min, y_max, x_max)`` (slice ``z`` is the image ``mask[:, :, z]`` of X rows
    and Y columns; inclusive pixel indices), widened by ``margin`` pixels and clipped to the slice.

    Raises:
        ValueError: a mask that is not 3D, min_pixels < 1 or margin < 0.
    """
    if mask.ndim != 3:
        raise ValueError(f"the mask must be (X, Y, Z), got shape {mask.shape}.")
    if min_pixels < 1 or margin < 0:
        raise ValueError(f"min_pixels must be >= 1 and margin >= 0, got {min_pixels} and {margin}.")
    size_x, size_y, _ = mask.shape
    boxes = {}
    for z in np.flatnonzero(mask.reshape(-1, mask.shape[-1]).sum(axis=0) >= min_pixels):
        rows, columns = np.nonzero(mask[:, :, z])
        boxes[int(z)] = np.array(
            [
                max(columns.min() - margin, 0),
                max(rows.min() - margin, 0),
                min(columns.max() + margin, size_y - 1),
                min(rows.max() + margin, size_x - 1),
            ],
            dtype=np.float32,
        )
    return boxes


class SamBoxRefined(MapTransform):
    """
    Replace each axial slice of a coarse segmentation by a Segment Anything model's mask of that slice, prompted with
    the bounding box of the coarse mask in the slice (``slice_boxes``); slices without a coarse mask stay empty.

    The inputs are on one grid, channel-first (1, X, Y, Z), axial slices along the last axis (after
    ``Orientationd(axcodes="RAS")``): ``keys``, the coarse probability or mask (a voxel is in the coarse mask when
    above ``threshold``), and ``image_key``, the image scaled to [0, 1] (the window of the preprocessing), which the
    model sees as a grey picture. The refined slices are written as 0 / 1 values of the key's dtype (a probability
    map becomes the refined mask in the refined slices). With ``predictor=None`` the transform passes the data on
    unchanged and says once, at construction, that refinement is off and why (``off_reason``).

    Args:
        keys: the coarse maps.
        image_key: the image.
        predictor: ``predictor(slices (N, X, Y) in [0, 1], {z: box}) -> {z: (X, Y) bool}``, e.g.
            ``scripts.networks.Sam2BoxPredictor``; ``None``: refinement is off.
        threshold: the coarse mask is ``key > threshold``.
        min_pixels: slices with fewer coarse pixels are not prompted and stay as they are.
        margin: pixels added around each box.
        off_reason: the reason logged when ``predictor`` is ``None``.

    Raises:
        ValueError: min_pixels < 1 or margin < 0; in a call, a key or image that is not (1, X, Y, Z) of one shape,
            or a predictor mask of another shape than its slice.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        predictor: BoxPredictor | None = None,
        threshold: float = 0.5,
        min_pixels: int = 1,
        margin: int = 0,
        off_reason: str = "no predictor was given",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if min_pixels < 1 or margin < 0:
            raise ValueError(f"min_pixels must be >= 1 and margin >= 0, got {min_pixels} and {margin}.")
        self.image_key = image_key
        self.predictor = predictor
        self.threshold = float(threshold)
        self.min_pixels = int(min_pixels)
        self.margin = int(margin)
        if predictor is None:
            logger.warning(f"SAM refinement is off: {off_reason}")

    def refine(self, coarse: torch.Tensor | np.ndarray, image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """The refined (1, X, Y, Z) map of one coarse (1, X, Y, Z) map and its image (see the class)."""
        if coarse.ndim != 4 or coarse.shape[0] != 1 or tuple(image.shape) != tuple(coarse.shape):
            raise ValueError(
                f"the map and the image must be (1, X, Y, Z) of one shape, got {tuple(coarse.shape)} and "
                f"{tuple(image.shape)}."
            )
        mask = _numpy(coarse)[0] > self.threshold
        boxes = slice_boxes(mask, self.min_pixels, self.margin)
        if not boxes:
            return coarse
        slices = np.moveaxis(_numpy(image)[0].astype(np.float32), -1, 0)
        refined = self.predictor(slices, boxes)
        out = coarse.clone() if isinstance(coarse, torch.Tensor) else np.array(coarse, copy=True)
        for z, slice_mask in refined.items():
            if tuple(slice_mask.shape) != mask.shape[:2]:
                raise ValueError(f"slice {z}: the predictor's mask is {tuple(slice_mask.shape)}, the slice {mask.shape[:2]}.")
            values = np.asarray(slice_mask, dtype=bool)
            out[0, :, :, z] = torch.as_tensor(values, device=out.device) if isinstance(out, torch.Tensor) else values
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.predictor is None:
            return d
        for key in self.key_iterator(d):
            d[key] = self.refine(d[key], d[self.image_key])
        return d
