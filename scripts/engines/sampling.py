"""Sampling of the voxels the structure-guided contrastive loss compares: pancreas skeleton against the ring around it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["VoxelSamples", "gather_voxels", "sample_structure_voxels"]


class VoxelSamples(NamedTuple):
    """
    Voxels sampled for the contrastive loss; ``N = num_positive + num_negative`` slots per batch item.

    Attributes:
        indices: flat spatial indices into ``(*spatial)``, shape ``(B, N)``, long.
        is_positive: whether the slot is a positive (pancreas) slot, shape ``(B, N)``, bool.
        valid: whether the slot holds a real voxel of its set, shape ``(B, N)``, bool.
    """

    indices: torch.Tensor
    is_positive: torch.Tensor
    valid: torch.Tensor


def _sample_uniform(
    mask: torch.Tensor, num_samples: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Draw up to ``num_samples`` distinct voxels uniformly from each row of ``mask`` ``(B, V)``.

    Returns:
        indices ``(B, num_samples)`` and their validity ``(B, num_samples)``; the valid slots come first.
    """
    scores = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(~mask, -1.0)
    values, indices = scores.topk(min(num_samples, mask.shape[1]), dim=1)
    missing = num_samples - indices.shape[1]
    if missing > 0:
        indices = torch.cat([indices, indices.new_zeros(mask.shape[0], missing)], dim=1)
        values = torch.cat([values, values.new_full((mask.shape[0], missing), -1.0)], dim=1)
    return indices, values >= 0


def sample_structure_voxels(
    skeleton: torch.Tensor,
    ring: torch.Tensor,
    label: torch.Tensor,
    prediction: torch.Tensor,
    num_positive: int = 64,
    num_negative: int = 128,
    hard_negative_ratio: float = 0.25,
    generator: torch.Generator | None = None,
) -> VoxelSamples:
    """
    Sample positive (pancreas) and negative (peripancreatic and wrongly predicted) voxels per batch item.

    - positives: uniformly random skeleton voxels, so that head, body and tail are represented; an item
      whose skeleton is empty but whose label is not (e.g. a crop that cuts the pancreas off its
      centreline) samples its label voxels instead;
    - negatives: up to ``round(hard_negative_ratio * num_negative)`` hard negatives (predicted pancreas,
      label background), the rest from the ring (minus the hard negatives); when one set runs short, the
      other fills the remaining slots as far as it has voxels.

    Voxels are drawn without replacement by masked random scores and ``topk``, vectorised over the batch.
    Slots that no voxel could fill are marked invalid (their index is arbitrary).

    Args:
        skeleton: pancreas skeleton, shape ``(B, 1, *spatial)``, > 0 on the skeleton.
        ring: peripancreatic ring, shape ``(B, 1, *spatial)``, > 0 in the ring.
        label: ground truth, shape ``(B, 1, *spatial)``, > 0 for pancreas.
        prediction: predicted label map, shape ``(B, 1, *spatial)``, > 0 for pancreas.
        num_positive: number of positive slots per item.
        num_negative: number of negative slots per item.
        hard_negative_ratio: fraction (0 to 1) of the negative slots reserved for hard negatives.
        generator: random generator on the masks' device (``None``: torch's default generator).

    Returns:
        :class:`VoxelSamples` with ``N = num_positive + num_negative`` slots per item, positives first.
    """
    if not 0.0 <= hard_negative_ratio <= 1.0:
        raise ValueError(f"hard_negative_ratio must be in [0, 1], got {hard_negative_ratio}.")
    skeleton, ring, label, prediction = (x.flatten(1) > 0 for x in (skeleton, ring, label, prediction))
    batch = label.shape[0]
    device = label.device

    has_skeleton = skeleton.any(dim=1, keepdim=True)
    positive_indices, positive_valid = _sample_uniform(
        torch.where(has_skeleton, skeleton, label), num_positive, generator
    )

    hard = prediction & ~label
    ring = ring & ~hard
    hard_indices, hard_valid = _sample_uniform(hard, num_negative, generator)
    ring_indices, ring_valid = _sample_uniform(ring, num_negative, generator)
    num_hard_available = hard.sum(dim=1, keepdim=True)
    num_ring_available = ring.sum(dim=1, keepdim=True)
    num_hard = num_hard_available.clamp_max(round(hard_negative_ratio * num_negative))
    num_ring = num_ring_available.clamp_max(num_negative - num_hard)
    num_hard = num_hard_available.clamp_max(num_negative - num_ring)  # hard negatives fill a short ring
    slot = torch.arange(num_negative, device=device).expand(batch, -1)
    from_hard = slot < num_hard
    ring_slot = (slot - num_hard).clamp(0, num_negative - 1)
    negative_indices = torch.where(from_hard, hard_indices, ring_indices.gather(1, ring_slot))
    negative_valid = torch.where(from_hard, hard_valid, ring_valid.gather(1, ring_slot))

    is_positive = torch.zeros(batch, num_positive + num_negative, dtype=torch.bool, device=device)
    is_positive[:, :num_positive] = True
    return VoxelSamples(
        indices=torch.cat([positive_indices, negative_indices], dim=1),
        is_positive=is_positive,
        valid=torch.cat([positive_valid, negative_valid], dim=1),
    )


def gather_voxels(
    features: torch.Tensor, indices: torch.Tensor, spatial_shape: Sequence[int] | None = None
) -> torch.Tensor:
    """
    Pick voxel feature vectors (differentiable with respect to ``features``).

    Args:
        features: shape ``(B, C, *spatial_f)``.
        indices: flat spatial indices into ``spatial_shape``, shape ``(B, N)``, long.
        spatial_shape: the grid the indices refer to (default: ``spatial_f``). When it is finer than the
            features' (a coarser decoder stage), each voxel takes the feature vector of the coarse voxel
            that covers it: coordinate ``i`` maps to ``i * spatial_f // spatial_shape`` along every axis.

    Returns:
        shape ``(B, N, C)``.

    Raises:
        ValueError: when ``spatial_shape`` does not have the features' number of spatial dimensions.
    """
    coarse = tuple(features.shape[2:])
    if spatial_shape is not None and tuple(spatial_shape) != coarse:
        if len(spatial_shape) != len(coarse):
            raise ValueError(f"spatial_shape {tuple(spatial_shape)} does not match features {tuple(features.shape)}.")
        coordinates = torch.unravel_index(indices, tuple(spatial_shape))
        indices = torch.zeros_like(indices)
        for coordinate, fine, size in zip(coordinates, spatial_shape, coarse):
            indices = indices * size + coordinate * size // fine
    flat = features.flatten(2)  # (B, C, V)
    return flat.gather(2, indices[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)
