"""Read a segmentation network's feature maps during its ordinary forward pass (plain, DDP or DataParallel)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture_features", "capture_inputs", "capture_stages", "check_feature_locations", "unwrap"]


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


def _location_module(network: nn.Module, location: str) -> tuple[nn.Module, bool]:
    """The module of a feature location ``"decoder:k"`` or ``"encoder:k"``, and whether its input is the feature
    map (the segmentation head's input for ``"decoder:0"``) rather than its output."""
    kind, _, stage_text = location.partition(":")
    if kind not in ("decoder", "encoder") or not stage_text.isdigit():
        raise ValueError(f"a feature location is 'decoder:<k>' or 'encoder:<k>', got {location!r}.")
    stage = int(stage_text)
    if kind == "decoder":
        return _stage_module(network, stage), stage == 0
    inner = unwrap(network)
    if not callable(getattr(inner, "encoder_stage", None)):
        raise AttributeError(f"{type(inner).__name__} has no encoder_stage(k) to read {location} from")
    return inner.encoder_stage(stage), False


@contextmanager
def _capture(modules: dict[object, tuple[nn.Module, bool]]) -> Iterator[dict[object, torch.Tensor]]:
    """Record, by key, the input (``True``) or output (``False``) of each module in every forward pass inside."""
    captured: dict[object, torch.Tensor] = {}
    handles = []
    try:
        for key, (module, read_input) in modules.items():
            if read_input:

                def pre_hook(module: nn.Module, args: tuple, key: object = key) -> None:
                    captured[key] = args[0]

                handles.append(module.register_forward_pre_hook(pre_hook))
            else:

                def hook(module: nn.Module, args: tuple, output: torch.Tensor, key: object = key) -> None:
                    captured[key] = output

                handles.append(module.register_forward_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


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
    modules = {stage: (_stage_module(network, stage), stage == 0) for stage in sorted(set(stages))}
    with _capture(modules) as captured:
        yield captured  # type: ignore[misc]


@contextmanager
def capture_features(network: nn.Module, locations: Iterable[str]) -> Iterator[dict[str, torch.Tensor]]:
    """
    As ``capture_stages``, by feature location: ``"decoder:k"`` is stage ``k`` of ``capture_stages`` (``"decoder:0"``
    the full-resolution decoder features), ``"encoder:k"`` the output of the unwrapped network's
    ``encoder_stage(k)``, (B, C_k, *S / 2**k). The yielded dict maps each location to its features.

    Raises:
        ValueError: a location that is not ``"decoder:<k>"`` / ``"encoder:<k>"``, or a stage the network lacks.
        AttributeError: a network without the module a location needs.
    """
    modules = {location: _location_module(network, location) for location in dict.fromkeys(locations)}
    with _capture(modules) as captured:
        yield captured  # type: ignore[misc]


def check_feature_locations(network: nn.Module | None, locations: Iterable[str]) -> None:
    """
    Check at construction that ``capture_features(network, locations)`` will find every location (``None``: no
    network yet, nothing to check).

    Raises:
        ValueError, AttributeError: as ``capture_features`` raises them.
    """
    if network is not None:
        for location in dict.fromkeys(locations):
            _location_module(network, location)


@contextmanager
def capture_inputs(network: nn.Module, module_names: Iterable[str]) -> Iterator[dict[str, torch.Tensor]]:
    """
    As ``capture_stages``, for any network: the input of each named submodule of the unwrapped ``network``
    (``named_modules`` names, e.g. ``"segmentation_head"`` of ``ResidualUNet``, ``"final_conv"`` of MONAI's
    ``BasicUNet``, ``"out_tr"`` of ``VNet``: the decoder features the segmentation layer reads), by name.

    Raises:
        KeyError: a name the network has no submodule of, naming the network's top-level modules.
    """
    modules = dict(unwrap(network).named_modules())
    missing = [name for name in module_names if name not in modules]
    if missing:
        top = [name for name in modules if name and "." not in name]
        raise KeyError(f"{type(unwrap(network)).__name__} has no submodule {missing}; its modules: {top}")
    with _capture({name: (modules[name], True) for name in dict.fromkeys(module_names)}) as captured:
        yield captured  # type: ignore[misc]
