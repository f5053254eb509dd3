"""BYOL's regression loss between a prediction and a target embedding: 2 - 2 cos, along the channels."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["CosineConsistencyLoss", "normalised_feature_std"]


class CosineConsistencyLoss(_Loss):
    """
    ``2 - 2 * cos(prediction, target)`` along dim 1 (the squared distance of the L2-normalised vectors), averaged
    over every other dimension: over voxels for aligned local feature maps, over items for pooled embeddings.
    The target is used as given: detach it (an EMA target network's output is computed without a graph).
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            prediction: (N, C, *S) online predictions.
            target: (N, C, *S) target embeddings.

        Returns:
            the scalar loss, 0 where the two agree in direction, 4 where they are opposite.

        Raises:
            ValueError: when the shapes differ or there is no channel dimension.
        """
        if prediction.shape != target.shape or prediction.ndim < 2:
            raise ValueError(
                f"prediction and target must be (N, C, ...) of one shape, got {tuple(prediction.shape)}, "
                f"{tuple(target.shape)}."
            )
        cosine = F.cosine_similarity(prediction.float(), target.float(), dim=1, eps=1e-8)
        return (2 - 2 * cosine).mean()


def normalised_feature_std(features: torch.Tensor) -> float:
    """
    BYOL's collapse monitor: the standard deviation, over items and voxels, of each channel of the L2-normalised
    (N, C, *S) features, averaged over channels. Features that carry information give about ``1 / sqrt(C)``; a
    collapsed encoder (the same vector everywhere) gives 0.
    """
    normalised = F.normalize(features.detach().float(), dim=1)
    flat = normalised.movedim(1, -1).reshape(-1, features.shape[1])
    return float(flat.std(dim=0, unbiased=False).mean()) if flat.shape[0] > 1 else 0.0
