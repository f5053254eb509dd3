"""The training-only projection head of PolyCL's contrastive pretraining: pooled encoder features -> embedding."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """
    Global average pooling of a feature map, then linear, ReLU, linear (SimCLR's projection head, as PolyCL's).
    Separate from the segmentation network: fine-tuning loads the network only.

    Args:
        in_channels: channels of the feature map.
        hidden_channels: width of the hidden layer.
        embedding_dim: size of the embedding.

    Shapes:
        (B, in_channels, *S) -> (B, embedding_dim).

    Raises:
        ValueError: a size < 1; in ``forward``, features with another channel count or no spatial axis.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 128, embedding_dim: int = 64) -> None:
        super().__init__()
        if min(in_channels, hidden_channels, embedding_dim) < 1:
            raise ValueError(
                f"sizes must be >= 1, got in {in_channels}, hidden {hidden_channels}, embedding {embedding_dim}."
            )
        self.in_channels = int(in_channels)
        self.layers = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.ReLU(inplace=True), nn.Linear(hidden_channels, embedding_dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim < 3 or features.shape[1] != self.in_channels:
            raise ValueError(f"features must be (B, {self.in_channels}, *S), got {tuple(features.shape)}.")
        return self.layers(features.mean(dim=tuple(range(2, features.ndim))))
