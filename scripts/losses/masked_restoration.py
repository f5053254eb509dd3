"""Restoration loss restricted to the corrupted voxels."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["MaskedL1Loss"]


class MaskedL1Loss(_Loss):
    """
    Mean absolute error over the voxels of a mask, e.g. the voxels corrupted for the restoration task.

    The mask is broadcast over the channels, so the loss is the mean of ``|restored - target|`` over all
    (masked voxel, channel) elements. An empty mask gives a zero that stays connected to ``restored``'s graph.
    """

    def forward(self, restored: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            restored: restored intensities, shape ``(B, C, *spatial)``.
            target: original intensities, shape ``(B, C, *spatial)``.
            mask: voxels to compare, shape ``(B, 1, *spatial)``, bool (or > 0 inside).

        Returns:
            the scalar loss.
        """
        if restored.shape != target.shape:
            raise ValueError(f"restored shape {tuple(restored.shape)} must match target shape {tuple(target.shape)}.")
        if mask.shape[1] != 1 or mask.shape[0] != restored.shape[0] or mask.shape[2:] != restored.shape[2:]:
            expected = (restored.shape[0], 1, *restored.shape[2:])
            raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}.")
        mask = (mask > 0).expand_as(restored)
        absolute_error = torch.where(mask, (restored - target).abs(), 0.0)
        return absolute_error.sum() / mask.sum().clamp_min(1)
