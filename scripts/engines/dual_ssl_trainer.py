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

from scripts.engines.corruption import RandUncertaintyCorruption, uncertainty_region
from scripts.engines.features import capture_features, unwrap
from scripts.engines.optimization import accumulation_schedule, backward_and_step
from scripts.engines.random_state import LazyDeviceGenerator
from scripts.engines.sampling import gather_voxels, sample_structure_voxels
from scripts.losses import MaskedL1Loss, StructureContrastiveLoss
from scripts.networks import DualSSLHeads

__all__ = ["DualSSLTrainer", "loss_terms"]

LOSS_TERMS = ("loss", "loss_segmentation", "loss_contrastive", "loss_restoration", "ssl_weight", "contrastive_skipped")


def _foreground(logits: torch.Tensor) -> torch.Tensor:
    """Voxels whose most likely class is not background, (B, 1, *S) bool: argmax(dim=1) > 0 without the argmax,
    which is slow along the channel dimension on CPU (about 100x a max and a comparison)."""
    return logits[:, 1:].amax(dim=1, keepdim=True) > logits[:, :1]


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

    The decoder features are the input of the network's ``segmentation_head`` in the same forward pass
    (``scripts.engines.features.capture_features``; ``scripts.networks.ResidualUNet`` has one), so the network may
    be wrapped in ``DistributedDataParallel``. The optimizer step is ``SupervisedTrainer``'s
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
            ``state_dict`` carries this generator and the corruption's, so a resumed run continues their streams.
        kwargs: passed on to ``SupervisedTrainer`` (``accumulation_steps`` and ``amp`` work as there).

    Raises:
        ValueError: a negative lambda or count, ``hard_negative_ratio`` or ``entropy_top_percent`` out of range,
            ``ssl_start_iteration`` < 1, ``ssl_rampup_iterations`` < 0, or ``compile=True`` (the iteration runs
            the network eagerly; use ``torch.compile`` on the network yourself instead).
        TypeError: ``contrastive_loss`` that cannot return its skipped-item count (``return_num_skipped``).
        AttributeError: a network without ``segmentation_head`` (when an SSL term is on).
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
        if kwargs.get("compile", False):
            raise ValueError("DualSSLTrainer does not support compile=True; compile the network before passing it.")
        contrastive_loss = StructureContrastiveLoss() if contrastive_loss is None else contrastive_loss
        if "return_num_skipped" not in inspect.signature(contrastive_loss.forward).parameters:
            raise TypeError(
                f"contrastive_loss {type(contrastive_loss).__name__} must accept return_num_skipped "
                "(as scripts.losses.StructureContrastiveLoss does)."
            )
        network = kwargs.get("network", args[3] if len(args) > 3 else None)  # SupervisedTrainer(device, max_epochs, loader, network, ...)
        if (lambda_contrastive > 0 or lambda_restoration > 0) and network is not None:
            if not isinstance(getattr(unwrap(network), "segmentation_head", None), torch.nn.Module):
                raise AttributeError(
                    f"{type(unwrap(network)).__name__} has no segmentation_head whose input are the decoder features."
                )
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
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        state = dict(state_dict)
        self.sampling_generator.load_state_dict(state.pop("sampling_generator", {}))
        self.corruption.load_state_dict(state.pop("corruption_generator", {}))
        super().load_state_dict(state)

    def _map(self, batchdata: dict, key: str) -> torch.Tensor:
        if key not in batchdata:
            raise KeyError(f"DualSSL needs the cached structure map '{key}' in every batch (PancreasStructureMapsd).")
        return convert_to_tensor(batchdata[key], track_meta=False).to(self.state.device, non_blocking=self.non_blocking)

    def _iteration(self, engine: DualSSLTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        # plain tensors: MetaTensor bookkeeping on every operation of the iteration costs time and is not needed
        inputs, targets = (convert_to_tensor(x, track_meta=False) for x in batch[:2])
        weight = engine.ssl_weight(engine.state.iteration)
        use_contrastive = weight > 0 and engine.lambda_contrastive > 0
        use_restoration = weight > 0 and engine.lambda_restoration > 0
        zero_grad, step = accumulation_schedule(
            engine.state.iteration, engine.state.epoch_length, engine.accumulation_steps
        )
        engine.network.train()
        engine.ssl_heads.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast("cuda", enabled=bool(engine.amp and engine.scaler is not None), **engine.amp_kwargs):
            network_input = inputs
            if use_restoration:
                region = engine._map(batchdata, engine.band_key) > 0
                if engine.entropy_top_percent > 0:
                    low_precision = (
                        torch.autocast(inputs.device.type, dtype=torch.bfloat16)
                        if engine.entropy_bfloat16
                        else nullcontext()
                    )
                    with torch.no_grad(), low_precision:
                        probabilities = F.softmax(engine.network(inputs).float(), dim=1)
                    region = uncertainty_region(region, probabilities, engine.entropy_top_percent)
                network_input, corrupted = engine.corruption(inputs, region)
            with capture_features(engine.network) as captured:
                logits = engine.network(network_input)
            features = captured.features
            engine.state.output = {Keys.IMAGE: network_input, Keys.LABEL: targets, Keys.PRED: logits}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            segmentation = engine.loss_function(logits, targets).mean()
            contrastive = logits.new_zeros(())
            restoration = logits.new_zeros(())
            skipped = logits.new_zeros((), dtype=torch.long)
            voxel_features = samples = None
            if use_contrastive:
                samples = sample_structure_voxels(
                    engine._map(batchdata, engine.skeleton_key),
                    engine._map(batchdata, engine.ring_key),
                    targets,
                    _foreground(logits.detach()),
                    num_positive=engine.num_positive,
                    num_negative=engine.num_negative,
                    hard_negative_ratio=engine.hard_negative_ratio,
                    generator=engine.sampling_generator.get(logits.device),
                )
                voxel_features = gather_voxels(features, samples.indices).float()
            if use_contrastive or use_restoration:
                # one call of the heads' forward: a DistributedDataParallel wrapper then synchronises their gradients
                embeddings, restored = engine.ssl_heads(voxel_features, features if use_restoration else None)
            if use_contrastive:
                contrastive, skipped = engine.contrastive_loss(
                    embeddings, samples.is_positive, samples.valid, return_num_skipped=True
                )
            if use_restoration:
                restoration = engine.restoration_loss(restored.float(), inputs, corrupted)
            loss = segmentation + weight * (
                engine.lambda_contrastive * contrastive + engine.lambda_restoration * restoration
            )
        engine.state.output.update(
            {
                Keys.LOSS: loss,
                "loss_segmentation": segmentation.detach(),
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
