"""Voxel-wise predictive entropy: the uncertainty map of training (restoration region) and of inference (``<case>_entropy``)."""

from __future__ import annotations

import math

import torch
from monai.config import KeysCollection

from scripts.transforms.derived_item import DerivedItemd

__all__ = ["PredictiveEntropyd", "predictive_entropy"]


def predictive_entropy(probabilities: torch.Tensor, dim: int = 1, normalize: bool = True) -> torch.Tensor:
    """
    Voxel-wise predictive entropy over the class dimension ``dim``.

    Args:
        probabilities: class probabilities, e.g. ``(B, C, *spatial)`` with ``dim=1``. One class channel
            (``C = 1``) is the foreground probability ``p`` of a binary problem, read as ``(1 - p, p)``.
        dim: the class dimension.
        normalize: divide by ``log C`` (``log 2`` for one channel), so that the result is in [0, 1];
            otherwise nats, in [0, log C].

    Returns:
        ``-sum_c p_c log p_c`` (``0 log 0 = 0``), the class dimension kept with size 1, e.g. ``(B, 1, *spatial)``:
        maximal for a uniform, 0 for a one-hot prediction. A ``MetaTensor`` input gives a ``MetaTensor`` with
        its metadata (affine included).

    Raises:
        ValueError: when ``probabilities`` has no dimension ``dim``.
    """
    if not -probabilities.ndim <= dim < probabilities.ndim:
        raise ValueError(f"dim {dim} is out of range for probabilities of shape {tuple(probabilities.shape)}.")
    if probabilities.shape[dim] == 1:
        probabilities = torch.cat([1.0 - probabilities, probabilities], dim=dim)
    num_classes = probabilities.shape[dim]
    entropy = -torch.xlogy(probabilities, probabilities).sum(dim=dim, keepdim=True)
    return (entropy / math.log(num_classes)).clamp(0.0, 1.0) if normalize else entropy


class PredictiveEntropyd(DerivedItemd):
    """
    Dictionary wrapper of ``predictive_entropy`` in nats over the channel dimension of one channel-first item:
    ``data[output_key] = predictive_entropy(data[key], dim=0, normalize=False)``, ``(C, *spatial) -> (1, *spatial)``.

    Place it after the softmax (and after ``ResampleToInputd`` to get the map in the input geometry), before the
    class probabilities are discretised. One key at a time, as the output goes to one ``output_key``.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "entropy", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, output_key, allow_missing_keys)

    def derive(self, value: torch.Tensor) -> torch.Tensor:
        return predictive_entropy(value, dim=0, normalize=False)
