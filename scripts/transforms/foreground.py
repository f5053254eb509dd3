"""``ForegroundProbabilityd``: the pancreas channel of a two-class softmax, the one map inference inverts."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["ForegroundProbabilityd"]


class ForegroundProbabilityd(MapTransform):
    """
    Keep channel 1 of a two-class probability map: ``(2, *spatial) -> (1, *spatial)``.

    Inverting one channel instead of ``num_classes`` halves the time and memory of ``Invertd`` at full
    resolution, and for two classes ``argmax == (p_pancreas > 0.5)``, so thresholding the kept channel at
    0.5 gives the argmax mask.

    Args:
        keys: the softmax outputs, channel-first.
        num_classes: the network's number of output classes; must be 2 (background, pancreas).

    Raises:
        ValueError: at construction when ``num_classes`` is not 2; when called, when the data has another
            number of channels than ``num_classes``.
    """

    def __init__(self, keys: KeysCollection, num_classes: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_classes != 2:
            raise ValueError(
                f"num_classes must be 2 (background, pancreas) for the foreground-probability output, got {num_classes}"
            )
        self.num_classes = num_classes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].shape[0] != self.num_classes:
                raise ValueError(f"{key!r} has {d[key].shape[0]} channels, expected {self.num_classes} class probabilities")
            d[key] = d[key][1:]
        return d
