"""Training-only heads of the dual self-supervised framework: voxel projection and intensity restoration."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn import functional as F

__all__ = ["DualSSLHeads"]


class DualSSLHeads(nn.Module):
    """
    The two heads that turn decoder features into self-supervised outputs.

    They are a separate module from the segmentation network, so the weights in ``models/model.pt``
    are the plain ``network_def`` state dict and inference never runs these heads.

    Args:
        feature_channels: channels of the decoder features (``ResidualUNet.feature_channels``).
        embedding_dim: dimension of the L2-normalised voxel embeddings of the contrastive task.
        hidden_channels: width of the hidden layer of the projection MLP and of the restoration block.
        image_channels: channels of the image to restore.
        spatial_dims: number of spatial dimensions.
        restoration_channels: channels of the feature map the restoration head reads (default:
            ``feature_channels``), e.g. a half-resolution decoder stage, so that restoration does not shape the
            features the segmentation head reads.
        restoration_scale: how much coarser that feature map is than the image (a power of two); the restored
            image is upsampled trilinearly by this factor.

    Raises:
        ValueError: a non-positive channel count or ``restoration_scale`` < 1.

    Shapes:
        ``embed``: sampled voxel features (B, N, feature_channels) -> unit-norm embeddings (B, N, embedding_dim).
        ``restore``: features (B, restoration_channels, *S / restoration_scale) -> restored image
        (B, image_channels, *S).
        ``forward(voxel_features, features)``: ``(embed(voxel_features), restore(features))``, either input ``None``
        for a head that is not needed (its output is then ``None``). Training calls the heads through ``forward``,
        so that a ``DistributedDataParallel`` wrapper runs its own forward and synchronises their gradients.
    """

    def __init__(
        self,
        feature_channels: int,
        embedding_dim: int = 64,
        hidden_channels: int = 64,
        image_channels: int = 1,
        spatial_dims: int = 3,
        restoration_channels: int | None = None,
        restoration_scale: int = 1,
    ) -> None:
        super().__init__()
        restoration_channels = feature_channels if restoration_channels is None else restoration_channels
        if min(feature_channels, embedding_dim, hidden_channels, image_channels, restoration_channels) < 1:
            raise ValueError("feature, embedding, hidden, image and restoration channels must be positive.")
        if restoration_scale < 1:
            raise ValueError(f"restoration_scale must be >= 1, got {restoration_scale}.")
        self.restoration_scale = int(restoration_scale)
        self.projection = nn.Sequential(
            nn.Linear(feature_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, embedding_dim),
        )
        self.restoration = nn.Sequential(
            Convolution(spatial_dims, restoration_channels, restoration_channels, kernel_size=3, act="relu", norm=None),
            Convolution(spatial_dims, restoration_channels, image_channels, kernel_size=1, conv_only=True),
        )

    def embed(self, voxel_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(voxel_features), dim=-1)

    def restore(self, features: torch.Tensor) -> torch.Tensor:
        restored = self.restoration(features)
        if self.restoration_scale == 1:
            return restored
        mode = "trilinear" if restored.ndim == 5 else "bilinear"
        return F.interpolate(restored, scale_factor=self.restoration_scale, mode=mode, align_corners=False)

    def forward(
        self, voxel_features: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        embeddings = None if voxel_features is None else self.embed(voxel_features)
        restored = None if features is None else self.restore(features)
        return embeddings, restored
