"""Training-only projector and predictor heads of BYOL-style consistency pretraining (PGL and its global baseline)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConsistencyHeads"]


class _PointwiseMLP(nn.Module):
    """Linear, batch norm, ReLU, linear on the channel vector of every voxel (BYOL's projector/predictor shape):
    (N, C, *S) -> (N, out, *S), computed as one matrix product over all N * prod(S) vectors."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_channels, hidden_channels),
            nn.BatchNorm1d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vectors = x.movedim(1, -1)
        out = self.layers(vectors.reshape(-1, x.shape[1]))
        return out.reshape(*vectors.shape[:-1], -1).movedim(-1, 1)


class ConsistencyHeads(nn.Module):
    """
    One projector and one predictor per feature location (BYOL, arXiv 2006.07733): the online branch is
    ``predictor(projector(features))``, the target branch (an EMA copy of the network and of these heads) is
    ``projector(features)``. The heads are pointwise (the same MLP on every voxel's channel vector), so one module
    serves voxel-wise features (PGL's local consistency, sampled on the overlap of two views) and pooled
    (N, C, 1, 1, 1) embeddings (the global baseline).
    They are separate from the segmentation network: fine-tuning loads the network only.

    Args:
        feature_channels: channels of the features at each location, in order.
        hidden_channels: width of the hidden layer of every projector and predictor.
        embedding_dim: output channels of every projector and predictor.

    Raises:
        ValueError: no location, or a non-positive channel count.

    Shapes:
        ``forward(features)``: a list of (N, C_l, *S_l) (any number of spatial dimensions, N * prod(S_l) > 1 in
        training: batch norm) -> ``(projections, predictions)``, two lists of (N, embedding_dim, *S_l). ``project(features)``: the projections only (the target branch). Training calls
        ``forward``, so a ``DistributedDataParallel`` wrapper synchronises the gradients.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        hidden_channels: int = 64,
        embedding_dim: int = 32,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in feature_channels]
        if not channels or min(channels + [hidden_channels, embedding_dim]) < 1:
            raise ValueError(
                f"feature_channels (at least one location), hidden_channels and embedding_dim must be positive, "
                f"got {feature_channels}, {hidden_channels}, {embedding_dim}."
            )
        self.projectors = nn.ModuleList(_PointwiseMLP(c, hidden_channels, embedding_dim) for c in channels)
        self.predictors = nn.ModuleList(_PointwiseMLP(embedding_dim, hidden_channels, embedding_dim) for _ in channels)

    def _check(self, features: Sequence[torch.Tensor]) -> None:
        if len(features) != len(self.projectors):
            raise ValueError(f"expected features of {len(self.projectors)} locations, got {len(features)}.")

    def project(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._check(features)
        return [projector(f) for projector, f in zip(self.projectors, features)]

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        projections = self.project(features)
        return projections, [predictor(p) for predictor, p in zip(self.predictors, projections)]
