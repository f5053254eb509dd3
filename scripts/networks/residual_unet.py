"""A 3D residual U-Net that also exposes its full-resolution decoder features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["ResidualUNet"]


class _UpBlock(nn.Module):
    """Stride-2 transposed convolution (kernel 3), concatenation with the skip, one residual unit."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_res_units: int,
        act: str | tuple,
        norm: str | tuple,
        dropout: float,
    ) -> None:
        super().__init__()
        self.upsample = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            strides=2,
            kernel_size=3,
            act=act,
            norm=norm,
            dropout=dropout,
            is_transposed=True,
        )
        self.fuse = ResidualUnit(
            spatial_dims,
            2 * out_channels,
            out_channels,
            subunits=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.upsample(x), skip], dim=1))


class ResidualUNet(nn.Module):
    """
    U-Net whose encoder and decoder stages are MONAI ``ResidualUnit`` blocks.

    The encoder has ``len(channels)`` stages; every stage after the first halves each spatial size
    (stride-2 residual unit), so input sizes must be divisible by ``2 ** (len(channels) - 1)``
    (``SlidingWindowInferer`` pads windows to the ROI size, so only the ROI must satisfy this).

    Args:
        spatial_dims: number of spatial dimensions (3 for CT volumes).
        in_channels: channels of the input image.
        out_channels: number of classes of the output logits (2: background, pancreas).
        channels: feature channels of the encoder stages, shallowest first.
        num_res_units: convolutions inside each residual unit.
        act: activation type, as accepted by ``monai.networks.layers.Act``.
        norm: normalisation type, as accepted by ``monai.networks.layers.Norm``.
        dropout: dropout probability inside the convolution blocks.

    Shapes:
        ``forward``: (B, in_channels, *S) -> logits (B, out_channels, *S).
        ``forward_features``: (B, in_channels, *S) -> (logits (B, out_channels, *S),
        decoder features (B, channels[0], *S)).
        ``feature_stage(k)``: the module whose output is the feature map of stage ``k``, (B, channels[k], *S / 2**k):
        the decoder block at that resolution, or the bottleneck (the last encoder stage) for
        ``k = len(channels) - 1``. Stage 0 is the input of ``segmentation_head``.
        ``encoder_stage(k)``: the encoder block whose output is (B, channels[k], *S / 2**k).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_res_units: int = 2,
        act: str | tuple = ("prelu", {"init": 0.2}),
        norm: str | tuple = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two stages, got {channels}.")
        self.feature_channels = int(channels[0])
        self.channels = tuple(int(c) for c in channels)
        self.encoder = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(channels):
            self.encoder.append(
                ResidualUnit(
                    spatial_dims,
                    previous,
                    width,
                    strides=1 if level == 0 else 2,
                    subunits=num_res_units,
                    act=act,
                    norm=norm,
                    dropout=dropout,
                )
            )
            previous = width
        self.decoder = nn.ModuleList(
            _UpBlock(spatial_dims, deep, shallow, num_res_units, act, norm, dropout)
            for deep, shallow in zip(channels[:0:-1], channels[-2::-1])
        )
        self.segmentation_head = Convolution(
            spatial_dims, self.feature_channels, out_channels, kernel_size=1, conv_only=True
        )

    def feature_stage(self, stage: int) -> nn.Module:
        """
        The module whose output is the feature map of ``stage`` (see Shapes).

        Raises:
            ValueError: when ``stage`` is not in ``[0, len(channels) - 1]``.
        """
        if not 0 <= stage <= len(self.decoder):
            raise ValueError(f"stage must be in [0, {len(self.decoder)}], got {stage}.")
        return self.encoder[-1] if stage == len(self.decoder) else self.decoder[len(self.decoder) - 1 - stage]

    def encoder_stage(self, stage: int) -> nn.Module:
        """
        The encoder block of ``stage`` (output (B, channels[stage], *S / 2**stage)).

        Raises:
            ValueError: when ``stage`` is not in ``[0, len(channels) - 1]``.
        """
        if not 0 <= stage < len(self.encoder):
            raise ValueError(f"encoder stage must be in [0, {len(self.encoder) - 1}], got {stage}.")
        return self.encoder[stage]

    def stage_channels(self, stage: int) -> int:
        """Channels of the feature map of ``stage``; raises ``ValueError`` as ``feature_stage``."""
        self.feature_stage(stage)
        return int(self.channels[stage])

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.segmentation_head(x), x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
