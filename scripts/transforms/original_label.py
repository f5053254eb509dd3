"""``OriginalLabeld``: the reference of a metric is the label file itself, on its own grid, not a resampled copy."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from scripts.data.readers import load_input

__all__ = ["OriginalLabeld"]


class OriginalLabeld(MapTransform):
    """
    Replace ``data[key]`` (a label after preprocessing) by the file it was read from (its ``meta["filename_or_obj"]``),
    read again by the bundle's loader, binarised as training does (``> 0.5`` is pancreas: MSD's tumour label 2 too),
    as a uint8 ``MetaTensor`` ``(1, *label file shape)`` with the file's affine.

    Raises:
        ValueError: when ``data[key]`` carries no file name to read.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key].meta.get("filename_or_obj") if isinstance(d[key], MetaTensor) else None
            if not path:
                raise ValueError(f"{key!r} carries no filename_or_obj: the label file to score against is unknown")
            label = load_input(path)
            d[key] = MetaTensor((label.as_tensor() > 0.5).to(torch.uint8), affine=label.affine, meta=label.meta)
        return d
