"""Post-processing transforms of the inference output that MONAI does not provide."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from scripts.transforms import predictive_entropy as class_entropy

__all__ = ["PredictiveEntropyd", "predictive_entropy"]


def predictive_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """
    Voxel-wise entropy, in nats, of class probabilities ``(C, *spatial)`` -> ``(1, *spatial)``.

    ``H = -sum_c p_c ln p_c`` (``0 ln 0 = 0``), between 0 (certain) and ``ln C`` (uniform). One channel
    (``C = 1``) is the foreground probability ``p`` of a binary problem: ``H = -p ln p - (1 - p) ln(1 - p)``,
    between 0 and ``ln 2``. A ``MetaTensor`` input gives a ``MetaTensor`` with its metadata (affine included).
    """
    if probabilities.shape[0] == 1:
        probabilities = torch.cat([probabilities, 1.0 - probabilities])
    return class_entropy(probabilities, dim=0, normalize=False)


class PredictiveEntropyd(MapTransform):
    """
    Dictionary wrapper of ``predictive_entropy``: ``data[output_key] = predictive_entropy(data[key])``.

    Place it after the softmax (and after ``Invertd`` to get the map in the input geometry), before the
    class probabilities are discretised. One key at a time, as the output goes to one ``output_key``.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "entropy", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"{type(self).__name__} takes one key, got {self.keys}")
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = predictive_entropy(d[key])
        return d
