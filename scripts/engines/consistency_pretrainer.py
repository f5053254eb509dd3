"""Self-supervised pretraining of the segmentation network by BYOL-style consistency between two views (PGL)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from torch import nn

from scripts.engines.features import capture_features, unwrap
from scripts.engines.optimization import accumulation_schedule, backward_and_step
from scripts.engines.view_alignment import align_views, feature_map_affine
from scripts.losses import CosineConsistencyLoss, normalised_feature_std
from scripts.networks import ConsistencyHeads

__all__ = ["CONSISTENCY_MODES", "ConsistencyPretrainer", "frozen_copy", "pretraining_terms"]

CONSISTENCY_MODES = ("local", "global")


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (unwrapped from DDP) without gradients: the EMA target of BYOL."""
    target = copy.deepcopy(unwrap(module))
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


def pretraining_terms(output: Any) -> dict[str, float]:
    """``output_transform`` for Stats/TensorBoard handlers: the loss, its term per location, feature std, overlap."""
    first = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
    return {
        key: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        for key, value in first.items()
        if key.startswith(("loss", "feature_std", "overlap")) and not isinstance(value, (list, dict))
    }


class ConsistencyPretrainer(SupervisedTrainer):
    """
    One iteration makes both views of each item pass the online network and the EMA target network, reads
    their features at ``feature_locations`` and scores BYOL's loss between the online prediction of one view and
    the target projection of the other, both ways:

    - ``mode="local"`` (PGL, arXiv 2011.12640): the two views' feature maps (after the pointwise heads) are
      resampled onto one grid over the region both views show (``align_views``, from the view affines that
      ``scripts.transforms.RandPairedViewsd`` recorded), and the loss is the mean over those voxels: the
      same anatomy must have the same features whatever crop, scale, flip or rotation it was seen in.
    - ``mode="global"``: each view's features are averaged into one embedding first (image-level consistency,
      the baseline PGL is compared with).

    After every optimizer step the target network and target heads move towards the online ones by
    ``1 - target_momentum`` (parameters and buffers). The loss of each location, the mean L2-normalised feature
    standard deviation of the online decoder features (``feature_std``: about ``1 / sqrt(C)`` when healthy, 0
    when the encoder has collapsed to a constant) and the mean fraction of each view that the overlap covers
    (``overlap_fraction``, local mode) are in ``engine.state.output``.

    Args:
        heads: the online ``ConsistencyHeads`` (or a DDP wrapper of them), one projector/predictor per location.
        target_network: the EMA copy of ``network`` (``frozen_copy``); its weights are set to the network's here.
        target_heads: the EMA copy of ``heads``.
        feature_locations: where features are read (``scripts.engines.capture_features``), e.g.
            ``["decoder:0", "encoder:2"]``: the decoder's output scale and an encoder scale.
        mode: ``"local"`` or ``"global"``.
        target_momentum: EMA momentum of the target, in [0, 1).
        view_keys: the batch keys of the two views (MetaTensors whose ``affine`` is (B, D + 1, D + 1)).
        min_overlap_points: pairs whose overlap has fewer grid points are left out of the local loss.
        args, kwargs: ``SupervisedTrainer``'s (``loss_function`` defaults to ``CosineConsistencyLoss``; the network's
            segmentation output is not used).

    Raises:
        ValueError: an unknown mode, no location, a momentum outside [0, 1), a head count different from the
            locations, or ``compile=True``.
        AttributeError, ValueError: from ``capture_features`` for a location the network does not have.
    """

    def __init__(
        self,
        *args: Any,
        heads: nn.Module,
        target_network: nn.Module,
        target_heads: nn.Module,
        feature_locations: Sequence[str] = ("decoder:0", "encoder:2"),
        mode: str = "local",
        target_momentum: float = 0.99,
        view_keys: Sequence[str] = ("view_1", "view_2"),
        min_overlap_points: int = 8,
        **kwargs: Any,
    ) -> None:
        if mode not in CONSISTENCY_MODES:
            raise ValueError(f"mode must be one of {CONSISTENCY_MODES}, got {mode!r}.")
        if not feature_locations:
            raise ValueError("feature_locations must name at least one location.")
        if not 0 <= target_momentum < 1:
            raise ValueError(f"target_momentum must be in [0, 1), got {target_momentum}.")
        if kwargs.get("compile", False):
            raise ValueError("ConsistencyPretrainer does not support compile=True.")
        inner_heads = unwrap(heads)
        if isinstance(inner_heads, ConsistencyHeads) and len(inner_heads.projectors) != len(feature_locations):
            raise ValueError(
                f"heads have {len(inner_heads.projectors)} projectors for {len(feature_locations)} feature locations."
            )
        network = kwargs.get("network", args[3] if len(args) > 3 else None)
        if network is not None:
            with capture_features(network, feature_locations):  # raises for a location the network lacks
                pass
        kwargs.setdefault("loss_function", CosineConsistencyLoss())
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.heads = heads
        self.target_network = target_network
        self.target_heads = target_heads
        self.target_network.load_state_dict(unwrap(self.network).state_dict())
        self.target_heads.load_state_dict(inner_heads.state_dict())
        self.feature_locations = list(feature_locations)
        self.mode = mode
        self.target_momentum = float(target_momentum)
        self.view_keys = tuple(view_keys)
        self.min_overlap_points = int(min_overlap_points)

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the target network and heads towards the online ones: ``t <- m * t + (1 - m) * o``."""
        for online, target in ((unwrap(self.network), self.target_network), (unwrap(self.heads), self.target_heads)):
            target_state, online_state = target.state_dict(), online.state_dict()
            for name, value in target_state.items():
                if value.is_floating_point():
                    value.lerp_(online_state[name].to(value.dtype), 1 - self.target_momentum)
                else:
                    value.copy_(online_state[name])

    def _features(self, network: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
        with capture_features(network, self.feature_locations) as captured:
            network(inputs)
        return [captured[location] for location in self.feature_locations]

    def _pooled(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Global mode: each view's (N, C, *S) features averaged to (N, C, 1, ..., 1); local mode: unchanged."""
        if self.mode == "local":
            return features
        return [f.mean(dim=tuple(range(2, f.ndim)), keepdim=True) for f in features]

    def _local_loss(
        self, predictions: torch.Tensor, targets: torch.Tensor, affines: torch.Tensor, view_shape: Sequence[int]
    ) -> tuple[torch.Tensor, float]:
        """Mean loss over items and both directions on the aligned overlap; (2B, C, *S) maps, (2, B, 4, 4) affines."""
        num_items = affines.shape[1]
        stride = [round(v / f) for v, f in zip(view_shape, predictions.shape[2:])]
        feature_affines = feature_map_affine(affines, stride)
        losses, fractions = [], []
        for item in range(num_items):
            for online, target in ((0, 1), (1, 0)):
                aligned = align_views(
                    predictions[online * num_items + item],
                    targets[target * num_items + item],
                    feature_affines[online, item],
                    feature_affines[target, item],
                    min_points=self.min_overlap_points,
                )
                if aligned is None:
                    continue
                losses.append(self.loss_function(aligned[0][None], aligned[1][None]))
                fractions.append(aligned[0][0].numel() / predictions[0, 0].numel())
        if not losses:  # no pair overlaps: a zero that keeps the graph (DDP needs every parameter used)
            return predictions.sum() * 0.0, 0.0
        return torch.stack(losses).mean(), float(sum(fractions) / len(fractions))

    def _iteration(self, engine: ConsistencyPretrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        missing = [key for key in engine.view_keys if key not in batchdata]
        if missing:
            raise KeyError(f"consistency pretraining needs the views {missing} in every batch (RandPairedViewsd).")
        views = [batchdata[key] for key in engine.view_keys]
        if not all(isinstance(v, MetaTensor) for v in views):
            raise TypeError("the views must be MetaTensors carrying their affines (RandPairedViewsd).")
        affines = torch.stack([torch.as_tensor(v.affine, dtype=torch.float64).reshape(-1, *v.affine.shape[-2:])
                               for v in views])
        device = engine.state.device
        inputs = torch.cat(
            [convert_to_tensor(v, track_meta=False).to(device, non_blocking=engine.non_blocking) for v in views]
        )
        zero_grad, step = accumulation_schedule(
            engine.state.iteration, engine.state.epoch_length, engine.accumulation_steps
        )
        engine.network.train()
        engine.heads.train()
        engine.target_network.train()
        engine.target_heads.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        num_items = views[0].shape[0]
        terms: dict[str, torch.Tensor] = {}
        overlap = []
        with torch.autocast("cuda", enabled=bool(engine.amp and engine.scaler is not None), **engine.amp_kwargs):
            online_features = engine._features(engine.network, inputs)
            engine.state.output = {"image": inputs[:num_items]}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            _, predictions = engine.heads(engine._pooled(online_features))
            with torch.no_grad():
                targets = engine.target_heads.project(engine._pooled(engine._features(engine.target_network, inputs)))
            for location, prediction, target in zip(engine.feature_locations, predictions, targets):
                if engine.mode == "local":
                    terms[location], fraction = engine._local_loss(prediction, target, affines, inputs.shape[2:])
                    overlap.append(fraction)
                else:
                    swapped = torch.cat([target[num_items:], target[:num_items]])
                    terms[location] = engine.loss_function(prediction, swapped)
            loss = torch.stack(list(terms.values())).mean()
        engine.state.output.update({"loss": loss, **{f"loss_{k.replace(':', '')}": v.detach() for k, v in terms.items()}})
        engine.state.output["feature_std"] = normalised_feature_std(online_features[0])
        if overlap:
            engine.state.output["overlap_fraction"] = sum(overlap) / len(overlap)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, loss, step)
        if step:
            engine.update_target()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
