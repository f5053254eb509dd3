"""
The inference transforms that MONAI Deploy's ``MonaiBundleInferenceOperator`` runs (``configs/deploy.yaml``).

The operator hands the pre-processing a ``MetaTensor`` it made from the DICOM series (``DICOMSeriesToVolumeOperator``)
and hands the post-processing's result to the app's writer operators; the bundle's own loader and writers must
not run inside it. The operator removes transforms whose class name contains ``LoadImage`` or ``SaveImage``;
``scripts.data.readers.LoadInputImaged``, ``scripts.transforms.SaveCaseImaged`` and
``scripts.data.dicom_seg.SaveDicomSegd`` do not match those names, so ``in_memory`` removes them by type instead.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.transforms import Compose, EnsureTyped, LoadImaged, SaveImaged

from scripts.data.dicom_seg import SaveDicomSegd

__all__ = ["FILE_TRANSFORMS", "in_memory"]

FILE_TRANSFORMS = (LoadImaged, SaveImaged, SaveDicomSegd)
"""Transform types that read or write files (subclasses included: ``LoadInputImaged``, ``SaveCaseImaged``)."""


def in_memory(compose: Compose, input_dtype: Any = torch.float32) -> Compose:
    """
    ``compose``'s transforms without those that read or write files (``FILE_TRANSFORMS``).

    A loader is replaced by ``EnsureTyped`` of its keys to ``input_dtype`` (a ``MetaTensor`` kept as one): the image
    the operator gives (int16 or float64 HU from the DICOM rescale) gets the dtype the loader would have given it,
    so the rest of the pre-processing computes what ``configs/inference.yaml`` computes. The transforms are the same
    objects as ``compose``'s, in the same order; ``compose`` is not changed.

    Args:
        compose: the ``preprocessing`` or ``postprocessing`` of ``configs/inference.yaml``.
        input_dtype: the dtype of the loaded image (``LoadImaged``'s default, float32).

    Raises:
        TypeError: when ``compose`` is not a ``monai.transforms.Compose``.
        ValueError: when nothing is left.
    """
    if not isinstance(compose, Compose):
        raise TypeError(f"in_memory needs a monai.transforms.Compose, got {type(compose).__name__}")
    kept = []
    for transform in compose.transforms:
        if isinstance(transform, LoadImaged):
            kept.append(EnsureTyped(keys=transform.keys, dtype=input_dtype, track_meta=True))
        elif not isinstance(transform, FILE_TRANSFORMS):
            kept.append(transform)
    if not kept:
        raise ValueError(f"no transform of {[type(t).__name__ for t in compose.transforms]} works in memory")
    return Compose(kept, map_items=compose.map_items, unpack_items=compose.unpack_items, lazy=compose.lazy)
