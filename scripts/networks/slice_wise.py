"""A 2D segmentation network applied slice by slice to 3D volumes: the 3D inference path of a 2D model."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SliceWiseNetwork"]


class SliceWiseNetwork(nn.Module):
    """
    ``forward`` cuts a (B, C, X, Y, Z) volume (or sliding window) into its Z axial slices (the last spatial axis,
    axial after ``Orientationd(axcodes="RAS")``), runs ``network`` on them ``slice_batch_size`` at a time and
    stacks the (B * Z, K, X, Y) outputs back into (B, K, X, Y, Z): every 3D inference path (sliding window,
    resampling to the input, summary, overlay, DICOM SEG) then works unchanged with a 2D model. Its state dict is
    the 2D network's (``network.*``); the 2D network itself is ``self.network``.

    Args:
        network: a 2D segmentation network, (N, C, X, Y) -> (N, K, X, Y).
        slice_batch_size: slices per call of ``network`` (memory bound), >= 1.

    Raises:
        ValueError: slice_batch_size < 1; in ``forward``, an input that is not 5D (B, C, X, Y, Z).
    """

    def __init__(self, network: nn.Module, slice_batch_size: int = 32) -> None:
        super().__init__()
        if slice_batch_size < 1:
            raise ValueError(f"slice_batch_size must be >= 1, got {slice_batch_size}.")
        self.network = network
        self.slice_batch_size = int(slice_batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"SliceWiseNetwork takes (B, C, X, Y, Z) volumes, got shape {tuple(x.shape)}.")
        batch, channels, size_x, size_y, size_z = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(batch * size_z, channels, size_x, size_y)
        outputs = torch.cat([self.network(chunk) for chunk in torch.split(slices, self.slice_batch_size)])
        return outputs.reshape(batch, size_z, -1, size_x, size_y).permute(0, 2, 3, 4, 1)
