"""Two segmentation networks whose softmax probabilities are averaged: the inference network of semi-supervised
training with two subnetworks (configs/semi_supervised.yaml)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SoftmaxAveragedPair"]


class SoftmaxAveragedPair(nn.Module):
    """
    ``forward(x)`` returns ``log((softmax(first(x)) + softmax(second(x))) / 2)``: log-probabilities whose softmax
    (what inference applies) is the average of the two networks' softmax, and whose argmax is the averaged
    prediction's. Training reads the two logit maps with ``forward_pair``. Its state dict holds ``first.*`` and
    ``second.*``, so one ``models/model.pt`` file carries both subnetworks.

    Args:
        first: a segmentation network, (B, C_in, *S) -> logits (B, K, *S).
        second: another one with the same number of classes K.

    Shapes:
        ``forward``: (B, C_in, *S) -> (B, K, *S) log-probabilities. ``forward_pair``: -> two (B, K, *S) logit maps.

    Raises:
        ValueError (in ``forward``): when the two networks give outputs of different shapes.
    """

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(x), self.second(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits_first, logits_second = self.first(x), self.second(x)
        if logits_first.shape != logits_second.shape:
            raise ValueError(
                "the two networks' outputs differ in shape: " + str(logits_first.shape) + " and " + str(logits_second.shape)
            )
        probabilities = (torch.softmax(logits_first.float(), dim=1) + torch.softmax(logits_second.float(), dim=1)) / 2
        return torch.log(probabilities.clamp_min(1e-12))
