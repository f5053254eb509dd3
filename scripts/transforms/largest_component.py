"""``KeepLargestComponentd``: the largest 26-connected component of a binary mask, in uint8 memory."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["KeepLargestComponentd", "largest_component"]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """
    The largest connected component of ``mask > 0`` (26-connectivity in 3D, full connectivity in any dimension), as
    bool; an empty mask stays empty. Ties go to the component met first in C order.

    The same result as MONAI's ``KeepLargestConnectedComponent`` (``connectivity=None``) for one foreground label,
    with int32 component labels instead of int64 and no float copy: a 512 x 512 x 600 mask peaks near 1 GB instead
    of 2 GB.
    """
    foreground = mask > 0
    box = _bounding_box(foreground)
    if box is None:
        return foreground
    if any(b.stop - b.start < n for b, n in zip(box, foreground.shape)):
        # labelled inside the foreground's bounding box only (the same components, met in the same C order)
        kept = np.zeros_like(foreground)
        kept[box] = largest_component(foreground[box])
        return kept
    labels, count = ndimage.label(foreground, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim),
                                  output=np.int32)
    if count <= 1:
        return foreground
    # counted in chunks: np.bincount converts its input to int64, which for the whole volume is 8 bytes a voxel
    sizes = np.zeros(count + 1, dtype=np.int64)
    flat = labels.reshape(-1)
    for start in range(0, flat.size, 2**24):
        sizes += np.bincount(flat[start : start + 2**24], minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _bounding_box(foreground: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel, as slices; None when there is none."""
    box = []
    for axis in range(foreground.ndim):
        present = np.flatnonzero(foreground.any(axis=tuple(a for a in range(foreground.ndim) if a != axis)))
        if present.size == 0:
            return None
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


class KeepLargestComponentd(MapTransform):
    """
    Keep the largest connected foreground component of each channel of ``data[key]`` (``largest_component``).

    Args:
        keys: binary masks, channel-first ``(C, *spatial)``; their dtype is kept (uint8 masks stay uint8).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            plain = mask.as_tensor() if isinstance(mask, MetaTensor) else torch.as_tensor(mask)
            kept = np.stack([largest_component(channel) for channel in plain.detach().cpu().numpy()])
            values = torch.from_numpy(kept).to(dtype=plain.dtype, device=plain.device)
            d[key] = MetaTensor(values, meta=mask.meta, affine=mask.affine) if isinstance(mask, MetaTensor) else values
        return d
