"""``KeepInputCopyd``: the image as it was read, kept beside the preprocessed one (for the inference overlay)."""

from __future__ import annotations

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor

from scripts.transforms.derived_item import DerivedItemd

__all__ = ["KeepInputCopyd", "compact_copy"]


def compact_copy(image: torch.Tensor) -> torch.Tensor:
    """
    A plain-tensor copy of ``image`` in int16 when that is exact (CT in Hounsfield units: integers in
    [-32768, 32767]), else float32: half the memory of the float32 volume the readers give, for the usual CT.
    """
    plain = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    if not plain.is_floating_point():
        return plain.to(torch.int16) if plain.dtype in (torch.uint8, torch.int8, torch.int16) else plain.clone()
    low, high = float(plain.min()), float(plain.max())
    if -32768 <= low and high <= 32767 and _integral(plain):
        return plain.to(torch.int16)
    return plain.to(torch.float32, copy=True)


def _integral(values: torch.Tensor, chunk: int = 2**24) -> bool:
    """Whether every value is an integer, checked in chunks (no temporary of the volume's size)."""
    flat = values.reshape(-1)
    return all(torch.equal(part, torch.round(part)) for part in flat.split(chunk))


class KeepInputCopyd(DerivedItemd):
    """
    ``data[output_key] = compact_copy(data[key])``: put right after the reader (and ``EnsureChannelFirstd``) so
    that the copy is on the input grid, in the reader's axis order, as a later consumer (the overlay of
    ``scripts.inference.batch.BatchInference``) needs it; it is not read from disk again.

    Args:
        keys: one image key.
        output_key: where the copy goes.

    Raises:
        ValueError: more than one key.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "input_image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, output_key, allow_missing_keys)

    def derive(self, value: torch.Tensor) -> torch.Tensor:
        return compact_copy(value)
