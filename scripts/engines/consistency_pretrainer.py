"""Self-supervised pretraining of the segmentation network by BYOL-style consistency between two views (PGL)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from torch import nn

from scripts.engines.features import capture_features, check_feature_locations, unwrap
from scripts.engines.optimization import amp_autocast, backward_and_step, start_iteration
from scripts.engines.random_state import LazyDeviceGenerator
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
        points_per_pair: the local loss of a pair is the mean over this many grid points of its overlap, drawn
            at random without replacement each iteration (an unbiased estimate of the mean over the whole overlap at
            a fraction of the heads' cost at full resolution); ``None``: every grid point.
        sampling_seed: seed of that draw (``None``: from torch's global generator); resumed with the trainer.
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
        points_per_pair: int | None = 4096,
        sampling_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in CONSISTENCY_MODES:
            raise ValueError(f"mode must be one of {CONSISTENCY_MODES}, got {mode!r}.")
        if not feature_locations:
            raise ValueError("feature_locations must name at least one location.")
        if points_per_pair is not None and points_per_pair < 1:
            raise ValueError(f"points_per_pair must be >= 1 or None, got {points_per_pair}.")
        if not 0 <= target_momentum < 1:
            raise ValueError(f"target_momentum must be in [0, 1), got {target_momentum}.")
        if kwargs.get("compile", False):
            raise ValueError("ConsistencyPretrainer does not support compile=True.")
        inner_heads = unwrap(heads)
        if isinstance(inner_heads, ConsistencyHeads) and len(inner_heads.projectors) != len(feature_locations):
            raise ValueError(
                f"heads have {len(inner_heads.projectors)} projectors for {len(feature_locations)} feature locations."
            )
        check_feature_locations(kwargs.get("network", args[3] if len(args) > 3 else None), feature_locations)
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
        self.points_per_pair = points_per_pair
        self.sampling_generator = LazyDeviceGenerator(sampling_seed)

    def state_dict(self) -> OrderedDict:
        """Ignite's engine state plus the generator of the overlap points, for resuming."""
        state = super().state_dict()
        state["sampling_generator"] = self.sampling_generator.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        state = dict(state_dict)
        self.sampling_generator.load_state_dict(state.pop("sampling_generator", {}))
        super().load_state_dict(state)

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

    def _overlap_samples(
        self, online: torch.Tensor, target: torch.Tensor, affines: torch.Tensor, view_shape: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """
        The online and target features of both views on the grid over each item's overlap (``align_views``),
        all items side by side: (2, C, P) each, index 0 = view 1, 1 = view 2, at the same P places; and the mean
        fraction of a view the overlap covers. (2B, C, *S) features, (2, B, D + 1, D + 1) view affines. With no
        overlapping pair, the first voxel of each view stands in (the caller then weights the loss by 0).
        """
        num_items = affines.shape[1]
        stride = [round(v / f) for v, f in zip(view_shape, online.shape[2:])]
        feature_affines = feature_map_affine(affines, stride)
        samples: list[list[torch.Tensor]] = [[], []]
        fractions = []
        for item in range(num_items):
            pair = (feature_affines[0, item], feature_affines[1, item])
            aligned_online = align_views(online[item], online[num_items + item], *pair, self.min_overlap_points)
            if aligned_online is None:
                continue
            aligned_target = align_views(target[item], target[num_items + item], *pair, self.min_overlap_points)
            points = aligned_online[0][0].numel()
            chosen = None
            if self.points_per_pair is not None and points > self.points_per_pair:
                generator = self.sampling_generator.get(online.device)
                chosen = torch.randperm(points, generator=generator, device=online.device)[: self.points_per_pair]
            for index, aligned in enumerate((aligned_online, aligned_target)):
                pair_samples = torch.stack([a.flatten(1) for a in aligned])  # (2, C, P_item), the same places
                samples[index].append(pair_samples if chosen is None else pair_samples[:, :, chosen])
            fractions.append(aligned_online[0][0].numel() / online[0, 0].numel())
        if not fractions:
            first = (slice(None), slice(None)) + (0,) * (online.ndim - 2)
            return online[first].reshape(2, num_items, -1).transpose(1, 2), target[first].reshape(
                2, num_items, -1).transpose(1, 2), 0.0
        return torch.cat(samples[0], dim=2), torch.cat(samples[1], dim=2), float(sum(fractions) / len(fractions))

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
        step = start_iteration(engine, [engine.network, engine.heads, engine.target_network, engine.target_heads])
        num_items = views[0].shape[0]
        terms: dict[str, torch.Tensor] = {}
        overlap = []
        with amp_autocast(engine):
            online_features = engine._features(engine.network, inputs)
            engine.state.output = {"image": inputs[:num_items]}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            with torch.no_grad():
                target_features = engine._features(engine.target_network, inputs)
            if engine.mode == "local":
                # both views' features on each item's overlap grid: (2, C, P), view 1 then view 2
                online_inputs, target_inputs, weights = [], [], []
                for online, target in zip(online_features, target_features):
                    online_samples, target_samples, fraction = engine._overlap_samples(
                        online, target, affines, inputs.shape[2:]
                    )
                    online_inputs.append(online_samples)
                    target_inputs.append(target_samples)
                    weights.append(1.0 if fraction > 0 else 0.0)
                    overlap.append(fraction)
            else:
                online_inputs, target_inputs = engine._pooled(online_features), engine._pooled(target_features)
                weights = [1.0] * len(online_inputs)
            # one call of the heads' forward: a DistributedDataParallel wrapper then synchronises their gradients
            _, predictions = engine.heads(online_inputs)
            with torch.no_grad():
                targets = engine.target_heads.project(target_inputs)
            for location, prediction, target, weight in zip(engine.feature_locations, predictions, targets, weights):
                # online view 1 predicts target view 2 and the other way round (local: index = view; global: halves)
                half = prediction.shape[0] // 2
                swapped = torch.cat([target[half:], target[:half]])
                terms[location] = weight * engine.loss_function(prediction, swapped)
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
