"""Read a segmentation network's decoder features during its ordinary forward pass (plain, DDP or DataParallel)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["FeatureCapture", "capture_features", "unwrap"]


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (``network`` itself otherwise)."""
    return network.module if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else network


class FeatureCapture:
    """The input of the network's ``segmentation_head`` in the last forward pass: ``features`` (B, C, *S)."""

    features: torch.Tensor | None = None


@contextmanager
def capture_features(network: nn.Module) -> Iterator[FeatureCapture]:
    """
    Record the decoder features of every forward pass of ``network`` inside the block.

    The features are the input of ``segmentation_head`` of the unwrapped network (``scripts.networks.ResidualUNet``
    has one), taken by a forward pre-hook: the network is called as usual, so a ``DistributedDataParallel`` wrapper
    runs its own forward (gradient synchronisation included) and TorchScript export is unaffected.

    Raises:
        AttributeError: when the unwrapped network has no ``segmentation_head`` module.
    """
    head = getattr(unwrap(network), "segmentation_head", None)
    if not isinstance(head, nn.Module):
        raise AttributeError(
            f"{type(unwrap(network)).__name__} has no segmentation_head module whose input are the decoder features"
        )
    capture = FeatureCapture()

    def hook(module: nn.Module, args: tuple) -> None:
        capture.features = args[0]

    handle = head.register_forward_pre_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
