"""SupervisedTrainer whose iteration adds the two self-supervised tasks of the DualSSL framework."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from monai.utils.enums import CommonKeys as Keys
from torch.nn import functional as F

from scripts.engines.appearance import RandGlobalIntensityNetwork
from scripts.engines.corruption import RandUncertaintyCorruption, uncertainty_region
from scripts.engines.features import capture_stages
from scripts.engines.optimization import amp_autocast, backward_and_step, start_iteration
from scripts.engines.random_state import LazyDeviceGenerator
from scripts.engines.sampling import gather_voxels, sample_structure_voxels
from scripts.losses import MaskedL1Loss, StructureContrastiveLoss
from scripts.networks import DualSSLHeads

__all__ = ["DualSSLTrainer", "loss_terms"]

LOSS_TERMS = (
    "loss",
    "loss_segmentation",
    "loss_consistency",
    "loss_contrastive",
    "loss_restoration",
    "ssl_weight",
    "contrastive_skipped",
)


def _foreground(logits: torch.Tensor) -> torch.Tensor:
    """Voxels whose most likely class is not background, (B, 1, *S) bool: argmax(dim=1) > 0 without the argmax,
    which is slow along the channel dimension on CPU (about 100x a max and a comparison)."""
    return logits[:, 1:].amax(dim=1, keepdim=True) > logits[:, :1]


def _symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of ``(KL(p_a || p_b) + KL(p_b || p_a)) / 2`` of two (B, K, *S) logit maps' softmax."""
    log_a, log_b = F.log_softmax(logits_a.float(), dim=1), F.log_softmax(logits_b.float(), dim=1)
    return ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(dim=1).mean() / 2


def loss_terms(output: Any) -> dict[str, float]:
    """``output_transform`` for Stats/TensorBoard handlers: every loss term of the iteration, by name."""
    first = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
    return {key: float(first[key]) for key in LOSS_TERMS if key in first}


