"""Start a training run from the matching tensors of a state dict or checkpoint: fine-tuning after pretraining."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.config import PathLike
from torch import nn

from scripts.data.errors import InputError
from scripts.data.weights import weights_error

__all__ = ["PretrainedWeightsLoader", "matching_state"]

logger = logging.getLogger(__name__)


def matching_state(
    network_state: Mapping[str, torch.Tensor], checkpoint_state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """
    The checkpoint tensors that fit the network (same name, same shape), the network tensors left as they are
    (absent from the checkpoint or of another shape), and the checkpoint tensors not used.
    """
    loaded = {
        name: value
        for name, value in checkpoint_state.items()
        if name in network_state and tuple(value.shape) == tuple(network_state[name].shape)
    }
    kept = [name for name in network_state if name not in loaded]
    unused = [name for name in checkpoint_state if name not in loaded]
    return loaded, kept, unused


class PretrainedWeightsLoader:
    """
    When training starts, load into ``network`` every tensor of ``load_path`` whose name and shape match, and log
    which tensors were loaded and which were not. ``load_path`` is a ``network_def`` state dict (``models/model.pt``)
    or a training or pretraining checkpoint, whose ``key`` entry (the network; its SSL heads, EMA target and
    optimizer entries are not used) is taken. Loaded with ``torch.load(weights_only=True)``. It runs before a resume
    checkpoint is loaded (list it before the resumable checkpointer), so a resumed fine-tuning run continues
    from its own state.

    Args:
        load_path: the state dict or checkpoint file.
        network: the module to load into (a DDP wrapper is unwrapped).
        key: the entry of a checkpoint that holds the network.
        map_location: as ``torch.load``.

    Raises:
        InputError: when training starts, naming the file: it cannot be read safely, holds no tensors under ``key``,
            or none of its tensors matches the network (name and shape).
    """

    def __init__(
        self, load_path: PathLike, network: nn.Module, key: str = "model", map_location: str | torch.device = "cpu"
    ) -> None:
        self.load_path = Path(load_path)
        self.network = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
        self.key = key
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def _state(self) -> Mapping[str, torch.Tensor]:
        try:
            content = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        except Exception as error:  # noqa: BLE001 - every reading failure is told about the file
            raise weights_error(self.load_path, error) from None
        state = content.get(self.key, content) if isinstance(content, Mapping) else None
        if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
            raise InputError(self.load_path, f"holds no state dict of tensors (neither the file nor its {self.key!r} entry)")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}

    def __call__(self, engine: Engine | None = None) -> None:
        checkpoint_state = self._state()
        network_state = self.network.state_dict()
        loaded, kept, unused = matching_state(network_state, checkpoint_state)
        if not loaded:
            raise InputError(
                self.load_path,
                f"none of its {len(checkpoint_state)} tensors matches the network by name and shape "
                f"(network: {list(network_state)[:3]}..., file: {list(checkpoint_state)[:3]}...)",
            )
        self.network.load_state_dict(loaded, strict=False)
        logger.info(
            f"pretrained weights {self.load_path}: loaded {len(loaded)} of the network's {len(network_state)} tensors "
            f"({', '.join(loaded)}); not loaded (kept as initialised): {len(kept)} ({', '.join(kept) or 'none'}); "
            f"unused in the file: {len(unused)} ({', '.join(unused) or 'none'})"
        )
