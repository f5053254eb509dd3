"""Read a segmentation network's feature maps during its ordinary forward pass (plain, DDP or DataParallel)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture_stages", "unwrap"]


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (``network`` itself otherwise)."""
    return network.module if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else network


def _stage_module(network: nn.Module, stage: int) -> nn.Module:
    inner = unwrap(network)
    if stage == 0:
        head = getattr(inner, "segmentation_head", None)
        if not isinstance(head, nn.Module):
            raise AttributeError(
                f"{type(inner).__name__} has no segmentation_head module whose input are the decoder features"
            )
        return head
    if not callable(getattr(inner, "feature_stage", None)):
        raise AttributeError(f"{type(inner).__name__} has no feature_stage(k) to read feature stage {stage} from")
    return inner.feature_stage(stage)


@contextmanager
def capture_stages(network: nn.Module, stages: Iterable[int] = (0,)) -> Iterator[dict[int, torch.Tensor]]:
    """
    Record feature maps of every forward pass of ``network`` inside the block, by stage.

    Stage 0 is the input of the unwrapped network's ``segmentation_head`` (the full-resolution decoder
    features); stage ``k > 0`` is the output of ``feature_stage(k)`` (``scripts.networks.ResidualUNet``: the
    decoder block at 1 / 2**k resolution, or the bottleneck). They are taken by hooks: the network is called as
    usual, so a ``DistributedDataParallel`` wrapper runs its own forward (gradient synchronisation included)
    and TorchScript export is unaffected. The yielded dict maps each stage to its (B, C_k, *S_k) features of the
    last forward pass.

    Raises:
        AttributeError: when the unwrapped network has no ``segmentation_head`` (stage 0) or no
            ``feature_stage`` (other stages).
        ValueError: from ``feature_stage`` for a stage the network does not have.
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for stage in sorted(set(stages)):
            module = _stage_module(network, stage)
            if stage == 0:

                def pre_hook(module: nn.Module, args: tuple) -> None:
                    captured[0] = args[0]

                handles.append(module.register_forward_pre_hook(pre_hook))
            else:

                def hook(module: nn.Module, args: tuple, output: torch.Tensor, stage: int = stage) -> None:
                    captured[stage] = output

                handles.append(module.register_forward_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()