class DualSSLTrainer(SupervisedTrainer):
    """
    One iteration computes ``segmentation + w * (lambda_contrastive * contrastive + lambda_restoration * restoration)``.

    - restoration: a no-grad forward pass on the clean patch gives the predictive entropy; the high-uncertainty
      region is the label's boundary band (``band_key``) plus the top ``entropy_top_percent`` % entropy voxels;
      ``corruption`` corrupts sub-blocks inside it; the network segments the corrupted patch (the segmentation
      loss is computed on it) and ``ssl_heads.restore`` reconstructs the clean intensities, L1 on corrupted voxels.
    - contrastive: voxels are sampled along the pancreas skeleton (positives) and from the peripancreatic ring
      plus hard negatives (negatives), embedded by ``ssl_heads.embed`` from the decoder features of the same
      forward pass and scored by ``StructureContrastiveLoss``.
    - ramp: ``w`` is 0 before ``ssl_start_iteration`` (the SSL terms are then not computed at all) and rises
      linearly to 1 over ``ssl_rampup_iterations``. With both lambdas 0 the iteration is plain supervised training.

    Switches of the recipe (defaults: the recipe above, which the shipped model was trained with):

    - ``appearance_augmentation`` (e.g. ``scripts.engines.RandGlobalIntensityNetwork``): the patch is seen in two
      random appearances ``v1, v2`` in one forward pass of 2B items; both are segmented, ``lambda_consistency``
      weighs a symmetric KL divergence between their softmax predictions, the contrastive positives and
      negatives of both views are contrasted together (so the same pancreas voxel in two appearances is a
      positive pair), and the restoration task corrupts ``v2``. With both SSL lambdas 0 this is the GIN baseline.
    - ``segment_corrupted=False``: the network segments the clean patch (whose prediction gives the entropy, so
      no extra no-grad pass is run) and restores a corrupted copy in a second forward pass that has no
      segmentation loss.
    - ``contrastive_stage`` / ``restoration_stage``: the feature stage the projection / restoration head reads
      (0: the segmentation head's input; k: ``network.feature_stage(k)``, 1 / 2**k resolution).

    The feature maps are taken by hooks during the ordinary forward pass (``scripts.engines.features``;
    ``scripts.networks.ResidualUNet`` has ``segmentation_head`` and ``feature_stage``), so the network may be
    wrapped in ``DistributedDataParallel``. The optimizer step is ``SupervisedTrainer``'s
    (``scripts.engines.optimization``).
    Batches hold ``image`` (B, 1, *S), ``label`` (B, 1, *S) and, for the SSL terms, the cached structure maps
    ``skeleton``, ``ring`` and ``band`` (B, 1, *S) from ``scripts.transforms.PancreasStructureMapsd``.
    ``engine.state.output`` gets every loss term (see ``loss_terms``) besides image, label, pred and loss.

    Args:
        ssl_heads: projection and restoration heads (``DualSSLHeads``, possibly inside ``DistributedDataParallel``),
            called through their ``forward``; their parameters must be in ``optimizer``.
        lambda_contrastive: weight of the contrastive term.
        lambda_restoration: weight of the restoration term.
        contrastive_loss: defaults to ``StructureContrastiveLoss()``.
        restoration_loss: defaults to ``MaskedL1Loss()``.
        corruption: defaults to ``RandUncertaintyCorruption()``.
        num_positive, num_negative, hard_negative_ratio: see ``scripts.engines.sample_structure_voxels``.
        entropy_top_percent: share of most uncertain voxels added to the band; 0 skips the extra forward pass.
        entropy_bfloat16: run that no-grad forward pass in bfloat16 autocast (about 2x faster on CPUs with
            bfloat16 support; only the ranking of the entropy is used). Off: the pass runs in the training dtype.
        ssl_start_iteration: first iteration (1-based) with SSL terms.
        ssl_rampup_iterations: iterations of the linear ramp of the SSL weight.
        skeleton_key, ring_key, band_key: batch keys of the structure maps.
        sampling_seed: seed of the voxel sampler's generator (``None``: drawn from torch's global RNG).
            ``state_dict`` carries this generator, the corruption's and the appearance augmentation's, so a resumed
            run continues their streams.
        appearance_augmentation: makes the two appearance views (see above); ``None``: one view, the patch.
        lambda_consistency: weight of the consistency between the two views' predictions (not ramped).
        segment_corrupted: segment the corrupted patch (``True``) or the clean one (see above).
        contrastive_stage, restoration_stage: feature stages of the two heads (see above).
        kwargs: passed on to ``SupervisedTrainer`` (``accumulation_steps`` and ``amp`` work as there).

    Raises:
        ValueError: a negative lambda or count, ``hard_negative_ratio`` or ``entropy_top_percent`` out of range,
            ``ssl_start_iteration`` < 1, ``ssl_rampup_iterations`` < 0, a negative stage, ``lambda_consistency`` > 0
            without ``appearance_augmentation``, or ``compile=True`` (the iteration runs
            the network eagerly; use ``torch.compile`` on the network yourself instead).
        TypeError: ``contrastive_loss`` that cannot return its skipped-item count (``return_num_skipped``).
        AttributeError: a network without ``segmentation_head`` (when an SSL term is on), or without
            ``feature_stage`` when a stage > 0 is asked for.
    """

    def __init__(
        self,
        *args: Any,
        ssl_heads: DualSSLHeads,
        lambda_contrastive: float = 0.1,
        lambda_restoration: float = 1.0,
        contrastive_loss: torch.nn.Module | None = None,
        restoration_loss: torch.nn.Module | None = None,
        corruption: RandUncertaintyCorruption | None = None,
        num_positive: int = 64,
        num_negative: int = 128,
        hard_negative_ratio: float = 0.25,
        entropy_top_percent: float = 5.0,
        entropy_bfloat16: bool = False,
        ssl_start_iteration: int = 1,
        ssl_rampup_iterations: int = 0,
        skeleton_key: str = "skeleton",
        ring_key: str = "ring",
        band_key: str = "band",
        sampling_seed: int | None = None,
        appearance_augmentation: RandGlobalIntensityNetwork | None = None,
        lambda_consistency: float = 0.0,
        segment_corrupted: bool = True,
        contrastive_stage: int = 0,
        restoration_stage: int = 0,
        **kwargs: Any,
    ) -> None:
        if lambda_contrastive < 0 or lambda_restoration < 0:
            raise ValueError(
                f"lambda_contrastive and lambda_restoration must be non-negative, got {lambda_contrastive} and "
                f"{lambda_restoration}."
            )
        if num_positive < 1 or num_negative < 1:
            raise ValueError(f"num_positive and num_negative must be positive, got {num_positive} and {num_negative}.")
        if not 0.0 <= hard_negative_ratio <= 1.0:
            raise ValueError(f"hard_negative_ratio must be in [0, 1], got {hard_negative_ratio}.")
        if not 0.0 <= entropy_top_percent <= 100.0:
            raise ValueError(f"entropy_top_percent must be in [0, 100], got {entropy_top_percent}.")
        if ssl_start_iteration < 1 or ssl_rampup_iterations < 0:
            raise ValueError(
                f"ssl_start_iteration must be >= 1 and ssl_rampup_iterations >= 0, got {ssl_start_iteration} and "
                f"{ssl_rampup_iterations}."
            )
        if lambda_consistency < 0 or (lambda_consistency > 0 and appearance_augmentation is None):
            raise ValueError(
                f"lambda_consistency must be non-negative and needs appearance_augmentation, got {lambda_consistency}."
            )
        if contrastive_stage < 0 or restoration_stage < 0:
            raise ValueError(f"stages must be >= 0, got {contrastive_stage} and {restoration_stage}.")
        if kwargs.get("compile", False):
            raise ValueError("DualSSLTrainer does not support compile=True; compile the network before passing it.")
        contrastive_loss = StructureContrastiveLoss() if contrastive_loss is None else contrastive_loss
        if "return_num_skipped" not in inspect.signature(contrastive_loss.forward).parameters:
            raise TypeError(
                f"contrastive_loss {type(contrastive_loss).__name__} must accept return_num_skipped "
                "(as scripts.losses.StructureContrastiveLoss does)."
            )
        network = kwargs.get("network", args[3] if len(args) > 3 else None)  # SupervisedTrainer(device, max_epochs, loader, network, ...)
        stages = [stage for stage, on in ((contrastive_stage, lambda_contrastive), (restoration_stage, lambda_restoration)) if on]
        if network is not None:
            for stage in stages:
                with capture_stages(network, (stage,)):  # raises when the network does not have the stage
                    pass
        super().__init__(*args, **kwargs)
        self.ssl_heads = ssl_heads
        self.lambda_contrastive = lambda_contrastive
        self.lambda_restoration = lambda_restoration
        self.contrastive_loss = contrastive_loss
        self.restoration_loss = MaskedL1Loss() if restoration_loss is None else restoration_loss
        self.corruption = RandUncertaintyCorruption() if corruption is None else corruption
        self.num_positive = num_positive
        self.num_negative = num_negative
        self.hard_negative_ratio = hard_negative_ratio
        self.entropy_top_percent = entropy_top_percent
        self.entropy_bfloat16 = entropy_bfloat16
        self.ssl_start_iteration = ssl_start_iteration
        self.ssl_rampup_iterations = ssl_rampup_iterations
        self.skeleton_key, self.ring_key, self.band_key = skeleton_key, ring_key, band_key
        self.sampling_generator = LazyDeviceGenerator(sampling_seed)
        self.appearance_augmentation = appearance_augmentation
        self.lambda_consistency = lambda_consistency
        self.segment_corrupted = segment_corrupted
        self.contrastive_stage = contrastive_stage
        self.restoration_stage = restoration_stage

    def ssl_weight(self, iteration: int) -> float:
        """Ramp factor ``w`` of the SSL terms at a 1-based iteration."""
        if iteration < self.ssl_start_iteration:
            return 0.0
        if self.ssl_rampup_iterations <= 0:
            return 1.0
        return min(1.0, (iteration - self.ssl_start_iteration + 1) / self.ssl_rampup_iterations)

    def state_dict(self) -> OrderedDict:
        """Ignite's engine state plus the generators of the voxel sampler and the corruption, for resuming."""
        state = super().state_dict()
        state["sampling_generator"] = self.sampling_generator.state_dict()
        state["corruption_generator"] = self.corruption.state_dict()
        if self.appearance_augmentation is not None:
            state["appearance_generator"] = self.appearance_augmentation.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        state = dict(state_dict)
        self.sampling_generator.load_state_dict(state.pop("sampling_generator", {}))
        self.corruption.load_state_dict(state.pop("corruption_generator", {}))
        appearance = state.pop("appearance_generator", {})
        if self.appearance_augmentation is not None:
            self.appearance_augmentation.load_state_dict(appearance)
        super().load_state_dict(state)

    def _map(self, batchdata: dict, key: str) -> torch.Tensor:
        if key not in batchdata:
            raise KeyError(f"DualSSL needs the cached structure map '{key}' in every batch (PancreasStructureMapsd).")
        return convert_to_tensor(batchdata[key], track_meta=False).to(self.state.device, non_blocking=self.non_blocking)

    def _entropy_region(self, batchdata: dict, image: torch.Tensor, probabilities: torch.Tensor | None) -> torch.Tensor:
        """The band plus the top-entropy voxels, from ``probabilities`` or else from a no-grad pass on ``image``."""
        region = self._map(batchdata, self.band_key) > 0
        if self.entropy_top_percent <= 0:
            return region
        if probabilities is None:
            low_precision = (
                torch.autocast(image.device.type, dtype=torch.bfloat16) if self.entropy_bfloat16 else nullcontext()
            )
            with torch.no_grad(), low_precision:
                probabilities = F.softmax(self.network(image).float(), dim=1)
        return uncertainty_region(region, probabilities, self.entropy_top_percent)

    def _iteration(self, engine: DualSSLTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        # plain tensors: MetaTensor bookkeeping on every operation of the iteration costs time and is not needed
        inputs, targets = (convert_to_tensor(x, track_meta=False) for x in batch[:2])
        weight = engine.ssl_weight(engine.state.iteration)
        use_contrastive = weight > 0 and engine.lambda_contrastive > 0
        use_restoration = weight > 0 and engine.lambda_restoration > 0
        num_items = inputs.shape[0]
        step = start_iteration(engine, [engine.network, engine.ssl_heads])
        with amp_autocast(engine):
            # the views, batched along dim 0: [patch] or [v1, v2]; the restoration task works on the last one
            if engine.appearance_augmentation is not None:
                views = [engine.appearance_augmentation(inputs), engine.appearance_augmentation(inputs)]
            else:
                views = [inputs]
            restoration_target = views[-1]
            corrupted = None
            if use_restoration and engine.segment_corrupted:
                region = engine._entropy_region(batchdata, views[-1], None)
                views[-1], corrupted = engine.corruption(views[-1], region)
            network_input = torch.cat(views) if len(views) > 1 else views[0]
            stages = [engine.contrastive_stage] * use_contrastive
            stages += [engine.restoration_stage] * (use_restoration and engine.segment_corrupted)
            with capture_stages(engine.network, stages) as captured:
                logits = engine.network(network_input)
            engine.state.output = {Keys.IMAGE: views[0], Keys.LABEL: targets, Keys.PRED: logits[:num_items]}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            all_targets = targets.repeat(len(views), *([1] * (targets.ndim - 1)))
            segmentation = engine.loss_function(logits, all_targets).mean()
            consistency = logits.new_zeros(())
            if engine.lambda_consistency > 0:
                consistency = _symmetric_kl(logits[:num_items], logits[num_items:])
            contrastive = logits.new_zeros(())
            restoration = logits.new_zeros(())
            skipped = logits.new_zeros((), dtype=torch.long)
            voxel_features = samples = restoration_features = None
            if use_contrastive:
                samples = sample_structure_voxels(
                    engine._map(batchdata, engine.skeleton_key),
                    engine._map(batchdata, engine.ring_key),
                    targets,
                    _foreground(logits[:num_items].detach()),
                    num_positive=engine.num_positive,
                    num_negative=engine.num_negative,
                    hard_negative_ratio=engine.hard_negative_ratio,
                    generator=engine.sampling_generator.get(logits.device),
                )
                # every view's features at the same voxels, side by side: (B, views * N, C)
                stage_features = captured[engine.contrastive_stage].chunk(len(views))
                voxel_features = torch.cat(
                    [gather_voxels(f, samples.indices, inputs.shape[2:]) for f in stage_features], dim=1
                ).float()
            if use_restoration:
                if engine.segment_corrupted:
                    restoration_features = captured[engine.restoration_stage][-num_items:]
                else:
                    probabilities = F.softmax(logits[-num_items:].detach().float(), dim=1)
                    region = engine._entropy_region(batchdata, views[-1], probabilities)
                    corrupted_copy, corrupted = engine.corruption(views[-1], region)
                    with capture_stages(engine.network, (engine.restoration_stage,)) as captured_copy:
                        engine.network(corrupted_copy)
                    restoration_features = captured_copy[engine.restoration_stage]
            if use_contrastive or use_restoration:
                # one call of the heads' forward: a DistributedDataParallel wrapper then synchronises their gradients
                embeddings, restored = engine.ssl_heads(voxel_features, restoration_features)
            if use_contrastive:
                contrastive, skipped = engine.contrastive_loss(
                    embeddings,
                    samples.is_positive.repeat(1, len(views)),
                    samples.valid.repeat(1, len(views)),
                    return_num_skipped=True,
                )
            if use_restoration:
                restoration = engine.restoration_loss(restored.float(), restoration_target, corrupted)
            loss = (
                segmentation
                + engine.lambda_consistency * consistency
                + weight * (engine.lambda_contrastive * contrastive + engine.lambda_restoration * restoration)
            )
        engine.state.output.update(
            {
                Keys.LOSS: loss,
                "loss_segmentation": segmentation.detach(),
                "loss_consistency": consistency.detach(),
                "loss_contrastive": contrastive.detach(),
                "loss_restoration": restoration.detach(),
                "ssl_weight": weight,
                "contrastive_skipped": skipped,
            }
        )
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, loss, step)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
