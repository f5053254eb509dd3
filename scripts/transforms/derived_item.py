"""``DerivedItemd``: the base of the transforms that put one value computed from one item under another key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["DerivedItemd"]


class DerivedItemd(MapTransform):
    """
    ``data[output_key] = self.derive(data[key])`` for the one key; ``data[key]`` is left as it is.

    Args:
        keys: exactly one key.
        output_key: where the derived value goes.

    Raises:
        ValueError: at construction, when ``keys`` is not exactly one key.
    """

    def __init__(self, keys: KeysCollection, output_key: str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"{type(self).__name__} takes one key, got {self.keys}")
        self.output_key = output_key

    def derive(self, value: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement derive")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.derive(d[key])
        return d
